"""XCDC dawn-chorus metadata (species lists parsed from their Python-literal strings) and audio files.

The audio is the release's ``xcdc.tar.gz`` (Zenodo record 15420487), downloaded by the user
(``fetch_group("xcdc-audio")``) or placed in ``data/raw/xcdc/``; :func:`xcdc_audio` matches its
files to the metadata by file stem = ``audio_id`` (the reference code's convention).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

from .. import paths
from .download import extract, fetch
from .validate import DataError, SkipReport, check_rows, require_columns, week_of_year48

AUDIO_SUFFIXES = (".mp3", ".wav", ".flac", ".ogg", ".m4a")

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
    df = raw.rename(columns={"latitude": "lat", "longitude": "lon"}).assign(_row=range(2, len(raw) + 2))  # header = row 1
    df, report = check_rows(df, src, id_col="audio_id", date_col="date", on_invalid=on_invalid, first_row=2)
    df["species"] = [_species_list(s, src, r) for s, r in zip(df["all_scientific"], df["_row"])]
    df["main_species"] = df["main_scientific"]
    df["n_species"] = df["species"].map(len)
    df["duration"] = df["length"].map(_seconds)
    df["week"] = week_of_year48(df["date"])
    df.attrs["skip_report"] = report
    return df[["audio_id", "lat", "lon", "duration", "date", "time", "week", "species", "main_species",
               "n_species", "url", "recordist"]]


def xcdc_audio(source: str | Path | None = None, meta: pd.DataFrame | None = None) -> pd.DataFrame:
    """XCDC audio folder or .tar.gz (default: data/raw/xcdc/xcdc.tar.gz) -> metadata rows + ``filepath``.

    Files are matched by stem = ``audio_id`` anywhere below the folder. Recordings without a file
    are counted in ``attrs["skip_report"]`` (never silently dropped); no match at all is a DataError.
    """
    meta = load_xcdc() if meta is None else meta
    source = Path(source) if source is not None else paths.raw_dir() / "xcdc" / "xcdc.tar.gz"
    if not source.exists():
        raise DataError(f"{source}: XCDC audio not found: download xcdc.tar.gz (Zenodo record 15420487, "
                        "soundloc.data.fetch_group('xcdc-audio')) or pass its folder")
    folder = extract(source, source.with_name("xcdc_audio")) if source.is_file() else source
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith("."):
            files.setdefault(p.stem, p)
    ids = meta["audio_id"].astype(str)
    have = ids.isin(files).to_numpy()
    if not have.any():
        raise DataError(f"{folder}: none of the {len(meta)} XCDC audio_ids has an audio file "
                        f"(looked for <audio_id>{{{','.join(AUDIO_SUFFIXES)}}}; found {len(files)} audio files)")
    report = SkipReport(str(folder), total=len(meta))
    if (~have).any():
        report.reasons["no audio file"] = int((~have).sum())
        report.examples["no audio file"] = ids[~have].iloc[0]
    out = meta[have].copy()
    out["filepath"] = [str(files[a]) for a in ids[have]]
    out.attrs["skip_report"] = report
    return out.reset_index(drop=True)
