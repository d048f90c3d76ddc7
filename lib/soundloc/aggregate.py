"""Spatiotemporal grouping (paper section 5.3, Table 4): H3 cell x year / month / week."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .geo import h3_cells

PERIODS = ("all", "year", "month", "week")


def group_ids(df: pd.DataFrame, res: int, period: str = "all") -> np.ndarray:
    """(R rows with lat, lon, date) -> (R,) int group ids: same H3 cell at ``res`` and same period."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, not {period!r}")
    key = pd.Series(h3_cells(df["lat"].to_numpy(), df["lon"].to_numpy(), res), index=df.index).astype(str)
    if period != "all":
        d = pd.to_datetime(df["date"])
        t = {"year": d.dt.year.astype(str), "month": d.dt.strftime("%Y-%m"),
             "week": d.dt.year.astype(str) + "-w" + df["week"].astype(str)}[period]
        key = key + "|" + t
    return pd.factorize(key)[0]


def average_posteriors(post: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(R, N) posteriors, (R,) group ids -> (R, N) each row replaced by its group's mean posterior."""
    import torch

    g = torch.as_tensor(groups, dtype=torch.long)
    P = torch.as_tensor(post)
    sums = torch.zeros((int(g.max()) + 1, P.shape[1]), dtype=P.dtype).index_add_(0, g, P)
    counts = torch.bincount(g).to(P.dtype)[:, None]
    return (sums / counts)[g].numpy()


def species_lists(df: pd.DataFrame, groups: np.ndarray, min_species: int = 1) -> pd.DataFrame:
    """Recordings with a ``species`` column + group ids -> one row per group: species (sorted list),
    n_species, n_recordings, lat/lon of the group's first recording, its week (most common)."""
    d = df.assign(_g=groups)
    g = d.groupby("_g")
    out = pd.DataFrame({
        "species": g["species"].agg(lambda s: sorted(set(s))),
        "n_recordings": g.size(),
        "lat": g["lat"].first(), "lon": g["lon"].first(),
        "week": g["week"].agg(lambda w: int(w.mode().iloc[0])),
    })
    out["n_species"] = out["species"].map(len)
    return out[out.n_species >= min_species].reset_index(names="group")
