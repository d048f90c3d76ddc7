"""AG-CLIP's window features pooled per recording (A.6): average, max, largest k-means cluster, or a trained
:class:`TransformerPooler`."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..models import average_by_recording

__all__ = ["POOLINGS", "kmeans_largest", "TransformerPooler", "window_features", "pool_windows", "train_pooler",
           "split_features"]

POOLINGS = ("average", "max", "kmeans", "transformer")


def _padded(x: torch.Tensor, offsets: torch.Tensor, max_len: int | None = None):
    """(W, D) windows + (N+1,) offsets -> (N, L, D) zero-padded, (N, L) bool mask (True = real window)."""
    counts = (offsets[1:] - offsets[:-1]).long()
    if (counts <= 0).any():
        raise ValueError(f"recording {int(torch.nonzero(counts <= 0)[0])} has no windows")
    L = int(counts.max()) if max_len is None else max_len
    rec = torch.repeat_interleave(torch.arange(len(counts)), counts)
    pos = torch.arange(len(x)) - offsets[:-1].long()[rec]
    keep = pos < L
    out = x.new_zeros(len(counts), L, x.shape[1])
    out[rec[keep], pos[keep]] = x[keep]
    mask = torch.arange(L)[None, :] < counts.clamp(max=L)[:, None]
    return out, mask


def kmeans_largest(x: torch.Tensor, mask: torch.Tensor, k: int = 5, iters: int = 20) -> torch.Tensor:
    """Batched k-means per recording: (N, L, D) windows, (N, L) mask -> (N, D) centroid of the largest cluster.

    Lloyd's algorithm on every recording at once; centroids start at the first min(k, n) windows;
    a recording with n <= k windows puts each window in its own cluster (ties: the first). Vectorised.
    """
    N, L, D = x.shape
    kk = min(k, L)
    n = mask.sum(1)
    cent = x[:, :kk].clone()
    cvalid = torch.arange(kk)[None, :] < n[:, None]                   # (N, kk) clusters that exist
    for _ in range(iters):
        d = torch.cdist(x, cent)                                     # (N, L, kk)
        d = d.masked_fill(~cvalid[:, None, :], math.inf)
        a = d.argmin(-1)                                             # (N, L)
        oh = F.one_hot(a, kk).float() * mask[..., None].float()      # (N, L, kk)
        cnt = oh.sum(1)                                              # (N, kk)
        new = torch.einsum("nlk,nld->nkd", oh, x) / cnt.clamp_min(1)[..., None]
        new = torch.where(cnt[..., None] > 0, new, cent)
        if torch.allclose(new, cent):
            break
        cent = new
    big = cnt.masked_fill(~cvalid, -1).argmax(1)
    return cent[torch.arange(N), big]


class TransformerPooler(nn.Module):
    """A.6: a sequence of (up to ``max_len``) window location features (N x E) -> one E-d feature.

    6 transformer layers, 8 heads, hidden width 128 (the features are projected E -> 128, and the
    summary token's output back to E). A learned summary token is prepended; positions are learned.
    """

    def __init__(self, dim: int = 512, layers: int = 6, heads: int = 8, hidden: int = 128, max_len: int = 32,
                 dropout: float = 0.1):
        super().__init__()
        self.max_len = max_len
        self.inp = nn.Linear(dim, hidden)
        self.cls = nn.Parameter(torch.zeros(1, 1, hidden))
        self.pos = nn.Parameter(torch.zeros(1, max_len + 1, hidden))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(hidden, heads, hidden, dropout, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(N, L, E) window features, (N, L) True = real window -> (N, E)."""
        x, mask = x[:, :self.max_len], mask[:, :self.max_len]
        h = torch.cat([self.cls.expand(len(x), -1, -1), self.inp(x)], 1) + self.pos[:, :x.shape[1] + 1]
        pad = torch.cat([torch.zeros(len(x), 1, dtype=torch.bool, device=x.device), ~mask], 1)
        return self.out(self.enc(h, src_key_padding_mask=pad)[:, 0])


def window_features(head, emb: torch.Tensor, batch: int = 65536) -> torch.Tensor:
    """(W, D) cached audio window embeddings -> (W, E) normalised window location features."""
    head = head.eval()
    dev = head.logit_scale.device
    with torch.no_grad():
        return torch.cat([head.scores(head(emb[s:s + batch].to(dev))).cpu() for s in range(0, len(emb), batch)])


@torch.no_grad()
def pool_windows(feat: torch.Tensor, offsets: torch.Tensor, method: str = "average", k: int = 5,
                 pooler: TransformerPooler | None = None) -> torch.Tensor:
    """(W, E) window features + (N+1,) offsets -> (N, E) normalised recording features.

    ``average`` (the paper's default), ``max`` (per dimension), ``kmeans`` (centroid of the largest
    of k=5 clusters), ``transformer`` (a trained :class:`TransformerPooler`).
    """
    if method not in POOLINGS:
        raise ValueError(f"pooling {method!r}: expected one of {POOLINGS}")
    offsets = torch.as_tensor(offsets).long().cpu()
    feat = feat.float().cpu()
    if method == "average":
        rec = torch.repeat_interleave(torch.arange(len(offsets) - 1), offsets[1:] - offsets[:-1])
        return F.normalize(average_by_recording(feat, rec, len(offsets) - 1), dim=1)
    if method == "transformer":
        if pooler is None:
            raise ValueError("pooling 'transformer' needs a trained TransformerPooler (train_pooler)")
        pooler = pooler.eval()
        x, m = _padded(feat, offsets, min(pooler.max_len, int((offsets[1:] - offsets[:-1]).max())))
        dev = next(pooler.parameters()).device
        return torch.cat([F.normalize(pooler(x[i:i + 1024].to(dev), m[i:i + 1024].to(dev)), dim=1).cpu()
                          for i in range(0, len(x), 1024)])
    x, m = _padded(feat, offsets)
    if method == "max":
        return F.normalize(x.masked_fill(~m[..., None], -math.inf).amax(1), dim=1)
    out = torch.cat([kmeans_largest(x[i:i + 4096], m[i:i + 4096], k) for i in range(0, len(x), 4096)])
    return F.normalize(out, dim=1)


def train_pooler(feat: torch.Tensor, offsets: torch.Tensor, targets: torch.Tensor, epochs: int = 50,
                 lr: float = 1e-3, weight_decay: float = 1e-3, batch_size: int = 128, temperature: float = 0.07,
                 seed: int = 0, max_len: int = 32, progress: bool = True, **kw) -> TransformerPooler:
    """Train a :class:`TransformerPooler` (A.6: Adam, lr 1e-3, weight decay 1e-3) with InfoNCE.

    ``feat`` (W, E) frozen window features of the TRAINING split, ``offsets`` (N+1,), ``targets``
    (N, E) normalised location embeddings of the recordings. Sequences are cropped to ``max_len``
    windows at a random start each epoch (padded to the longest recording, at most ``max_len``).
    """
    torch.manual_seed(seed)
    pooler = TransformerPooler(feat.shape[1], max_len=max_len, **kw)
    opt = torch.optim.Adam(pooler.parameters(), lr=lr, weight_decay=weight_decay)
    offsets = torch.as_tensor(offsets).long()
    full, fmask = _padded(feat.float(), offsets)
    tgt = F.normalize(targets.float(), dim=1)
    g = torch.Generator().manual_seed(seed)
    counts = fmask.sum(1)
    L = min(max_len, full.shape[1])  # no compute on padding beyond the longest recording
    pooler.train()
    for _ in tqdm(range(epochs), desc="transformer pooler", disable=not progress, leave=False):
        start = (torch.rand(len(full), generator=g) * (counts - L).clamp_min(0).add(1)).long()
        order = torch.randperm(len(full), generator=g)
        for b in range(0, len(order), batch_size):
            ib = order[b:b + batch_size]
            if len(ib) < 2:
                continue
            cols = start[ib, None] + torch.arange(L)[None]
            valid = cols < full.shape[1]
            cols = cols.clamp(max=full.shape[1] - 1)
            x = full[ib[:, None], cols]
            m = fmask[ib[:, None], cols] & valid
            out = F.normalize(pooler(x, m), dim=1)
            logits = out @ tgt[ib].T / temperature
            y = torch.arange(len(ib))
            loss = 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return pooler.eval()



def split_features(head, emb: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Cached (window embeddings, offsets) of a split -> (R, E) recording features (windows averaged)."""
    return pool_windows(window_features(head, emb[0]), emb[1])
