"""Naive baselines: a random location drawn from a reference set (the paper's "Rnd Train Loc")."""
from __future__ import annotations

import numpy as np

from .geo import haversine


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
