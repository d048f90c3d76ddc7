"""Beyond the paper: AG-CLIP fused with another expert (product of experts) and calibration of its
posteriors (credible-set areas and coverage)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["fuse", "credible_sets"]


def fuse(log_a: torch.Tensor, log_b: torch.Tensor, weight: float) -> torch.Tensor:
    """Product of experts over one gallery: (R, N) log posteriors -> log softmax(log_a + weight * log_b)."""
    if log_a.shape != log_b.shape:
        raise ValueError(f"fuse: posteriors of shapes {tuple(log_a.shape)} and {tuple(log_b.shape)}")
    if weight == 0:
        return log_a.float().log_softmax(1)
    return (log_a.float() + weight * log_b.float()).log_softmax(1)


@torch.no_grad()
def credible_sets(post: torch.Tensor, area_km2, true_idx, levels: Sequence[float] = (0.5, 0.9),
                  chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Smallest sets of gallery cells holding ``levels`` of the posterior -> (R, L) area km^2, (R, L) bool covered.

    ``post`` (R, N) masses (rows sum to 1), ``area_km2`` (N,), ``true_idx`` (R,) the cell of the
    true location. Cells are added in decreasing density (mass / area: the highest-density region, as
    :func:`soundloc.sphere.credible_set`; ranking by mass would favour large cells) until the mass reaches
    the level (ties broken by index); "covered" = the true cell is among them. Vectorised over recordings.
    """
    post = torch.as_tensor(post, dtype=torch.float64)
    area = torch.as_tensor(np.asarray(area_km2, np.float64))
    true_idx = torch.as_tensor(np.asarray(true_idx, np.int64))
    if post.ndim != 2 or area.shape != (post.shape[1],) or true_idx.shape != (post.shape[0],):
        raise ValueError(f"credible_sets: post {tuple(post.shape)}, area {tuple(area.shape)}, "
                         f"true_idx {tuple(true_idx.shape)} do not fit")
    lv = torch.as_tensor(list(levels), dtype=torch.float64)
    areas, covered = [], []
    for s in range(0, len(post), chunk):
        p = post[s:s + chunk]
        _, order = torch.sort(p / area, dim=1, descending=True, stable=True)  # densest first
        cum = p.gather(1, order).cumsum(1)
        # number of cells needed: first position where the cumulative mass reaches the level (tolerance 1e-9)
        need = torch.searchsorted(cum.contiguous(), (lv[None, :] - 1e-9).expand(len(p), -1).contiguous()) + 1
        need = need.clamp(max=p.shape[1])
        cum_area = area[order].cumsum(1)
        areas.append(cum_area.gather(1, need - 1))
        rank = (order == true_idx[s:s + chunk, None]).float().argmax(1)  # position of the true cell
        covered.append(rank[:, None] < need)
    return torch.cat(areas).numpy(), torch.cat(covered).numpy()
