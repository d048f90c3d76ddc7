"""Calibration of credible regions on real data: coverage, reliability diagrams, a temperature chosen on one fold.

A posterior is calibrated when its p-credible region holds the truth for a fraction p of recordings. The
temperature T divides the log density (``regions.temper``; T > 1 widens regions); it is chosen on one
spatial fold and reported on the other (:func:`crossfit_temperature`), never on the recordings it is reported on.

A list of k species multiplies k ranges that are not independent evidence (species of one habitat share
their ranges), so its overconfidence grows with k: :func:`list_temperature` makes T depend on the list's
length, T(k) = T1 + b log k, with T1 the one-species temperature and the slope b chosen on one fold.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .sphere import cell_areas
from .regions import coverage_table, grid_step, mass_above_truth, temper

LEVELS = (0.5, 0.8, 0.9, 0.95)  # nominal levels reported


def list_temperature(k, t_one: float, slope: float) -> np.ndarray:
    """(R,) species counts k, T1, slope b -> (R,) temperatures T1 + b log max(k, 1)."""
    return t_one + slope * np.log(np.maximum(np.asarray(k, np.float64), 1.0))


def temper_lists(posteriors: np.ndarray, temperatures, areas: np.ndarray) -> np.ndarray:
    """(R, N) masses, (R,) or scalar temperatures, (N,) areas -> (R, N) masses, row r's log density divided by T_r."""
    P = np.atleast_2d(np.asarray(posteriors))
    T = np.broadcast_to(np.asarray(temperatures, np.float64), (len(P),))
    out = np.empty(P.shape, np.float64)
    for t in np.unique(T):  # one tempering per distinct temperature (few: one per list length)
        rows = T == t
        out[rows] = temper(P[rows], float(t), areas)
    return out


def reliability(above: np.ndarray, levels=np.linspace(0.05, 0.95, 19)) -> pd.DataFrame:
    """(R,) mass above the truth -> per nominal level: empirical coverage (the reliability diagram's points)."""
    above = np.asarray(above, float)
    return pd.DataFrame({"level": levels, "coverage": [(above < lv).mean() for lv in levels]})


def choose_temperature(points: np.ndarray, posteriors: np.ndarray, lat, lon, grid, levels=LEVELS,
                       step: float | None = None, ks=None, t_one: float = 1.0) -> tuple[float, pd.DataFrame]:
    """Values to try -> (the one whose coverage is closest to nominal: least mean |coverage - level|, table).

    Without ``ks`` the values are temperatures; with ``ks`` ((R,) species counts) they are slopes b of
    T(k) = ``t_one`` + b log k.
    """
    step = grid_step(points) if step is None else step
    areas = cell_areas(points, step)
    lv = np.asarray(levels, float)
    name = "temperature" if ks is None else "slope"
    rows = []
    for x in grid:
        T = x if ks is None else list_temperature(ks, t_one, x)
        above = mass_above_truth(points, temper_lists(posteriors, T, areas), lat, lon, step)
        cov = np.array([(above < v).mean() for v in lv])
        rows.append({name: float(x), "mean_abs_gap": float(np.abs(cov - lv).mean()),
                     **{f"coverage@{v:g}": c for v, c in zip(lv, cov)}})
    tab = pd.DataFrame(rows)
    return float(tab[name][tab.mean_abs_gap.idxmin()]), tab


def crossfit_temperature(points: np.ndarray, posteriors: np.ndarray, lat, lon, folds: np.ndarray, grid,
                         levels=LEVELS, ks=None, t_one: float = 1.0) -> tuple[pd.DataFrame, dict]:
    """(R, N) masses, (R,) truths, (R,) fold ids -> (per reported fold and level: the value chosen on the other
    folds (a temperature; with ``ks`` the slope of T(k) = ``t_one`` + b log k), raw and calibrated coverage and
    median area; {fold: (R_f,) calibrated mass above truth} for reliability)."""
    step = grid_step(points)
    areas = cell_areas(points, step)
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    ks = None if ks is None else np.asarray(ks)
    rows, above = [], {}
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        x, _ = choose_temperature(points, posteriors[tr], lat[tr], lon[tr], grid, levels, step,
                                  None if ks is None else ks[tr], t_one)
        T, b = (x, 0.0) if ks is None else (t_one, x)
        Pc = temper_lists(posteriors[te], T if ks is None else list_temperature(ks[te], t_one, b), areas)
        raw = coverage_table(points, posteriors[te], lat[te], lon[te], levels, step)
        cal = coverage_table(points, Pc, lat[te], lon[te], levels, step)
        above[int(f)] = mass_above_truth(points, Pc, lat[te], lon[te], step)
        for (_, a), (_, c) in zip(raw.iterrows(), cal.iterrows()):
            rows.append({"fold": int(f), "n": int(te.sum()), "temperature": T, "slope": b, "level": a.level,
                         "coverage_raw": a.coverage, "coverage_calibrated": c.coverage,
                         "median_area_raw_km2": a.median_area_km2, "median_area_calibrated_km2": c.median_area_km2})
    return pd.DataFrame(rows), above
