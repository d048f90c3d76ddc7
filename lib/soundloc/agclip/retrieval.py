"""AG-CLIP retrieval and decoding: chunked top-k over a gallery, softmax posteriors, the decoders.

Similarity with a gallery's embeddings is chunked over queries AND gallery so memory stays bounded
(:func:`topk_chunked`); :func:`log_posterior` gives posterior masses per gallery point; :func:`decode`
picks the densest point (``argmax``, the paper's) or the Bayes decision for "within radius_km"
(``mass_within``); :func:`decode_log_posterior` runs any model's log posterior through the same decoder.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from ..sphere import EARTH_RADIUS_KM, to_xyz

__all__ = ["topk_chunked", "log_posterior", "DECODERS", "decode", "decode_log_posterior"]


@torch.no_grad()
def topk_chunked(queries: torch.Tensor, gallery: torch.Tensor, k: int = 1, q_chunk: int = 1024,
                 g_chunk: int = 65536, scale: float = 1.0, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q, E) x (N, E) -> top-k (Q, k) similarities (x ``scale``) and (Q, k) gallery indices.

    Chunked over queries and gallery (running top-k merge), so memory is O(q_chunk x g_chunk)
    whatever Q and N are. Queries are L2-normalised; the gallery is used as given (normalised).
    ``dtype``: compute the matmul in this dtype (e.g. torch.bfloat16 on a GPU); default float32.
    """
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"topk_chunked: queries {tuple(queries.shape)} and gallery {tuple(gallery.shape)} "
                         "must be (Q, E) and (N, E)")
    k = min(k, len(gallery))
    dt = dtype or torch.float32
    q = F.normalize(queries.float(), dim=1)
    dev = q.device
    vals, idxs = [], []
    for i in range(0, len(q), q_chunk):
        qi = q[i:i + q_chunk].to(dt)
        best_v = torch.full((len(qi), k), -math.inf, device=dev)
        best_i = torch.zeros((len(qi), k), dtype=torch.long, device=dev)
        for j in range(0, len(gallery), g_chunk):
            gj = gallery[j:j + g_chunk].to(dev, dt)
            v, ix = (qi @ gj.T).float().topk(min(k, len(gj)), dim=1)
            cv, ci = torch.cat([best_v, v], 1), torch.cat([best_i, ix + j], 1)
            best_v, sel = cv.topk(k, dim=1)
            best_i = ci.gather(1, sel)
        vals.append(best_v * scale)
        idxs.append(best_i)
    return torch.cat(vals), torch.cat(idxs)


@torch.no_grad()
def log_posterior(queries: torch.Tensor, gallery: torch.Tensor, scale: float, q_chunk: int = 512,
                  log_area: torch.Tensor | None = None) -> torch.Tensor:
    """(Q, E) queries x (N, E) gallery -> (Q, N) log posterior mass per gallery point (float32).

    ``scale`` x cosine is a log density per km^2; ``log_area`` (N,) log cell areas of a grid gallery
    (:func:`gallery_log_area`; None: equal weights) turns it into masses: log softmax(scale cos + log area).
    The output itself is Q x N; callers bound memory by passing query chunks (e.g. a split's recordings).
    """
    q = F.normalize(queries.float(), dim=1)
    g = gallery.float().to(q.device)
    la = 0.0 if log_area is None else log_area.float().to(q.device)
    return torch.cat([(scale * q[i:i + q_chunk] @ g.T + la).log_softmax(1) for i in range(0, len(q), q_chunk)])


DECODERS = ("argmax", "mass_within")


@torch.no_grad()
def decode(queries: torch.Tensor, gallery: torch.Tensor, points: np.ndarray, scale: float, decoder: str = "argmax",
           radius_km: float = 200.0, top_m: int = 1024, n_cand: int = 256, q_chunk: int = 64,
           prior: torch.Tensor | None = None, log_area: torch.Tensor | None = None) -> np.ndarray:
    """(Q, E) recording features x (N, E) gallery -> (Q,) gallery indices of the decoded locations.

    The logits (``scale`` x cosine + ``prior``) are log densities per km^2. ``argmax``: the densest
    gallery point (the paper's retrieval). ``mass_within``: among the ``n_cand`` densest points, the one
    with the most posterior mass within ``radius_km`` (masses softmax(logit + ``log_area``), summed over
    the ``top_m`` densest points) -- the Bayes decision for "within radius_km" accuracy. ``prior``:
    optional (Q, N) log density added to the logits (e.g. a fused expert). ``log_area``: (N,) log cell
    areas of a grid gallery (None: equal weights). Chunked over queries: memory O(q_chunk x N).
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder {decoder!r}: expected one of {DECODERS}")
    if decoder == "argmax" and prior is None:
        return topk_chunked(queries, gallery, k=1)[1][:, 0].cpu().numpy()
    X = torch.as_tensor(to_xyz(points[:, 0], points[:, 1]), dtype=torch.float32)
    cos_r = float(np.cos(radius_km / EARTH_RADIUS_KM))
    q = F.normalize(queries.float(), dim=1)
    g = gallery.float()
    out = np.empty(len(q), np.int64)
    for s in range(0, len(q), q_chunk):
        logit = scale * q[s:s + q_chunk] @ g.T
        if prior is not None:
            logit = logit + prior[s:s + q_chunk].to(logit)
        if decoder == "argmax":
            out[s:s + q_chunk] = logit.argmax(1).numpy()
            continue
        m = min(top_m, logit.shape[1])
        _, idx = logit.topk(m, dim=1)                                # (r, M) densest first
        lm = logit if log_area is None else logit + log_area.to(logit)
        w = lm.log_softmax(1).gather(1, idx).exp()                   # their masses
        Xm = X[idx]                                                  # (r, M, 3)
        c = min(n_cand, m)
        near = (torch.bmm(Xm[:, :c], Xm.transpose(1, 2)) >= cos_r).float()  # (r, C, M)
        mass = torch.bmm(near, w[:, :, None])[..., 0]                 # (r, C)
        out[s:s + q_chunk] = idx.gather(1, mass.argmax(1, keepdim=True))[:, 0].numpy()
    return out



def decode_log_posterior(log_post: torch.Tensor, points: np.ndarray, decoder: str = "argmax",
                         radius_km: float = 200.0) -> np.ndarray:
    """(Q, N) log posterior over gallery ``points`` -> (Q,) decoded gallery indices, by :func:`decode` itself.

    Zero query and gallery features make decode's similarity term 0, so the posterior enters as its
    ``prior`` and every model goes through one decoder implementation.
    """
    Q, N = log_post.shape
    return decode(torch.zeros(Q, 1), torch.zeros(N, 1), points, 1.0, decoder, radius_km, prior=log_post)
