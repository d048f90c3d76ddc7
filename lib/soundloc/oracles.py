"""Species oracles (paper Table 1): checklists at the true location -> GeoCLIP embedding -> retrieval.

A checklist is the range model's probabilities thresholded at the true (location, week). A
ridge-regression linear map from checklists to GeoCLIP location embeddings is fitted on a
reference location set that is not the evaluation set (GeoCLIP's 100K photo coordinates), and
a corrupted checklist of an evaluation point is located by cosine retrieval over a gallery.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch
from tqdm.auto import tqdm

from .range_model import RangeModel

CORRUPTIONS = ("full", "corrupt50", "keep10")


@dataclass(frozen=True)
class OracleConfig:
    threshold: float = 0.1  # checklist = p >= threshold (paper: 0.1 with SINR; BirdNET's default is 0.03)
    ridge: float = 1.0  # L2 penalty of the linear map (on the reference set's scale)
    chunk: int = 4096  # points per range-model call


def checklists(model: RangeModel, points: np.ndarray, weeks, threshold: float, chunk: int = 4096,
               progress: bool = False) -> torch.Tensor:
    """(N, 2) lat/lon, (N,) weeks 1-48 | None -> (N, S) bool presence checklists."""
    return checklists_at(model, points, weeks, (threshold,), chunk, progress)[threshold]


def checklists_at(model: RangeModel, points: np.ndarray, weeks, thresholds, chunk: int = 4096,
                  progress: bool = False) -> dict[float, torch.Tensor]:
    """(N, 2) lat/lon, (N,) weeks 1-48 | None, thresholds -> {threshold: (N, S) bool checklists}, from one
    range-model pass (the probabilities are the costly part)."""
    out = {t: torch.empty((len(points), len(model.species)), dtype=torch.bool) for t in thresholds}
    wk = None if weeks is None else np.asarray(weeks)
    for i in tqdm(range(0, len(points), chunk), desc="checklists", disable=not progress, leave=False):
        w = None if wk is None else wk[i:i + chunk]
        p = model.prob(points[i:i + chunk, 0], points[i:i + chunk, 1], w)
        for t, x in out.items():
            x[i:i + chunk] = torch.from_numpy(p >= t)
    return out


def corrupt(lists: torch.Tensor, mode: str, seed: int = 0) -> torch.Tensor:
    """(N, S) bool checklists -> corrupted copy: 'full', 'corrupt50' (drop each present species with
    probability 0.5) or 'keep10' (keep 10 random present species)."""
    if mode not in CORRUPTIONS:
        raise ValueError(f"mode must be one of {CORRUPTIONS}")
    if mode == "full":
        return lists.clone()
    g = torch.Generator().manual_seed(seed)
    r = torch.rand(lists.shape, generator=g)
    if mode == "corrupt50":
        return lists & (r >= 0.5)
    # keep10: rank present species by a random key, keep the 10 smallest
    key = torch.where(lists, r, torch.full_like(r, 2.0))
    kth = key.kthvalue(min(10, lists.shape[1]), dim=1, keepdim=True).values
    return lists & (key <= kth)


def fit_linear_map(X: torch.Tensor, Y: torch.Tensor, ridge: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression (N, S) checklists -> (N, D) embeddings: returns W (S, D) and bias (D,), float32.

    Solves the smaller of the two equal systems, (Xc^T Xc + r I)^-1 Xc^T Yc (S x S) when S <= N, else
    Xc^T (Xc Xc^T + r I)^-1 Yc (N x N). Checklists are sparse (a few % of species present), so the Gram matrix
    is built from the sparse lists (exact co-occurrence counts) and centred afterwards, in float64, and solved
    by Cholesky: it costs N k^2 for k species per list instead of a dense N S min(N, S), and is closer to a
    float64 reference than a dense float32 solve (tested; bench/bench_ridge.py compares the two).
    """
    if ridge <= 0:
        raise ValueError(f"fit_linear_map: ridge must be > 0, got {ridge}")
    Xs = scipy.sparse.csr_matrix(X.detach().cpu().numpy()).astype(np.float64)
    Yd = Y.detach().cpu().double().numpy()
    n, s = Xs.shape
    mx, my = np.asarray(Xs.mean(0)).ravel(), Yd.mean(0)
    if s <= n:
        G = (Xs.T @ Xs).toarray() - n * np.outer(mx, mx)  # Xc^T Xc
        R = Xs.T @ Yd - n * np.outer(mx, my)  # Xc^T Yc
        W = _cholesky_solve(G, ridge, R)
    else:
        xm = Xs @ mx  # (N,) row . mean
        K = (Xs @ Xs.T).toarray() - xm[:, None] - xm[None, :] + mx @ mx  # Xc Xc^T
        A = _cholesky_solve(K, ridge, Yd - my)  # (N, D)
        W = Xs.T @ A - np.outer(mx, A.sum(0))  # Xc^T A
    b = my - mx @ W
    return torch.from_numpy(np.ascontiguousarray(W, np.float32)), torch.from_numpy(b.astype(np.float32))


def _cholesky_solve(G: np.ndarray, ridge: float, R: np.ndarray) -> np.ndarray:
    """(M, M) symmetric PSD float64, ridge > 0, (M, D) -> (G + ridge I)^-1 R, (M, D) float64; adds the ridge to
    G's diagonal in place (callers pass a Gram matrix built for this solve)."""
    G[np.diag_indices_from(G)] += ridge
    L = torch.linalg.cholesky(torch.from_numpy(G))
    return torch.cholesky_solve(torch.from_numpy(np.ascontiguousarray(R)), L).numpy()


def predict_embedding(X: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, S) checklists -> (N, D) predicted location embeddings."""
    return X.float() @ W + b
