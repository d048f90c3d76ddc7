"""Species range maps: :func:`load_range_model` (BirdNET's meta model or SINR, all sharing the
:class:`~soundloc.range_model.RangeModel` interface) and :func:`range_map`, a model evaluated on a point
set (a gallery) and cached under ``data/cache/ranges`` as species-major (S, N) float16 ``.npy`` (one
species = one contiguous row; :func:`soundloc.io.cached`).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from . import paths
from .birdnet_meta import BirdNETMetaTFLite, load_birdnet_meta_torch
from .io import cached
from .range_model import RangeModel, YEAR_ROUND, week_vector
from .sinr import load_sinr

__all__ = ["load_range_model", "range_map", "range_cache_path"]


# ---------------------------------------------------------------- factory
def load_range_model(name: str = "birdnet", backend: str = "torch", device=None, **kwargs) -> RangeModel:
    """'birdnet' (backend 'torch'|'tflite') or 'sinr' (checkpoint_path=...) -> RangeModel."""
    name = name.lower()
    if name == "birdnet":
        if backend == "torch":
            return load_birdnet_meta_torch(device=device, **kwargs)
        if backend == "tflite":
            if device not in (None, "cpu"):
                raise ValueError(f"the tflite backend runs on CPU only, got device={device!r}")
            return BirdNETMetaTFLite(**kwargs)
        raise ValueError(f"unknown backend {backend!r}; use 'torch' or 'tflite'")
    if name == "sinr":
        if backend != "torch":
            raise ValueError("SINR has only the 'torch' backend")
        return load_sinr(device=device, **kwargs)
    raise ValueError(f"unknown range model {name!r}; use 'birdnet' or 'sinr'")


# ---------------------------------------------------------------- galleries + cache
def _points_digest(points: np.ndarray) -> str:
    """(N, 2) points -> short sha1 of their float64 bytes."""
    return hashlib.sha1(np.ascontiguousarray(points, np.float64).tobytes()).hexdigest()[:12]


def _week_tag(week) -> str:
    """None -> 'yr', 12 -> 'w12', (N,) array -> 'wa<hash>'."""
    if week is None:
        return "yr"
    w = np.asarray(week)
    if w.ndim == 0:
        return "yr" if int(w) == YEAR_ROUND else f"w{int(w):02d}"
    return "wa" + hashlib.sha1(np.ascontiguousarray(w, np.int64).tobytes()).hexdigest()[:10]


def range_cache_path(model: RangeModel, points: np.ndarray, week, cache_key: str,
                     species_idx: np.ndarray | None = None) -> Path:
    """Cache file for (model, gallery, week[, species subset]): data/cache/ranges/<model>__<key>-<hash>__<week>[__<species hash>].npy."""
    safe = re.sub(r"[^A-Za-z0-9.+-]+", "_", str(cache_key))
    sub = "" if species_idx is None else "__s" + hashlib.sha1(np.asarray(species_idx, np.int64).tobytes()).hexdigest()[:12]
    return paths.cache_dir("ranges") / f"{model.name}__{safe}-{_points_digest(points)}__{_week_tag(week)}{sub}.npy"


def _open_cached(path: Path, shape: tuple[int, int]) -> np.memmap:
    """Complete (S, N) float16 cache file -> read-only memmap; ValueError naming what is wrong if partial or another array."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        hdr = read(f)  # (shape, fortran_order, dtype)
        offset = f.tell()
    if tuple(hdr[0]) != shape or hdr[1] or np.dtype(hdr[2]) != np.float16:
        raise ValueError(f"holds a {np.dtype(hdr[2])} {tuple(hdr[0])} array, expected float16 {shape}")
    if path.stat().st_size != offset + shape[0] * shape[1] * 2:
        raise ValueError(f"{path.stat().st_size} bytes, expected {offset + shape[0] * shape[1] * 2} (truncated)")
    return np.load(path, mmap_mode="r")


def range_map(model: RangeModel, points, week=None, species_idx=None, cache_key: str | None = None,
              chunk: int = 8192, subset_cache: bool = False) -> np.ndarray:
    """(N, 2) lat/lon degrees gallery, week 1-48|(N,)|None -> (S_sel, N) probability, species-major.

    Without ``cache_key``: float32, computed for ``species_idx`` only. With ``cache_key`` (a gallery
    name such as 'land0.5'): all species are computed once into a float16 (S, N) ``.npy`` under
    ``data/cache/ranges`` (:func:`soundloc.io.cached`: shape/size verified on load, rebuilt if bad) and
    the result is float16 (a read-only memmap when ``species_idx`` is None, or with ``subset_cache``).
    ``subset_cache``: cache only the ``species_idx`` rows, (S_sel, N), in a file keyed by that subset too.
    """
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must be (N, 2) lat/lon degrees, got {points.shape}")
    n, s = len(points), len(model.species)
    if species_idx is not None:
        species_idx = np.asarray(species_idx, np.int64)
    week_vector(week, n)  # validate early
    wk = lambda i: week if week is None or np.ndim(week) == 0 else np.asarray(week)[i:i + chunk]  # noqa: E731
    if cache_key is None:
        return _fill_probs(np.empty((s if species_idx is None else len(species_idx), n), np.float32),
                           model, points, wk, species_idx, chunk)
    sub = species_idx if (subset_cache and species_idx is not None) else None
    shape = (s if sub is None else len(sub), n)

    def write(tmp: Path) -> None:  # chunk by chunk into the memmapped file: the whole float32 map never exists
        out = _fill_probs(np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape),
                          model, points, wk, sub, chunk)
        out.flush()
        del out

    mm = cached(range_cache_path(model, points, week, cache_key, sub), write, lambda p: _open_cached(p, shape))[0]
    return mm if (species_idx is None or sub is not None) else np.asarray(mm[species_idx])


def _fill_probs(out: np.ndarray, model: RangeModel, points: np.ndarray, wk, species_idx, chunk: int) -> np.ndarray:
    """Fill ``out`` (S_sel, N) with range probabilities, ``chunk`` points at a time (``wk(i)``: the chunk's week) -> out."""
    for i in range(0, out.shape[1], chunk):
        out[:, i:i + chunk] = model.prob(points[i:i + chunk, 0], points[i:i + chunk, 1], wk(i), species_idx).T
    return out
