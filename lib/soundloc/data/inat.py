"""iNatSounds COCO-style annotations (test.json; train/val in the same format) -> tidy DataFrame.

Columns: audio_id (file stem), id (COCO id), path (relative file_name), duration (s),
date (local calendar date, YYYY-MM-DD), time (HH:MM:SS or None), week (1-48), lat, lon,
uncertainty (m), category_id, species (scientific name), common_name, supercategory, split.
SimSounds writes the same format, so this loader reads both.
"""
from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io, paths
from .download import fetch
from .validate import DataError, SkipReport, check_rows, week_of_year48

_LOADER_VERSION = "1"
AUDIO_KEYS = ("id", "file_name", "duration", "date", "latitude", "longitude")


def _read_json(path: Path) -> dict:
    try:
        if path.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(path) as tf:
                members = [m for m in tf.getmembers() if m.name.endswith(".json")]
                if len(members) != 1:
                    raise DataError(f"{path}: expected one .json inside the tarball, found {[m.name for m in members]}")
                return json.load(tf.extractfile(members[0]))
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, tarfile.TarError, EOFError) as e:
        raise DataError(f"{path}: not a readable COCO JSON file ({e})") from e


def parse_coco(d: dict, source: str, split: str = "test", on_invalid: str = "raise") -> tuple[pd.DataFrame, SkipReport]:
    """COCO dict (``audio``, ``annotations``, ``categories``) -> tidy DataFrame and skip report."""
    for key in ("audio", "annotations", "categories"):
        if key not in d:
            raise DataError(f"{source}: missing top-level key {key!r}; found {sorted(d)}")
    audio = pd.DataFrame(d["audio"])
    if audio.empty:
        raise DataError(f"{source}: no recordings in 'audio'")
    for k in AUDIO_KEYS:
        if k not in audio:
            raise DataError(f"{source}: 'audio' entries lack key {k!r}")
    ann = pd.DataFrame(d["annotations"])[["audio_id", "category_id"]]
    if ann["audio_id"].duplicated().any():
        dup = ann.loc[ann["audio_id"].duplicated(), "audio_id"].iloc[0]
        raise DataError(f"{source}: recording id {dup} has more than one annotation")
    cats = pd.DataFrame(d["categories"]).rename(columns={"id": "category_id", "name": "species"})
    cats = cats.reindex(columns=["category_id", "species", "common_name", "supercategory"])
    df = audio.merge(ann, left_on="id", right_on="audio_id", how="left", suffixes=("", "_ann"))
    df = df.drop(columns=["audio_id"]).merge(cats, on="category_id", how="left")
    df["audio_id"] = df["file_name"].map(lambda s: Path(str(s)).stem)
    df = df.rename(columns={"file_name": "path", "latitude": "lat", "longitude": "lon",
                            "location_uncertainty": "uncertainty"})
    if "uncertainty" not in df:
        df["uncertainty"] = np.nan
    df, report = check_rows(df, source, id_col="audio_id", date_col="date", on_invalid=on_invalid)
    raw = df["date"].astype("string")
    df["date"] = raw.str[:10]
    df["time"] = raw.str[11:19].where(raw.str.len() >= 19)
    df["week"] = week_of_year48(df["date"])
    df["lat"], df["lon"] = df["lat"].astype(float), df["lon"].astype(float)
    df["split"] = split
    cols = ["audio_id", "id", "path", "duration", "date", "time", "week", "lat", "lon", "uncertainty",
            "category_id", "species", "common_name", "supercategory", "split"]
    return df[cols], report


def load_inat(path: str | Path | None = None, split: str = "test", on_invalid: str = "raise",
              cache: bool = True) -> pd.DataFrame:
    """Load iNatSounds annotations (default: the registered test set), cached as parquet.

    ``(json or json.tar.gz path) -> DataFrame`` with one row per recording; the skip report is
    in ``df.attrs["skip_report"]``.
    """
    path = Path(path) if path is not None else fetch("inatsounds/test.json.tar.gz")
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{on_invalid}|{_LOADER_VERSION}".encode()).hexdigest()[:12]
    cached = paths.cache_dir("tables") / f"inat_{split}_{key}.parquet"
    if cache and cached.exists():
        df = pd.read_parquet(cached)
        df.attrs["skip_report"] = SkipReport(str(path), total=len(df))
        return df
    df, report = parse_coco(_read_json(path), str(path), split, on_invalid)
    if cache:
        io.write_parquet(df, cached)
    df.attrs["skip_report"] = report
    return df
