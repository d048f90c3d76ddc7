"""Row-level validation shared by every loader: coordinates, required columns, unique ids, dates.

A loader either raises ``DataError`` naming the file, row and problem (``on_invalid="raise"``,
the default) or drops the bad rows and returns a ``SkipReport`` that counts them by reason
(``on_invalid="skip"``): never a silent drop.
"""
from __future__ import annotations

import datetime as _dt
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


class DataError(ValueError):
    """Bad input data: the message names the file, the row and what is wrong."""


@dataclass
class SkipReport:
    source: str  # file the rows came from
    total: int = 0  # rows read
    reasons: Counter = field(default_factory=Counter)  # reason -> rows skipped
    examples: dict = field(default_factory=dict)  # reason -> first offending row id

    @property
    def skipped(self) -> int:
        return sum(self.reasons.values())

    def __str__(self) -> str:
        if not self.skipped:
            return f"{self.source}: {self.total} rows, none skipped"
        parts = ", ".join(f"{n} {r} (e.g. {self.examples[r]})" for r, n in self.reasons.items())
        return f"{self.source}: skipped {self.skipped} of {self.total} rows: {parts}"


def require_columns(df: pd.DataFrame, cols, source: str) -> None:
    """Raise DataError if any of ``cols`` is missing from ``df``."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; found {list(df.columns)}")


def _bad_rows(df: pd.DataFrame, id_col: str, lat: str, lon: str, date_col: str | None) -> dict[str, np.ndarray]:
    la = pd.to_numeric(df[lat], errors="coerce").to_numpy(float)
    lo = pd.to_numeric(df[lon], errors="coerce").to_numpy(float)
    bad = {
        "missing id": df[id_col].isna().to_numpy() | (df[id_col].astype(str).str.strip() == "").to_numpy(),
        "NaN or non-numeric coordinate": ~np.isfinite(la) | ~np.isfinite(lo),
        "latitude outside [-90, 90]": np.isfinite(la) & (np.abs(la) > 90),
        "longitude outside [-180, 180]": np.isfinite(lo) & (np.abs(lo) > 180),
        "duplicate id": df[id_col].duplicated(keep="first").to_numpy(),
    }
    if date_col is not None and date_col in df:
        d = df[date_col]
        parsed = pd.to_datetime(d.astype(str).str[:10], format="%Y-%m-%d", errors="coerce")
        bad["date not YYYY-MM-DD"] = (d.notna() & parsed.isna()).to_numpy()
    return bad


def _show(v) -> str:
    """A cell value as the user wrote it: repr of the plain Python value (95, nan, 'north'), not np.int64(95)."""
    return repr(v.item() if isinstance(v, np.generic) else v)


def check_rows(df: pd.DataFrame, source: str, *, id_col: str, lat: str = "lat", lon: str = "lon",
               date_col: str | None = None, on_invalid: str = "raise") -> tuple[pd.DataFrame, SkipReport]:
    """Validate ids, coordinates and dates; raise on the first bad row or skip and count."""
    if on_invalid not in ("raise", "skip"):
        raise ValueError(f"on_invalid must be 'raise' or 'skip', not {on_invalid!r}")
    report = SkipReport(source, total=len(df))
    drop = np.zeros(len(df), bool)
    for reason, mask in _bad_rows(df, id_col, lat, lon, date_col).items():
        mask = mask & ~drop
        if not mask.any():
            continue
        i = int(np.flatnonzero(mask)[0])
        row = df.iloc[i]
        where = f"row {i + 1} ({id_col}={_show(row[id_col])}, {lat}={_show(row[lat])}, {lon}={_show(row[lon])}" + (
            f", {date_col}={_show(row[date_col])})" if date_col and date_col in df else ")")
        if on_invalid == "raise":
            raise DataError(f"{source}: {where}: {reason}")
        report.reasons[reason] += int(mask.sum())
        report.examples[reason] = where
        drop |= mask
    return df.loc[~drop].reset_index(drop=True), report


def week48(month, day):
    """BirdNET's week of year (1-48, four per month): month, day (scalars or arrays) -> ``(month-1)*4 + min(4, (day-1)//7 + 1)``."""
    return (month - 1) * 4 + np.minimum(4, (day - 1) // 7 + 1)


def week_from_date(date) -> int | None:
    """'YYYY-MM-DD' | date | None | NaN | '' -> BirdNET week 1-48 (:func:`week48`) | None; ValueError for a malformed date."""
    if date is None or (isinstance(date, float) and np.isnan(date)) or (isinstance(date, str) and not date.strip()):
        return None
    if isinstance(date, str):
        try:
            date = _dt.date.fromisoformat(date.strip())
        except ValueError:
            raise ValueError(f"date {date!r} is not YYYY-MM-DD") from None
    return int(week48(date.month, date.day))


def week_of_year48(dates: pd.Series) -> pd.Series:
    """(N,) dates -> (N,) BirdNET week 1-48 (:func:`week48`), <NA> where the date is missing."""
    d = pd.to_datetime(dates)
    return week48(d.dt.month, d.dt.day).astype("Int64")
