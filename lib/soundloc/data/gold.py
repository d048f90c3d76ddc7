"""Benchmark gold / prediction CSVs in the nat-sound2loc-benchmark format: ``audio_id,latitude,longitude``."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .download import fetch
from ..io import atomic_path
from .validate import check_rows, read_csv, require_columns

GOLD = {"inat": "inatsounds/inat_test_gold.csv", "xcdc": "xcdc/xcdc_gold.csv"}
BENCH_COLUMNS = ("audio_id", "latitude", "longitude")


def read_locations(path: str | Path, on_invalid: str = "raise") -> pd.DataFrame:
    """Read a benchmark-format CSV -> DataFrame(audio_id str, lat, lon); validated, ids unique (a bad row named
    by its spreadsheet row: the header is row 1)."""
    src = str(path)
    df = read_csv(path, dtype={"audio_id": str})
    require_columns(df, BENCH_COLUMNS, src)
    df = df.rename(columns={"latitude": "lat", "longitude": "lon"})[["audio_id", "lat", "lon"]]
    df, report = check_rows(df, src, id_col="audio_id", on_invalid=on_invalid, first_row=2)
    df["lat"], df["lon"] = df["lat"].astype(float), df["lon"].astype(float)
    df.attrs["skip_report"] = report
    return df


def load_gold(dataset: str) -> pd.DataFrame:
    """Gold locations of "inat" or "xcdc" -> DataFrame(audio_id, lat, lon)."""
    if dataset not in GOLD:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(GOLD)}")
    return read_locations(fetch(GOLD[dataset]))


def write_predictions(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``audio_id, lat, lon`` predictions in the benchmark format, atomically."""
    out = df.rename(columns={"lat": "latitude", "lon": "longitude"})[list(BENCH_COLUMNS)]
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False, float_format="%.6f")
    return Path(path)
