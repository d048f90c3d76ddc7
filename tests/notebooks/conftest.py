"""Fixtures of the notebook tests: ``inat_root`` (chapters 01 and 03 with ``DATA="inat"``), built once per session."""
import os
from pathlib import Path

import pytest

from inat_fixture import SIZES, write_split


@pytest.fixture(scope="session")
def inat_root(tmp_path_factory) -> Path:
    from soundloc.data.sim import SimConfig, build_simsounds

    world = build_simsounds(SimConfig.small(0), progress=False)
    root = tmp_path_factory.mktemp("inatsounds")
    for split, n in SIZES.items():
        write_split(world, root, split, n, missing=1 if split == "test" else 0)
        os.symlink(world / split, root / split)
    return root
