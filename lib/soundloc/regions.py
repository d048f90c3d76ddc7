"""Credible regions, expected errors and point decoders for posteriors over a lat/lon cell grid.

A gallery posterior gives each cell-centred grid point the probability *mass* of its cell. The
p-credible region is the highest-density set (``sphere.credible_set``: cells ranked by mass per km^2,
so that small high-latitude cells are not favoured) holding p of the mass; it is drawn as the union
of its cells (shapely), written as RFC 7946 GeoJSON (longitude before latitude, exterior rings
counter-clockwise; a region around Fiji comes out as parts that meet at +180 and -180, i.e. split
at the antimeridian, since grid cells never straddle it).

Coverage (is the truth inside the p-region?) for every p at once uses one number per recording:
the mass of the cells denser than the true cell (``mass_above_truth``); the truth lies in the
p-region exactly when that mass is below p.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .io import atomic_path
from .sphere import EARTH_RADIUS_KM, cell_areas, credible_set, haversine, pairwise_km

DECODERS = ("argmax", "min_distance", "mass_within")  # point estimates of a posterior (see :func:`decode`)
LEVELS = (0.5, 0.9)  # credible levels reported by default


@dataclass(frozen=True)
class Region:
    """One p-credible region of one posterior."""

    level: float  # nominal mass p
    cells: np.ndarray  # (K,) gallery indices of the region's cells
    area_km2: float  # total area of those cells
    mass: float  # posterior mass actually inside (>= level, up to one cell more)
    radius_km: float  # great-circle distance from the point estimate to the farthest region cell centre


# ---------------------------------------------------------------- the grid
def grid_step(points: np.ndarray) -> float:
    """(N, 2) cell-centred lat/lon grid -> its step, degrees; ValueError when the points are not such a grid."""
    pts = np.asarray(points, float)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise ValueError(f"grid_step: points must be (N, 2) lat/lon degrees, got {pts.shape}")
    diffs = np.concatenate([np.diff(np.unique(pts[:, 0])), np.diff(np.unique(pts[:, 1]))])
    diffs = diffs[diffs > 1e-9]
    if not len(diffs):
        raise ValueError("grid_step: a single point is not a grid (its cell size is unknown)")
    step = float(diffs.min())
    off = (pts + [90.0, 180.0]) / step - 0.5  # integer for cell-centred points
    if np.abs(off - np.round(off)).max() > 1e-6 or abs(180.0 / step - round(180.0 / step)) > 1e-6:
        raise ValueError(f"grid_step: points are not centres of a {step:g} deg lat/lon grid")
    return step


def log_density(posterior: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """(..., N) masses, (N,) cell areas km^2 -> (..., N) log mass per km^2 (zero mass -> a very low density)."""
    return np.log(np.maximum(np.asarray(posterior, np.float64), 1e-300)) - np.log(areas)


# ---------------------------------------------------------------- regions
def credible_regions(points: np.ndarray, posterior: np.ndarray, levels=LEVELS, point=None,
                     step: float | None = None) -> list[Region]:
    """(N, 2) grid, (N,) masses, levels -> one Region per level (``point`` (lat, lon) for the radius; default argmax)."""
    step = grid_step(points) if step is None else step
    p = np.asarray(posterior, np.float64)
    p = p / p.sum()
    areas = cell_areas(points, step)
    ld = log_density(p, areas)
    if point is None:
        point = points[int(np.argmax(p))]
    d = haversine(point[0], point[1], points[:, 0], points[:, 1])
    out = []
    for lv in levels:
        keep = credible_set(ld, areas, float(lv))
        out.append(Region(float(lv), np.flatnonzero(keep), float(areas[keep].sum()), float(p[keep].sum()),
                          float(d[keep].max())))
    return out


def cells_geometry(points: np.ndarray, cells: np.ndarray, step: float):
    """(N, 2) grid, (K,) cell indices, step -> shapely (Multi)Polygon of their union, lon/lat, CCW exteriors.

    Cells of one latitude row are first merged into runs (one box per run), then unioned on integer
    cell coordinates so that shared edges match exactly.
    """
    import shapely
    from shapely.geometry.polygon import orient

    pts = np.asarray(points, float)[np.asarray(cells, int)]
    if not len(pts):
        return shapely.MultiPolygon()
    i = np.round((pts[:, 0] + 90.0) / step - 0.5).astype(np.int64)  # row
    j = np.round((pts[:, 1] + 180.0) / step - 0.5).astype(np.int64)  # column
    order = np.lexsort((j, i))
    i, j = i[order], j[order]
    start = np.r_[True, (i[1:] != i[:-1]) | (j[1:] != j[:-1] + 1)]  # a new run at a row change or a gap
    s, e = np.flatnonzero(start), np.r_[np.flatnonzero(start)[1:], len(i)] - 1
    boxes = shapely.box(j[s], i[s], j[e] + 1, i[e] + 1)
    u = shapely.union_all(boxes)
    u = shapely.affinity.affine_transform(u, [step, 0, 0, step, -180.0, -90.0])  # (col, row) -> (lon, lat)
    polys = list(getattr(u, "geoms", [u]))
    return shapely.MultiPolygon([orient(q, sign=1.0) for q in polys if not q.is_empty])


def region_feature(rid: str, geometry, level: float, area_km2: float, **props) -> dict:
    """One GeoJSON Feature (RFC 7946): the region's geometry with properties id, level, area_km2 (+ ``props``)."""
    from shapely.geometry import mapping

    geom = mapping(geometry)
    return {"type": "Feature", "id": str(rid), "geometry": _round(geom),
            "properties": {"id": str(rid), "level": float(level), "area_km2": float(area_km2), **props}}


def _round(geom: dict, nd: int = 6) -> dict:
    """GeoJSON geometry dict with coordinates as nested lists rounded to ``nd`` decimals (1e-6 deg ~ 0.1 m)."""
    def r(c):
        return [round(float(c[0]), nd), round(float(c[1]), nd)] if np.isscalar(c[0]) else [r(x) for x in c]

    return {"type": geom["type"], "coordinates": r(geom["coordinates"]) if geom["coordinates"] else []}


def feature_collection(features: list[dict]) -> dict:
    """Features -> a GeoJSON FeatureCollection dict."""
    return {"type": "FeatureCollection", "features": list(features)}


def write_geojson(features: list[dict], path) -> None:
    """Features -> ``path`` as a GeoJSON FeatureCollection (atomic write)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(feature_collection(features)))


# ---------------------------------------------------------------- expected distances and decoders
def _support(p: np.ndarray, keep: float = 0.99999) -> np.ndarray:
    """(N,) masses -> indices of the densest cells holding ``keep`` of the mass (the rest changes sums by < 1e-5)."""
    order = np.argsort(-p, kind="stable")
    c = np.cumsum(p[order])
    return order[: int(np.searchsorted(c, keep * c[-1])) + 1]


def expected_distance_km(points: np.ndarray, posterior: np.ndarray, lat, lon) -> np.ndarray:
    """(N, 2) gallery, (N,) masses, (C,) candidate lat/lon -> (C,) expected km to the truth if it follows the posterior."""
    p = np.asarray(posterior, np.float64)
    p = p / p.sum()
    sup = _support(p)
    cand = np.column_stack([np.atleast_1d(lat), np.atleast_1d(lon)]).astype(float)
    out = np.empty(len(cand))
    for s in range(0, len(cand), 256):  # (256, K) distances at a time
        out[s:s + 256] = pairwise_km(cand[s:s + 256], points[sup]) @ p[sup]
    return out


def decode(points: np.ndarray, posterior: np.ndarray, decoder: str = "argmax", radius_km: float = 200.0,
           n_candidates: int = 512, areas: np.ndarray | None = None) -> tuple[float, float]:
    """(N, 2) gallery, (N,) masses [, (N,) cell areas km^2] -> (lat, lon): ``argmax`` (the densest cell),
    ``min_distance`` (the candidate cell with the least expected distance to the truth) or ``mass_within`` (the
    candidate with the most mass within ``radius_km``); candidates are the ``n_candidates`` densest cells. Without
    ``areas`` the points weigh equally (a sampled gallery): density is then mass."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, not {decoder!r}")
    p = np.asarray(posterior, np.float64)
    p = p / p.sum()
    dens = p if areas is None else p / np.asarray(areas, np.float64)
    if decoder == "argmax":
        i = int(np.argmax(dens))
        return float(points[i, 0]), float(points[i, 1])
    cand = np.argsort(-dens, kind="stable")[:n_candidates]
    if decoder == "min_distance":
        i = cand[int(np.argmin(expected_distance_km(points, p, points[cand, 0], points[cand, 1])))]
    else:
        sup = _support(p)
        i = cand[int(np.argmax((pairwise_km(points[cand], points[sup]) <= radius_km) @ p[sup]))]
    return float(points[i, 0]), float(points[i, 1])


# ---------------------------------------------------------------- coverage (calibration)
def true_cells(points: np.ndarray, lat, lon, step: float | None = None) -> np.ndarray:
    """(N, 2) grid, (R,) true lat/lon -> (R,) gallery index of the cell holding each truth (else the nearest point)."""
    step = grid_step(points) if step is None else step
    nlon = int(round(360.0 / step))

    def key(la, lo):
        i = np.clip(np.floor((np.asarray(la, float) + 90.0) / step), 0, round(180 / step) - 1).astype(np.int64)
        j = np.floor((np.asarray(lo, float) + 180.0) / step).astype(np.int64) % nlon
        return i * nlon + j

    gk = key(points[:, 0], points[:, 1])
    tk = key(lat, lon)
    order = np.argsort(gk)
    pos = np.clip(np.searchsorted(gk[order], tk), 0, len(gk) - 1)
    idx = order[pos]
    miss = gk[idx] != tk  # truth in a cell the gallery lacks (e.g. a coastal cell centred at sea)
    if miss.any():
        t = np.column_stack([np.atleast_1d(lat), np.atleast_1d(lon)]).astype(float)[miss]
        idx[miss] = np.concatenate([pairwise_km(t[s:s + 256], points).argmin(1) for s in range(0, len(t), 256)])
    return idx


def mass_above_truth(points: np.ndarray, posteriors: np.ndarray, lat, lon, step: float | None = None) -> np.ndarray:
    """(N, 2) grid, (R, N) masses, (R,) truths -> (R,) mass of the cells ranked before the true cell.

    Ranking as ``sphere.credible_set`` (density, ties by index), so the truth is in the p-region iff this is < p.
    """
    step = grid_step(points) if step is None else step
    P = np.atleast_2d(np.asarray(posteriors, np.float64))
    P = P / P.sum(1, keepdims=True)
    ld = log_density(P, cell_areas(points, step))
    t = true_cells(points, lat, lon, step)
    lt = ld[np.arange(len(P)), t][:, None]
    idx = np.arange(P.shape[1])[None]
    before = (ld > lt) | ((ld == lt) & (idx < t[:, None]))
    return (P * before).sum(1)


def coverage_table(points: np.ndarray, posteriors: np.ndarray, lat, lon, levels=(0.5, 0.8, 0.9, 0.95),
                   step: float | None = None, above: np.ndarray | None = None) -> pd.DataFrame:
    """(N, 2) grid, (R, N) masses, (R,) truths -> per level: coverage (fraction of truths inside), median area km^2.

    ``above``: (R,) :func:`mass_above_truth` of these posteriors when the caller already has it. Pass it so that
    the coverage and the caller's own numbers agree exactly: a truth in a ring of cells with equal density (in
    exact arithmetic) is ranked by last-bit noise, which differs between a row tempered alone and in a batch.
    """
    step = grid_step(points) if step is None else step
    P = np.atleast_2d(np.asarray(posteriors, np.float64))
    P = P / P.sum(1, keepdims=True)
    above = mass_above_truth(points, P, lat, lon, step) if above is None else np.asarray(above, np.float64)
    if above.shape != (len(P),):
        raise ValueError(f"coverage_table: above has shape {above.shape}, expected ({len(P)},)")
    areas = cell_areas(points, step)
    order = np.argsort(-log_density(P, areas), axis=1, kind="stable")  # one sort serves every level
    m = np.take_along_axis(P, order, axis=1)
    before = np.cumsum(m, axis=1) - m
    a = areas[order]
    return pd.DataFrame([{"level": lv, "coverage": float(np.mean(above < lv)),
                          "median_area_km2": float(np.median((a * (before < lv * (1 - 1e-12))).sum(1))), "n": len(P)}
                         for lv in levels])


def temper(posteriors: np.ndarray, temperature: float, areas: np.ndarray) -> np.ndarray:
    """(R, N) masses, T > 0, (N,) areas -> (R, N) masses with log density divided by T (T > 1 widens)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    ld = log_density(posteriors, areas) / temperature + np.log(areas)
    ld -= ld.max(-1, keepdims=True)
    m = np.exp(ld)
    return m / m.sum(-1, keepdims=True)


def km2_to_radius_km(area_km2: float) -> float:
    """Area km^2 -> radius km of the spherical cap with that area (a size one can read)."""
    return float(EARTH_RADIUS_KM * np.arccos(np.clip(1 - area_km2 / (2 * np.pi * EARTH_RADIUS_KM ** 2), -1, 1)))
