"""Naive baselines: a random location drawn from a reference set (the paper's "Rnd Train Loc")."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .sphere import haversine
from .metrics import summary_row


def naive_errors(true: np.ndarray, reference: np.ndarray, seed: int = 0, exclude_self: bool = False) -> np.ndarray:
    """(N, 2) true lat/lon, (M, 2) reference lat/lon -> (N,) km error of a uniform random reference pick.

    ``exclude_self`` (reference is ``true`` itself): query i never draws itself (leave-one-out).
    """
    rng = np.random.default_rng(seed)
    n, m = len(true), len(reference)
    if exclude_self:
        if m != n or m < 2:
            raise ValueError("exclude_self needs the reference to be the query set itself (N >= 2)")
        j = rng.integers(0, m - 1, size=n)
        j = j + (j >= np.arange(n))  # skip index i
    else:
        j = rng.integers(0, m, size=n)
    pick = reference[j]
    return haversine(true[:, 0], true[:, 1], pick[:, 0], pick[:, 1])


def naive_row(method: str, true: np.ndarray, reference: np.ndarray, seeds, exclude_self: bool = False) -> dict:
    """(N, 2) true, (M, 2) reference lat/lon, seeds -> one table row: each metric averaged over the draws.

    Each draw (one seed) is scored with the benchmark's metric first (median km, accuracy within the
    thresholds), and only those scores are averaged; ``<metric> sd`` is their spread over the draws
    (ddof=1; 0 for one draw). Averaging the per-recording errors over draws before scoring would not be the
    benchmark's metric: the mean of three random distances is rarely below a 750 km threshold.
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("naive_row: give at least one seed")
    reps = pd.DataFrame([summary_row(method, naive_errors(true, reference, s, exclude_self)) for s in seeds])
    num = reps.drop(columns=["method", "n"])
    sd = num.std(ddof=1) if len(seeds) > 1 else num * 0.0
    row = {"method": method, "n": len(true), **num.mean().to_dict(), "draws": len(seeds)}
    row.update({f"{k} sd": float(v) for k, v in (sd.items() if len(seeds) > 1 else sd.iloc[0].items())})
    return row
