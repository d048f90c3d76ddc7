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


def read_csv(path, **kw) -> pd.DataFrame:
    """``pd.read_csv`` whose failures (an empty file, bytes that are not text, a row pandas cannot split) are one
    DataError naming the file."""
    try:
        return pd.read_csv(path, **kw)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (no header row)") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text CSV (byte {e.start} is not UTF-8)") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: not a readable CSV ({str(e).strip().splitlines()[-1]})") from None


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
               date_col: str | None = None, on_invalid: str = "raise", first_row: int = 1) -> tuple[pd.DataFrame, SkipReport]:
    """Validate ids, coordinates and dates; raise on the first bad row or skip and count.

    A bad row is named "row N" with ``first_row`` the number of ``df``'s first row: 2 for a CSV read by
    pandas (the header is row 1, as a spreadsheet and :func:`read_rows` number it), 1 for JSON records.
    """
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
        where = f"row {i + first_row} ({id_col}={_show(row[id_col])}, {lat}={_show(row[lat])}, {lon}={_show(row[lon])}" + (
            f", {date_col}={_show(row[date_col])})" if date_col and date_col in df else ")")
        if on_invalid == "raise":
            raise DataError(f"{source}: {where}: {reason}")
        report.reasons[reason] += int(mask.sum())
        report.examples[reason] = where
        drop |= mask
    return df.loc[~drop].reset_index(drop=True), report


_RANGE = {"lat": 90, "lon": 180}  # kind -> largest |value|, degrees


def _is_date(v: str, full: bool) -> bool:
    """'YYYY-MM-DD' (``full``) or a value starting with one ('2020-05-15 06:00')."""
    try:
        week_from_date(v if full else v[:10])
    except ValueError:
        return False
    return full or len(v) == 10 or not v[10:11].isdigit()


def read_rows(path, required=(), optional=(), kinds=None, unique: str | None = None, may_be_empty=(),
              fallback=None) -> tuple[pd.DataFrame, list[str]]:
    """A CSV read as text -> (its good rows, one ``"FILE: row N: problem[; problem]"`` per bad row).

    Row N is the CSV line as a spreadsheet numbers it: the header is row 1, the first data row row 2.
    ``required`` columns must be present (else DataError naming the missing ones) and non-empty unless in
    ``may_be_empty``; ``optional`` ones may be absent or empty. ``kinds`` {column: "lat" | "lon" | "date" |
    "datetime"} checks a non-empty value: a number in [-90, 90] / [-180, 180], a date YYYY-MM-DD, a value
    starting with one. ``fallback`` {column: other} fills an empty (or absent) column from another;
    ``unique`` names the column whose repeats are bad (the first one is kept). An empty file, one that is not a CSV
    or a header without rows is a DataError naming the file. Good rows keep their text,
    stripped, in file order with a fresh index; a value in an error is quoted after stripping.
    """
    src, kinds, fallback = str(path), kinds or {}, fallback or {}
    df = read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in required if c not in df]
    if missing:
        raise DataError(f"{src}: row 1: missing column(s) {missing}; found {list(df.columns)}")
    if df.empty:
        raise DataError(f"{src}: no rows under the header")
    df = df[[c for c in (*required, *optional) if c in df]].apply(lambda c: c.str.strip())
    for col, other in fallback.items():
        df[col] = df[col].where(df[col] != "", df[other]) if col in df else df[other]
    problems = [[] for _ in range(len(df))]

    def flag(mask, text):
        for i in np.flatnonzero(mask):
            problems[i].append(text(i))

    for col in required:
        if col not in may_be_empty:
            flag(df[col].to_numpy() == "", lambda i, c=col: f"empty {c}")
    for col, kind in kinds.items():
        if col not in df:
            continue
        v = df[col]
        given = (v != "").to_numpy()
        if kind in _RANGE:
            x = pd.to_numeric(v, errors="coerce").to_numpy(float)
            flag(given & ~np.isfinite(x), lambda i, c=col: f"{c} {v.iloc[i]!r} is not a number")
            lim = _RANGE[kind]
            flag(np.isfinite(x) & (np.abs(x) > lim), lambda i, c=col: f"{c} {v.iloc[i]!r} outside [-{lim}, {lim}]")
        elif kind in ("date", "datetime"):
            ok = np.array([_is_date(d, kind == "date") for d in v], bool)
            flag(given & ~ok, lambda i, c=col: f"{c} {v.iloc[i]!r} is not YYYY-MM-DD")
        else:
            raise ValueError(f"unknown kind {kind!r} for column {col!r}")
    if unique is not None:
        first = df.groupby(unique, sort=False).cumcount()
        where = df.reset_index().groupby(unique, sort=False)["index"].transform("first")
        flag((first > 0).to_numpy(),
             lambda i: f"duplicate {unique} {df[unique].iloc[i]!r} (first on row {where.iloc[i] + 2})")
    errors = [f"{src}: row {i + 2}: {'; '.join(p)}" for i, p in enumerate(problems) if p]
    good = np.array([not p for p in problems], bool)
    return df.loc[good].reset_index(drop=True), errors


def raise_first(errors: list[str]) -> None:
    """Errors of :func:`read_rows` -> DataError with the first one (and how many more) on one line; none -> nothing."""
    if errors:
        more = f" (and {len(errors) - 1} more bad rows)" if len(errors) > 1 else ""
        raise DataError(errors[0] + more)


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
