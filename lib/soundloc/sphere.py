"""Geometry on the sphere: haversine (numpy and torch), unit vectors, galleries, H3 helpers,
and von Mises-Fisher kernel densities. Radius R = 6371 km everywhere (the benchmark's)."""
from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import numpy as np

from . import paths
from .io import bytes_digest, cached, npy_loader, npy_save

EARTH_RADIUS_KM = 6371.0


def haversine(lat1, lon1, lat2, lon2):
    """Great-circle distance, degrees -> km, broadcasting (numpy). The benchmark's formula."""
    p1, p2 = np.deg2rad(lat1), np.deg2rad(lat2)
    dp, dl = np.deg2rad(np.subtract(lat2, lat1)), np.deg2rad(np.subtract(lon2, lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def haversine_torch(a, b):
    """(..., 2) lat/lon degrees x (..., 2) lat/lon degrees -> (...) km, differentiable (torch)."""
    import torch

    a, b = torch.deg2rad(a), torch.deg2rad(b)
    dp, dl = b[..., 0] - a[..., 0], b[..., 1] - a[..., 1]
    h = torch.sin(dp / 2) ** 2 + torch.cos(a[..., 0]) * torch.cos(b[..., 0]) * torch.sin(dl / 2) ** 2
    # clamp away from 0 and 1 so the gradient of asin(sqrt(h)) stays finite
    return 2 * EARTH_RADIUS_KM * torch.asin(torch.sqrt(h.clamp(1e-12, 1 - 1e-7)))


def to_xyz(lat, lon) -> np.ndarray:
    """(N,) lat, (N,) lon degrees -> (N, 3) unit vectors."""
    la, lo = np.deg2rad(np.asarray(lat, float)), np.deg2rad(np.asarray(lon, float))
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def to_latlon(xyz: np.ndarray) -> np.ndarray:
    """(N, 3) vectors (any norm) -> (N, 2) lat/lon degrees."""
    xyz = xyz / np.linalg.norm(xyz, axis=-1, keepdims=True)
    return np.stack([np.rad2deg(np.arcsin(np.clip(xyz[..., 2], -1, 1))),
                     np.rad2deg(np.arctan2(xyz[..., 1], xyz[..., 0]))], axis=-1)


def pairwise_km(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 2) x (M, 2) lat/lon degrees -> (N, M) km (via unit-vector dot products; exact to ~1 m)."""
    dot = np.clip(to_xyz(a[:, 0], a[:, 1]) @ to_xyz(b[:, 0], b[:, 1]).T, -1.0, 1.0)
    return EARTH_RADIUS_KM * np.arccos(dot)


# ---------------------------------------------------------------- galleries
def uniform_grid(step_deg: float = 1.0) -> np.ndarray:
    """Cell-centred lat/lon grid at ``step_deg`` -> (N, 2) degrees (1 deg: 64,800 points)."""
    lats = np.arange(-90 + step_deg / 2, 90, step_deg)
    lons = np.arange(-180 + step_deg / 2, 180, step_deg)
    la, lo = np.meshgrid(lats, lons, indexing="ij")
    return np.stack([la.ravel(), lo.ravel()], axis=1)


def is_land(lat, lon) -> np.ndarray:
    """(N,) lat/lon degrees -> (N,) bool, from global-land-mask (1 km GLOBE mask)."""
    from global_land_mask import globe

    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    return globe.is_land(np.clip(lat, -89.999, 89.999), np.clip(lon, -179.999, 179.999))


def land_mask(points: np.ndarray) -> np.ndarray:
    """(N, 2) lat/lon degrees -> (N,) bool ``is_land``, cached on disk (data/cache/land) by the points' digest.

    global-land-mask unpacks its 1 km globe when imported (about 3.5 s and 0.9 GB per process); with the
    mask of a fixed point set (a grid, GeoCLIP's coordinates) on disk, later processes never import it.
    """
    pts = np.ascontiguousarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"land_mask: points must be (N, 2) lat/lon degrees, got {pts.shape}")
    return cached(land_mask_path(pts), lambda: is_land(pts[:, 0], pts[:, 1]), npy_loader((len(pts),), bool),
                  npy_save)[0]


def land_mask_path(points: np.ndarray) -> Path:
    """(N, 2) float64 points -> their land-mask cache file (points digest, global-land-mask version)."""
    key = bytes_digest(np.asarray(points, np.float64), n=16)
    return paths.cache_dir("land") / f"land_mask__{len(points)}-{key}__glm{version('global-land-mask')}.npy"


def land_grid(step_deg: float = 1.0, bbox: tuple | None = None) -> np.ndarray:
    """Uniform grid points on land -> (N, 2) degrees (1 deg: about 20K, the paper's Table A1).

    ``bbox = (lat_min, lat_max, lon_min, lon_max)`` keeps the points inside it (lon_min > lon_max wraps
    across the antimeridian). ValueError when no land point is left (an all-ocean area, or a step
    larger than the area): an empty gallery would make every posterior undefined.
    """
    if not step_deg > 0:
        raise ValueError(f"land_grid: step_deg must be > 0, got {step_deg!r}")
    if bbox is not None:
        la0, la1, lo0, lo1 = map(float, bbox)
        if not (-90 <= la0 <= la1 <= 90 and -180 <= lo0 <= 180 and -180 <= lo1 <= 180):
            raise ValueError(f"land_grid: bbox {tuple(bbox)} must be (lat_min, lat_max, lon_min, lon_max) "
                             "with -90 <= lat_min <= lat_max <= 90 and longitudes in [-180, 180]")
    g = uniform_grid(step_deg)
    land = land_mask(g)  # for the whole grid, so that every bbox shares one cached mask
    if bbox is not None:
        in_lon = ((g[:, 1] >= lo0) & (g[:, 1] <= lo1)) if lo0 <= lo1 else ((g[:, 1] >= lo0) | (g[:, 1] <= lo1))
        inside = (g[:, 0] >= la0) & (g[:, 0] <= la1) & in_lon
        g, land = g[inside], land[inside]
    land = g[land]
    if len(land) == 0:
        why = f"all {len(g)} grid points are in the ocean" if len(g) else "the step is larger than the area"
        raise ValueError(f"land_grid(step_deg={step_deg:g}" + (f", bbox={tuple(bbox)}" if bbox is not None else "")
                         + f"): no land points ({why}); widen the area or use a finer step")
    return land


def cell_areas(points: np.ndarray, step_deg: float) -> np.ndarray:
    """(N, 2) cell-centred lat/lon grid points, cell size ``step_deg`` -> (N,) exact cell areas, km^2.

    A lat/lon cell is a spherical band segment, R^2 * dlon * (sin lat_top - sin lat_bottom): a 1 deg cell at
    80 deg holds 0.17 times the area of one at the equator, so per-point probabilities on such a grid must be
    weighted by these areas before they are summed into masses (see :func:`log_masses`).
    """
    if not step_deg > 0:
        raise ValueError(f"cell_areas: step_deg must be > 0, got {step_deg!r}")
    lat = np.deg2rad(np.clip(np.asarray(points, float)[:, 0] + np.array([[-0.5], [0.5]]) * step_deg, -90, 90))
    return EARTH_RADIUS_KM ** 2 * np.deg2rad(step_deg) * (np.sin(lat[1]) - np.sin(lat[0]))


def log_masses(log_density: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """(..., N) unnormalised log density per km^2, (N,) cell areas km^2 -> (..., N) log probability mass per cell."""
    from scipy.special import logsumexp

    lm = np.asarray(log_density, float) + np.log(np.asarray(areas, float))
    return lm - logsumexp(lm, axis=-1, keepdims=True)


def credible_set(log_density: np.ndarray, areas: np.ndarray, level: float) -> np.ndarray:
    """(..., N) log density, (N,) cell areas km^2, level in (0, 1] -> (..., N) bool: the highest-density region.

    The smallest-area set holding ``level`` of the mass: cells ranked by density (not by mass, which would
    favour large cells), taken until their cumulative mass reaches ``level``.
    """
    if not 0 < level <= 1:
        raise ValueError(f"credible_set: level must be in (0, 1], got {level!r}")
    ld = np.asarray(log_density, float)
    order = np.argsort(-ld, axis=-1, kind="stable")
    mass = np.exp(np.take_along_axis(log_masses(ld, areas), order, axis=-1))
    before = np.cumsum(mass, axis=-1) - mass  # mass of the denser cells: a cell is in while that is < level
    keep = np.zeros(ld.shape, bool)
    np.put_along_axis(keep, order, before < level * (1 - 1e-12), axis=-1)
    return keep


# ---------------------------------------------------------------- H3
def h3_cells(lat, lon, res: int) -> np.ndarray:
    """(N,) lat/lon degrees -> (N,) H3 cell ids (str) at resolution ``res``."""
    import h3

    return np.array([h3.latlng_to_cell(float(a), float(o), res) for a, o in zip(lat, lon)], dtype=object)


def h3_parents(cells, res: int) -> np.ndarray:
    """(N,) H3 cell ids -> (N,) their parent cells at the coarser resolution ``res`` (str)."""
    import h3

    return np.array([h3.cell_to_parent(c, res) for c in cells], dtype=object)


def h3_centers(cells) -> np.ndarray:
    """(N,) H3 cell ids -> (N, 2) centre lat/lon degrees."""
    import h3

    return np.array([h3.cell_to_latlng(c) for c in cells], dtype=float).reshape(-1, 2)


# ---------------------------------------------------------------- densities
def kappa_for_bandwidth(bandwidth_km: float) -> float:
    """vMF concentration whose angular std is ``bandwidth_km`` on the Earth: kappa = (R / h)^2."""
    return (EARTH_RADIUS_KM / bandwidth_km) ** 2


def vmf_density(points: np.ndarray, centers: np.ndarray, bandwidth_km: float = 200.0,
                weights: np.ndarray | None = None, chunk: int = 4096) -> np.ndarray:
    """von Mises-Fisher kernel density of ``centers`` evaluated at ``points``.

    (N, 2) points, (M, 2) centres (degrees), bandwidth km -> (N,) density, normalised to sum 1
    over ``points``. Chunked over points so memory stays O(chunk * M).
    """
    kappa = kappa_for_bandwidth(bandwidth_km)
    P, C = to_xyz(points[:, 0], points[:, 1]), to_xyz(centers[:, 0], centers[:, 1])
    w = np.ones(len(C)) if weights is None else np.asarray(weights, float)
    out = np.empty(len(P))
    for s in range(0, len(P), chunk):
        # exp(kappa (cos - 1)) avoids overflow; the vMF normaliser is constant across points
        out[s:s + chunk] = np.exp(kappa * (P[s:s + chunk] @ C.T - 1.0)) @ w
    return out / out.sum()
