"""Calibration of credible regions on real data: coverage, reliability diagrams, a temperature chosen on one fold.

A posterior is calibrated when its p-credible region holds the truth for a fraction p of recordings. The
temperature T divides the log density (``regions.temper``; T > 1 widens regions); it is chosen on one
spatial fold and reported on the other (:func:`crossfit_temperature`), never on the recordings it is reported on.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .geo import cell_areas
from .regions import coverage_table, grid_step, mass_above_truth, temper

LEVELS = (0.5, 0.8, 0.9, 0.95)  # nominal levels reported


def reliability(above: np.ndarray, levels=np.linspace(0.05, 0.95, 19)) -> pd.DataFrame:
    """(R,) mass above the truth -> per nominal level: empirical coverage (the reliability diagram's points)."""
    above = np.asarray(above, float)
    return pd.DataFrame({"level": levels, "coverage": [(above < lv).mean() for lv in levels]})


def choose_temperature(points: np.ndarray, posteriors: np.ndarray, lat, lon, grid, levels=LEVELS,
                       step: float | None = None) -> tuple[float, pd.DataFrame]:
    """Temperatures to try -> (the one whose coverage is closest to nominal: least mean |coverage - level|, table)."""
    step = grid_step(points) if step is None else step
    areas = cell_areas(points, step)
    lv = np.asarray(levels, float)
    rows = []
    for T in grid:
        above = mass_above_truth(points, temper(posteriors, T, areas), lat, lon, step)
        cov = np.array([(above < x).mean() for x in lv])
        rows.append({"temperature": float(T), "mean_abs_gap": float(np.abs(cov - lv).mean()),
                     **{f"coverage@{x:g}": c for x, c in zip(lv, cov)}})
    tab = pd.DataFrame(rows)
    return float(tab.temperature[tab.mean_abs_gap.idxmin()]), tab


def crossfit_temperature(points: np.ndarray, posteriors: np.ndarray, lat, lon, folds: np.ndarray, grid,
                         levels=LEVELS) -> tuple[pd.DataFrame, dict]:
    """(R, N) masses, (R,) truths, (R,) fold ids -> (per reported fold and level: T chosen on the other folds,
    raw and calibrated coverage and median area; {fold: (R_f,) calibrated mass above truth} for reliability)."""
    step = grid_step(points)
    areas = cell_areas(points, step)
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    rows, above = [], {}
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        T, _ = choose_temperature(points, posteriors[tr], lat[tr], lon[tr], grid, levels, step)
        Pc = temper(posteriors[te], T, areas)
        raw = coverage_table(points, posteriors[te], lat[te], lon[te], levels, step)
        cal = coverage_table(points, Pc, lat[te], lon[te], levels, step)
        above[int(f)] = mass_above_truth(points, Pc, lat[te], lon[te], step)
        for (_, a), (_, b) in zip(raw.iterrows(), cal.iterrows()):
            rows.append({"fold": int(f), "n": int(te.sum()), "temperature": T, "level": a.level, "coverage_raw": a.coverage,
                         "coverage_calibrated": b.coverage, "median_area_raw_km2": a.median_area_km2,
                         "median_area_calibrated_km2": b.median_area_km2})
    return pd.DataFrame(rows), above
