"""The one place paths come from: repository root, data and cache folders, figures.

Environment variables override the defaults so that notebooks run from any working
directory and CI can point the data layer at a read-only mirror:

- ``SOUNDLOC_DATA``    data/cache root (default: ``<repo>/data``)
- ``SOUNDLOC_FIGURES`` output folder for tables, figures and maps (default: ``<repo>/figures``)
- ``SOUNDLOC_MIRROR``  local folder holding byte-identical copies of the official files
"""
from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The repository root (``lib/soundloc/../..``); the package's parent when installed elsewhere."""
    root = _PKG.parent.parent
    return root if (root / "pyproject.toml").exists() else Path.cwd()


def data_dir() -> Path:
    """Root of downloads and caches (created on demand)."""
    p = Path(os.environ.get("SOUNDLOC_DATA", repo_root() / "data")).expanduser().resolve()
    p.mkdir(parents=True, exist_ok=True)
    return p


def raw_dir() -> Path:
    """Downloaded files, laid out exactly as in the registry (``inatsounds/test.json.tar.gz`` ...)."""
    p = data_dir() / "raw"
    p.mkdir(parents=True, exist_ok=True)
    return p


def real_audio_dir() -> Path:
    """The two real recordings' folder (``XC563936_soundscape.mp3``, ``jura_2019-05-22/``): the mirror's ``audio/``
    when ``SOUNDLOC_MIRROR`` is set (read in place), else ``raw_dir() / "audio"``, where ``fetch_all`` puts them."""
    return (mirror_dir() or raw_dir()) / "audio"


def cache_dir(*parts: str) -> Path:
    """A named cache folder under ``data/cache`` (parquet tables, range maps, spectrograms)."""
    p = data_dir().joinpath("cache", *parts)
    p.mkdir(parents=True, exist_ok=True)
    return p


def figures_dir() -> Path:
    """Where notebooks write tables (CSV + Markdown), PNG figures and folium HTML maps."""
    p = Path(os.environ.get("SOUNDLOC_FIGURES", repo_root() / "figures")).expanduser().resolve()
    p.mkdir(parents=True, exist_ok=True)
    return p


def notebooks_dir() -> Path:
    """The py:percent chapter sources."""
    return repo_root() / "notebooks"


def mirror_dir() -> Path | None:
    """The local mirror folder named by ``SOUNDLOC_MIRROR``, or None when unset."""
    m = os.environ.get("SOUNDLOC_MIRROR")
    if not m:
        return None
    p = Path(m).expanduser().resolve()
    if not p.is_dir():
        raise FileNotFoundError(f"SOUNDLOC_MIRROR={m!r} is not a folder")
    return p
