"""XCDC dawn-chorus metadata: species lists parsed from their Python-literal strings."""
from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

from .download import fetch
from .validate import DataError, check_rows, require_columns, week_of_year48

XCDC_COLUMNS = ("audio_id", "latitude", "longitude", "length", "date", "time", "main_scientific", "all_scientific")


def _species_list(s, source: str, row: int) -> list[str]:
    try:
        v = ast.literal_eval(s) if isinstance(s, str) else s
    except (ValueError, SyntaxError) as e:
        raise DataError(f"{source}: row {row}: all_scientific is not a Python list literal: {s!r}") from e
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        raise DataError(f"{source}: row {row}: all_scientific must be a list of names, got {s!r}")
    return list(v)


def _seconds(length: str) -> float:
    parts = [float(p) for p in str(length).split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))


def load_xcdc(path: str | Path | None = None, on_invalid: str = "raise") -> pd.DataFrame:
    """``xcdc_recordings.csv -> DataFrame``: audio_id (str), lat, lon, duration (s), date, time,
    week (1-48), species (list of scientific names, all heard), main_species, n_species."""
    path = Path(path) if path is not None else fetch("xcdc/xcdc_recordings.csv")
    src = str(path)
    raw = pd.read_csv(path, dtype={"audio_id": str})
    require_columns(raw, XCDC_COLUMNS, src)
    df = raw.rename(columns={"latitude": "lat", "longitude": "lon"})
    df, report = check_rows(df, src, id_col="audio_id", date_col="date", on_invalid=on_invalid)
    df["species"] = [_species_list(s, src, i + 1) for i, s in enumerate(df["all_scientific"])]
    df["main_species"] = df["main_scientific"]
    df["n_species"] = df["species"].map(len)
    df["duration"] = df["length"].map(_seconds)
    df["week"] = week_of_year48(df["date"])
    df.attrs["skip_report"] = report
    return df[["audio_id", "lat", "lon", "duration", "date", "time", "week", "species", "main_species",
               "n_species", "url", "recordist"]]
