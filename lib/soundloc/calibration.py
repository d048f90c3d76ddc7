"""Calibration of credible regions on real data: coverage, reliability diagrams, a temperature chosen on one fold.

A posterior is calibrated when its p-credible region holds the truth for a fraction p of recordings. The
temperature T divides the log density (``regions.temper``; T > 1 widens regions); it is chosen on one
spatial fold and reported on the other (:func:`crossfit_temperature`), never on the recordings it is reported on.

A list of k species multiplies k ranges that are not independent evidence (species of one habitat share
their ranges), so its overconfidence grows with k: :func:`list_temperature` makes T depend on the list's
length, T(k) = T1 + b log k, with T1 the one-species temperature and the slope b chosen on one fold.
At the same k, lists whose species carry little information each (information gain per species g/k small:
widespread species that all say the same thing, as in a complete dawn-chorus list) are more overconfident:
T(k, g) adds c * max(0, -log max(g / k, GAIN_FLOOR)) for k >= 2 (:func:`redundancy`), c chosen with b.

A temperature scales every region alike, so it cannot fix the *shape* of the miscalibration (lists over-cover at
p = 0.5 and under-cover at p = 0.9 after it). Level recalibration (split conformal on the mass above the truth a) does:
on the training folds, the reported p-region is the q(p)-mass region of the tempered posterior, with q(p) the
ceil((n + 1) p)-th smallest a (:func:`conformal_levels`). If the held-out recording is exchangeable with the n training
ones, it lies inside with probability >= p (and < p + 1/(n + 1) without ties); spatial folds make the recordings only
roughly exchangeable, so the guarantee is approximate and is measured (:func:`crossfit_levels`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .metrics import BOOTSTRAP_B, bootstrap_index, cluster_counts
from .sphere import cell_areas
from .regions import coverage_table, grid_step, mass_above_truth, temper

LEVELS = (0.5, 0.8, 0.9, 0.95)  # nominal levels reported
GAIN_FLOOR = 0.05  # nats per species below which redundancy stops growing (a list with almost no information)


def redundancy(k, gain) -> np.ndarray:
    """(R,) species counts, (R,) information gains KL(posterior || prior) nats -> (R,) max(0, -log max(g/k, floor)),
    0 for k < 2 (one species cannot repeat another)."""
    k = np.maximum(np.asarray(k, np.float64), 1.0)
    r = np.maximum(0.0, -np.log(np.maximum(np.asarray(gain, np.float64) / k, GAIN_FLOOR)))
    return np.where(k >= 2, r, 0.0)


def list_temperature(k, t_one: float, slope: float, gain=None, info_slope: float = 0.0) -> np.ndarray:
    """(R,) species counts k, T1, slope b [, (R,) information gains g nats, slope c] -> (R,) temperatures
    T1 + b log max(k, 1) + c redundancy(k, g)."""
    t = t_one + slope * np.log(np.maximum(np.asarray(k, np.float64), 1.0))
    return t if gain is None or info_slope == 0 else t + info_slope * redundancy(k, gain)


def temper_lists(posteriors: np.ndarray, temperatures, areas: np.ndarray) -> np.ndarray:
    """(R, N) masses, (R,) or scalar temperatures, (N,) areas -> (R, N) masses, row r's log density divided by T_r."""
    P = np.atleast_2d(np.asarray(posteriors))
    T = np.broadcast_to(np.asarray(temperatures, np.float64), (len(P),))
    out = np.empty(P.shape, np.float64)
    for t in np.unique(T):  # one tempering per distinct temperature (few: one per list length)
        rows = T == t
        out[rows] = temper(P[rows], float(t), areas)
    return out


def conformal_levels(above_train, levels=LEVELS) -> np.ndarray:
    """(n,) mass above the truth on training recordings, (L,) nominal levels p -> (L,) internal levels q(p) in (0, 1].

    q(p) is just above the k-th smallest a, k = ceil((n + 1) p), so that the q(p)-region (truth inside iff a < q, as
    ``regions.mass_above_truth``) holds every training truth with a <= that value; 1 (the whole posterior) when k > n.
    """
    a = np.sort(np.asarray(above_train, np.float64).ravel())
    if not len(a):
        raise ValueError("conformal_levels: no training recordings")
    p = np.asarray(levels, np.float64)
    if np.any((p <= 0) | (p >= 1)):
        raise ValueError(f"conformal_levels: levels must lie in (0, 1), got {p}")
    n = len(a)
    k = np.ceil(np.round((n + 1) * p, 9)).astype(np.int64)  # round: (n + 1) * 0.9 must not become 9.000000000000002
    q = np.nextafter(a[np.clip(k, 1, n) - 1], np.inf)
    return np.where(k <= n, np.minimum(q, 1.0), 1.0)


def conformal_above(above_train, above) -> np.ndarray:
    """(n,) training mass above the truth, (R,) held-out ones -> (R,) recalibrated mass above the truth r / (n + 1),
    r the number of training values below: a held-out truth is inside the recalibrated p-region iff this is < p (for
    :func:`reliability` at any p; the same regions as :func:`conformal_levels` wherever q(p) < 1)."""
    a = np.sort(np.asarray(above_train, np.float64).ravel())
    return np.searchsorted(a, np.asarray(above, np.float64), side="left") / (len(a) + 1)


def reliability(above: np.ndarray, levels=np.linspace(0.05, 0.95, 19)) -> pd.DataFrame:
    """(R,) mass above the truth -> per nominal level: empirical coverage (the reliability diagram's points)."""
    above = np.asarray(above, float)
    return pd.DataFrame({"level": levels, "coverage": [(above < lv).mean() for lv in levels]})


def _pair(x) -> tuple[float, float]:
    """A grid value: slope b or (b, c) -> (b, c)."""
    return (float(x[0]), float(x[1])) if np.ndim(x) else (float(x), 0.0)


def masses_above(points: np.ndarray, posteriors: np.ndarray, lat, lon, grid, step: float | None = None, ks=None,
                 t_one: float = 1.0, gains=None) -> list[np.ndarray]:
    """(R, N) masses, (R,) truths, G values -> G arrays (R,) of mass above the truth after each calibration.

    Without ``ks`` the values are temperatures; with ``ks`` ((R,) species counts) slopes b of T = ``t_one`` + b log k,
    or pairs (b, c) adding c redundancy(k, ``gains``).
    """
    step = grid_step(points) if step is None else step
    areas = cell_areas(points, step)
    out = []
    for x in grid:
        T = x if ks is None else list_temperature(ks, t_one, _pair(x)[0], gains, _pair(x)[1])
        out.append(mass_above_truth(points, temper_lists(posteriors, T, areas), lat, lon, step))
    return out


def pick(grid, above: list[np.ndarray], rows, levels, name: str) -> tuple[object, pd.DataFrame]:
    """Grid, per value (R,) mass above truth, a row mask -> (the value closest to nominal on those rows, table)."""
    lv = np.asarray(levels, float)
    tab = []
    for x, a in zip(grid, above):
        cov = np.array([(a[rows] < v).mean() for v in lv])
        b, c = _pair(x)
        tab.append({name: b, **({"info_slope": c} if np.ndim(x) else {}), "mean_abs_gap": float(np.abs(cov - lv).mean()),
                    **{f"coverage@{v:g}": q for v, q in zip(lv, cov)}})
    tab = pd.DataFrame(tab)
    best = grid[int(tab.mean_abs_gap.idxmin())]
    return (tuple(map(float, best)) if np.ndim(best) else float(best)), tab


def choose_temperature(points: np.ndarray, posteriors: np.ndarray, lat, lon, grid, levels=LEVELS,
                       step: float | None = None, ks=None, t_one: float = 1.0, gains=None) -> tuple[object, pd.DataFrame]:
    """Values to try -> (the one whose coverage is closest to nominal: least mean |coverage - level|, table).

    Without ``ks`` the values are temperatures; with ``ks`` ((R,) species counts) they are slopes b of
    T(k) = ``t_one`` + b log k, or pairs (b, c) of T(k, g) = ``t_one`` + b log k + c redundancy(k, g) (``gains``).
    """
    above = masses_above(points, posteriors, lat, lon, grid, step, ks, t_one, gains)
    return pick(list(grid), above, np.ones(len(above[0]), bool), levels, "temperature" if ks is None else "slope")


def crossfit_temperature(points: np.ndarray, posteriors: np.ndarray, lat, lon, folds: np.ndarray, grid,
                         levels=LEVELS, ks=None, t_one: float = 1.0, gains=None, above=None,
                         recalibrate: bool = False) -> tuple[pd.DataFrame, dict]:
    """(R, N) masses, (R,) truths, (R,) fold ids -> (per reported fold and level: the value chosen on the other
    folds (a temperature; with ``ks`` the slope b of T(k) = ``t_one`` + b log k, or (b, c) with ``gains``: see
    :func:`choose_temperature`), raw and calibrated coverage and median area; {fold: (R_f,) calibrated mass above
    truth} for reliability). ``above``: :func:`masses_above` of the same grid when already computed.

    With ``recalibrate`` the table adds the level recalibration of the tempered posterior (:func:`conformal_levels`,
    its q(p) from the other folds' tempered mass above the truth): ``level_recalibrated`` q(p),
    ``coverage_recalibrated`` and ``median_area_recalibrated_km2`` of the q(p)-regions; the dict's values are then
    pairs (calibrated, recalibrated :func:`conformal_above`) of (R_f,) arrays."""
    step = grid_step(points)
    areas = cell_areas(points, step)
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    ks = None if ks is None else np.asarray(ks)
    gains = None if gains is None else np.asarray(gains, np.float64)
    grid = list(grid)
    every = masses_above(points, posteriors, lat, lon, grid, step, ks, t_one, gains) if above is None else above
    above = {}
    rows = []
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        x, tab = pick(grid, every, tr, levels, "temperature" if ks is None else "slope")
        (T, b), c = ((x, 0.0), 0.0) if ks is None else ((t_one, _pair(x)[0]), _pair(x)[1])
        Tr = T if ks is None else list_temperature(ks[te], t_one, b, None if gains is None else gains[te], c)
        Pc = temper_lists(posteriors[te], Tr, areas)
        raw = coverage_table(points, posteriors[te], lat[te], lon[te], levels, step)
        a_f = every[int(tab.mean_abs_gap.idxmin())]  # every row tempered by fold f's choice: training rows give q(p)
        cal = coverage_table(points, Pc, lat[te], lon[te], levels, step, above=a_f[te])  # the reliability input's numbers
        above[int(f)] = (a_f[te], conformal_above(a_f[tr], a_f[te])) if recalibrate else a_f[te]
        rec = recalibrated_table(points, Pc, lat[te], lon[te], a_f[tr], levels, step, a_f[te]) if recalibrate else None
        for i, ((_, a), (_, q)) in enumerate(zip(raw.iterrows(), cal.iterrows())):
            rows.append({"fold": int(f), "n": int(te.sum()), "temperature": T, "slope": b, "info_slope": c,
                         "level": a.level, "coverage_raw": a.coverage, "coverage_calibrated": q.coverage,
                         "median_area_raw_km2": a.median_area_km2, "median_area_calibrated_km2": q.median_area_km2,
                         **({} if rec is None else rec.iloc[i].to_dict())})
    return pd.DataFrame(rows), above


def recalibrated_table(points: np.ndarray, posteriors: np.ndarray, lat, lon, above_train, levels=LEVELS,
                       step: float | None = None, above: np.ndarray | None = None) -> pd.DataFrame:
    """(R, N) tempered masses, (R,) truths, (n,) training mass above the truth (same tempering) -> per nominal level p
    (rows in ``levels`` order): ``level_recalibrated`` q(p) (:func:`conformal_levels`), ``coverage_recalibrated``
    (fraction of truths in the q(p)-region) and ``median_area_recalibrated_km2``; ``above`` as in ``coverage_table``."""
    q = conformal_levels(above_train, levels)
    t = coverage_table(points, posteriors, lat, lon, q, step, above)
    return pd.DataFrame({"level_recalibrated": q, "coverage_recalibrated": t.coverage.to_numpy(),
                         "median_area_recalibrated_km2": t.median_area_km2.to_numpy()})


# ---------------------------------------------------------------- uncertainty of a measured coverage
def _coverage_draws(above: np.ndarray, levels, clusters, B: int, seed: int) -> np.ndarray:
    """(n,) mass above the truth, (L,) levels -> (B, L) bootstrap coverages (rows, or whole ``clusters``, resampled)."""
    inside = (np.asarray(above, float)[:, None] < np.asarray(levels, float)[None]).astype(np.float64)  # (n, L)
    if clusters is None:
        W = np.zeros((B, len(inside)))
        np.add.at(W, (np.repeat(np.arange(B), len(inside)), bootstrap_index(len(inside), B, seed).ravel()), 1.0)
    else:
        cl = np.asarray(clusters).ravel()
        if cl.size != len(inside):
            raise ValueError(f"clusters: {cl.size} labels for {len(inside)} recordings")
        idx, counts = cluster_counts(cl, B, seed)
        W = counts[:, idx].astype(np.float64)
    return W @ inside / W.sum(1, keepdims=True)


def coverage_ci(above, levels=LEVELS, clusters=None, B: int = BOOTSTRAP_B, seed: int = 0, ci: float = 0.95) -> pd.DataFrame:
    """(n,) held-out mass above the truth -> per nominal level p: coverage (share of truths inside the p-region,
    a < p) and its percentile bootstrap interval lo, hi over recordings or over ``clusters`` ((n,) labels: near-duplicate
    recordings, one recordist's or one site's, are drawn together). Whether a coverage is off nominal is read here,
    never from the point estimate alone."""
    lv = np.asarray(levels, float)
    draws = _coverage_draws(above, lv, clusters, B, seed)
    q = (1 - ci) / 2
    lo, hi = np.quantile(draws, [q, 1 - q], axis=0)
    return pd.DataFrame({"level": lv, "coverage": (np.asarray(above, float)[:, None] < lv[None]).mean(0), "lo": lo, "hi": hi})


def gap_change_ci(above_a, above_b, levels=(0.5, 0.9), clusters=None, B: int = BOOTSTRAP_B, seed: int = 0,
                  ci: float = 0.95) -> dict:
    """Two calibrations' (n,) mass above the truth on the same recordings -> the change in mean |coverage - p| over
    ``levels`` from a to b (points, b - a), with a paired bootstrap interval over recordings or ``clusters``:
    {"a", "b", "diff", "lo", "hi"} in percentage points."""
    lv = np.asarray(levels, float)
    ga, gb = (np.abs(_coverage_draws(x, lv, clusters, B, seed) - lv).mean(1) for x in (above_a, above_b))
    point = [float(np.abs((np.asarray(x, float)[:, None] < lv).mean(0) - lv).mean()) for x in (above_a, above_b)]
    q = (1 - ci) / 2
    lo, hi = np.quantile(gb - ga, [q, 1 - q])
    return {"a": 100 * point[0], "b": 100 * point[1], "diff": 100 * (point[1] - point[0]), "lo": 100 * lo, "hi": 100 * hi}
