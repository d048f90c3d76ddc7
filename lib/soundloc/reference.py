"""Independent reference sets of where recordings are made (never the evaluation set)."""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .sphere import land_mask


def geoclip_file(*parts: str) -> Path:
    """A file shipped in the geoclip wheel, e.g. ("model", "weights", "location_encoder_weights.pth")."""
    spec = importlib.util.find_spec("geoclip")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the geoclip package is not installed (pip install geoclip)")
    p = Path(spec.submodule_search_locations[0]).joinpath(*parts)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: missing from the geoclip wheel")
    return p


def geoclip_gallery_path() -> Path:
    """Path of GeoCLIP's bundled 100K photo coordinates (``LAT,LON`` CSV in the geoclip wheel)."""
    return geoclip_file("model", "gps_gallery", "coordinates_100K.csv")


@lru_cache(maxsize=2)
def geoclip_coordinates(land_only: bool = True) -> np.ndarray:
    """GeoCLIP's 100K photo coordinates -> (N, 2) lat/lon degrees (land only by default)."""
    df = pd.read_csv(geoclip_gallery_path())
    pts = df[["LAT", "LON"]].to_numpy(float)
    if land_only:
        pts = pts[land_mask(pts)]
    pts.setflags(write=False)
    return pts
