"""Experiments on species sets: random subsets of a list (paper Table 3 right) and list validation sets."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .aggregate import group_ids, linked_groups, species_lists
from .sphere import h3_cells


def random_subsets(lists: list[list[str]], k: int | None, draws: int, seed: int = 0) -> tuple[list[list[str]], np.ndarray]:
    """R lists, k (None = all) -> (R * draws) subsets of min(k, len) species and (R * draws,) row indices."""
    rng = np.random.default_rng(seed)
    out, rows = [], []
    for d in range(draws):
        for i, lst in enumerate(lists):
            kk = len(lst) if k is None else min(k, len(lst))
            out.append([lst[j] for j in rng.choice(len(lst), kk, replace=False)])
            rows.append(i)
    return out, np.asarray(rows)


def inat_lists(inat: pd.DataFrame, res: int = 4, period: str = "month", min_species: int = 8,
               supercategory: str | None = "Aves") -> pd.DataFrame:
    """Multi-species lists built from real iNatSounds recordings: species heard in one H3 cell and period.

    A validation set for list-geolocation parameters that is not XCDC (one row per group: species,
    week, lat/lon of its first recording, n_species, n_recordings).
    """
    df = inat if supercategory is None else inat[inat.supercategory == supercategory]
    return species_lists(df, group_ids(df, res, period), min_species)


def site_clusters(lat, lon, recordist=None, res: int = 4) -> np.ndarray:
    """(R,) lat/lon degrees [, (R,) recordist names] -> (R,) cluster ids for a bootstrap: recordings linked by the same
    H3 res-``res`` cell or the same recordist (many dawns at one site, or one person's lists, are near-duplicates)."""
    keys = {"site": pd.factorize(h3_cells(np.asarray(lat, float), np.asarray(lon, float), res))[0]}
    if recordist is not None:
        keys["recordist"] = pd.factorize(pd.Series(list(recordist)).fillna("?"))[0]
    return linked_groups(keys)
