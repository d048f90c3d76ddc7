"""Species soundscape affinities (paper A.11): where does a species' sound "belong" in location space?

A species' affinity map is the cosine similarity between its mean AG-CLIP recording feature and
the location embeddings of a land gallery, clamped to [0, 1]. Beside its range map it shows what
the audio model has learned about the species' geography; :func:`agreement` scores the match
(Spearman correlation over the gallery, and the AUC of affinity for in-range vs out-of-range points,
both weighted by how much of the Earth each gallery point stands for: its cell area on a lat/lon grid).
A species' range overlaps where recordings are made, so a map of recording density alone, the same
for every species (:func:`recording_density`), is the baseline such an AUC must beat before it says
anything about ranges rather than sampling.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from .range_geolocation import vmf_log_density

__all__ = ["species_embeddings", "affinity_maps", "agreement", "rank_auc", "recording_density"]


def species_embeddings(feats: torch.Tensor, species: np.ndarray, n_species: int, min_count: int = 1
                       ) -> tuple[torch.Tensor, np.ndarray]:
    """(R, E) recording features + (R,) species index -> ((n_species, E) normalised means, (n_species,) counts).

    Species with fewer than ``min_count`` recordings get a zero row (and count < min_count).
    """
    species = torch.as_tensor(np.asarray(species, np.int64))
    if len(species) != len(feats):
        raise ValueError(f"{len(feats)} features but {len(species)} species labels")
    sums = torch.zeros(n_species, feats.shape[1], dtype=torch.float32).index_add_(0, species, feats.float())
    counts = torch.bincount(species, minlength=n_species).numpy()
    emb = F.normalize(sums, dim=1)
    emb[torch.as_tensor(counts < min_count)] = 0.0
    return emb, counts


def affinity_maps(species_emb: torch.Tensor, gallery_emb: torch.Tensor, chunk: int = 8192) -> np.ndarray:
    """(K, E) species embeddings x (N, E) gallery embeddings -> (K, N) cosine similarity clamped to [0, 1]."""
    q = F.normalize(species_emb.float(), dim=1)
    g = F.normalize(gallery_emb.float(), dim=1)
    return torch.cat([(q @ g[s:s + chunk].T).clamp_(0, 1) for s in range(0, len(g), chunk)], dim=1).numpy()


def _ranks(x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """(K, N) values, optional (N,) weights >= 0 -> (K, N) weighted mid-ranks along axis 1.

    A point's weighted mid-rank is the weight of the points below it plus half the weight of its tie group
    (itself included): with integer weights, the mid-rank it would get if each point were repeated ``weight``
    times, less 1/2. With no weights it is the ordinary average rank (ties share their mean rank) less 1/2;
    Spearman and Mann-Whitney only see rank differences, so the constant does not matter.
    """
    x = np.asarray(x, float)
    w = np.ones(x.shape[1]) if weights is None else np.asarray(weights, float)
    order = np.argsort(x, axis=1, kind="stable")
    xs, ws = np.take_along_axis(x, order, 1), w[order]
    cum = np.cumsum(ws, axis=1)  # weight up to and including each sorted point
    new = np.ones(xs.shape, bool)
    new[:, 1:] = xs[:, 1:] != xs[:, :-1]  # first point of a tie group
    last = np.ones(xs.shape, bool)
    last[:, :-1] = new[:, 1:]  # last point of a tie group
    below = np.maximum.accumulate(np.where(new, cum - ws, -np.inf), axis=1)  # weight below the group (cum is monotone)
    upto = np.minimum.accumulate(np.where(last, cum, np.inf)[:, ::-1], axis=1)[:, ::-1]  # weight up to its end
    ranks = np.empty_like(xs)
    np.put_along_axis(ranks, order, (below + upto) / 2, 1)
    return ranks


def _check_weights(weights: np.ndarray | None, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, float)
    if w.shape != (n,) or not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError(f"weights must be ({n},) finite and >= 0 (one per gallery point), got shape {w.shape}")
    return w


def rank_auc(score: np.ndarray, positive: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """(K, N) scores, (K, N) bool labels, optional (N,) point weights -> (K,) ROC AUC, NaN where a row has one class.

    Weighted Mann-Whitney: the weighted share of (positive, negative) pairs the score orders correctly, ties
    counting one half; equals ``sklearn.metrics.roc_auc_score(..., sample_weight=weights)``.
    """
    positive = np.asarray(positive, bool)
    w = _check_weights(weights, positive.shape[1])
    w = np.ones(positive.shape[1]) if w is None else w
    r = _ranks(score, w)
    w_pos = (positive * w).sum(1)
    w_neg = w.sum() - w_pos
    # sum of w_i * (weight ranked below i) over positives counts every positive pair half: remove it
    u = (r * positive * w).sum(1) - w_pos ** 2 / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((w_pos > 0) & (w_neg > 0), u / (w_pos * w_neg), np.nan)


def agreement(affinity: np.ndarray, ranges: np.ndarray, threshold: float = 0.1, weights: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(K, N) affinity and (K, N) range probabilities, optional (N,) point weights -> (K,) Spearman correlation,
    (K,) AUC for in-range (probability >= ``threshold``) vs out-of-range points.

    On a lat/lon grid pass the cell areas (``range_geolocation.gallery_areas``) as ``weights``: each point then
    counts for the land it stands for, not one grid point each (which over-weights high latitudes). Weighted
    Spearman is the weighted Pearson correlation of the weighted mid-ranks (:func:`_ranks`); weighted AUC is
    the weighted Mann-Whitney statistic (:func:`rank_auc`). No weights: the ordinary, equal-weight statistics.
    """
    w = _check_weights(weights, np.shape(affinity)[1])
    wn = np.full(np.shape(affinity)[1], 1.0) if w is None else w
    wn = wn / wn.sum()
    ra, rr = _ranks(affinity, w), _ranks(ranges, w)
    ra = ra - (ra * wn).sum(1, keepdims=True)
    rr = rr - (rr * wn).sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (wn * ra * rr).sum(1) / np.sqrt((wn * ra ** 2).sum(1) * (wn * rr ** 2).sum(1))
    return rho, rank_auc(affinity, np.asarray(ranges) >= threshold, w)


def recording_density(points: np.ndarray, recordings: np.ndarray, bandwidth_km: float = 200.0) -> np.ndarray:
    """(N, 2) gallery lat/lon, (M, 2) recording lat/lon (degrees) -> (N,) vMF kernel density of the recordings
    at the gallery points (``bandwidth_km``), summing to 1 over the points: where recordings are made, with no
    audio and no species in it."""
    return np.exp(vmf_log_density(np.asarray(points, float), np.asarray(recordings, float), bandwidth_km))
