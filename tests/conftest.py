import os
from pathlib import Path

import pytest
import torch

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


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: on 2 shared busy cores, 2 intra-op threads are 5-50x slower (OpenMP contention)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
