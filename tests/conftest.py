import os
from pathlib import Path

import pytest

MIRROR = Path(os.environ.get("SOUNDLOC_MIRROR", Path(__file__).resolve().parents[2] / "shared" / "data"))
os.environ.setdefault("SOUNDLOC_MIRROR", str(MIRROR))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def mirror() -> Path:
    if not MIRROR.is_dir():
        pytest.skip(f"no data mirror at {MIRROR} (set SOUNDLOC_MIRROR)")
    return MIRROR


@pytest.fixture
def figures_tmp(tmp_path, monkeypatch):
    """Send figures/tables of the code under test to a temporary folder."""
    out = tmp_path / "figures"
    monkeypatch.setenv("SOUNDLOC_FIGURES", str(out))
    return out
