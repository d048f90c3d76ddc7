"""Species soundscape affinities (paper A.11): where does a species' sound "belong" in location space?

A species' affinity map is the cosine similarity between its mean AG-CLIP recording feature and
the location embeddings of a land gallery, clamped to [0, 1]. Beside its range map it shows what
the audio model has learned about the species' geography; :func:`agreement` scores the match
(Spearman correlation over the gallery, and the AUC of affinity for in-range vs out-of-range points).
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


def _ranks(x: np.ndarray) -> np.ndarray:
    """(K, N) -> (K, N) average ranks along axis 1 (ties share their mean rank)."""
    from scipy.stats import rankdata

    return rankdata(x, axis=1)


def rank_auc(score: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """(K, N) scores, (K, N) bool labels -> (K,) ROC AUC (Mann-Whitney), NaN where a row has one class."""
    r = _ranks(score)
    n_pos = positive.sum(1)
    n_neg = positive.shape[1] - n_pos
    u = (r * positive).sum(1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def agreement(affinity: np.ndarray, ranges: np.ndarray, threshold: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(K, N) affinity and (K, N) range probabilities -> (K,) Spearman correlation, (K,) AUC for in-range
    (probability >= ``threshold``) vs out-of-range points."""
    ra, rr = _ranks(affinity), _ranks(ranges)
    ra = ra - ra.mean(1, keepdims=True)
    rr = rr - rr.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rr).sum(1) / np.sqrt((ra ** 2).sum(1) * (rr ** 2).sum(1))
    return rho, rank_auc(affinity, ranges >= threshold)


def recording_density(points: np.ndarray, recordings: np.ndarray, bandwidth_km: float = 200.0) -> np.ndarray:
    """(N, 2) gallery lat/lon, (M, 2) recording lat/lon (degrees) -> (N,) vMF kernel density of the recordings
    at the gallery points (``bandwidth_km``), summing to 1 over the points: where recordings are made, with no
    audio and no species in it."""
    return np.exp(vmf_log_density(np.asarray(points, float), np.asarray(recordings, float), bandwidth_km))
