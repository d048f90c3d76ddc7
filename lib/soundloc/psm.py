"""PSM-style probabilistic embeddings: audio and location as Gaussians (mean + diagonal variance).

PCME++'s closed-form sampled distance between two Gaussian embeddings,
``CSD(a, b) = ||mu_a - mu_b||^2 + sum(var_a + var_b)``, turned into InfoNCE logits
``-(scale / 2) * CSD``. With unit-norm means ``||mu_a - mu_b||^2 = 2 - 2 cos``, so as the variances go
to zero the logits are ``scale * cos`` minus a constant and the loss equals the deterministic
(AG-CLIP / CLIP) InfoNCE exactly (softmax ignores a constant shift). A variational (VIB) term keeps
variances from collapsing; it is separate so that the contrastive part can be compared.
The location side takes metadata (month as sin/cos) beside lat/lon, as PSM feeds time to its encoders.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def csd(mu_a: torch.Tensor, var_a: torch.Tensor, mu_b: torch.Tensor, var_b: torch.Tensor) -> torch.Tensor:
    """(A, E) means/variances, (B, E) means/variances -> (A, B) closed-form sampled distance (PCME++)."""
    d2 = (mu_a.pow(2).sum(1, keepdim=True) + mu_b.pow(2).sum(1)[None] - 2 * mu_a @ mu_b.T).clamp_min(0)
    return d2 + var_a.sum(1, keepdim=True) + var_b.sum(1)[None]


def info_nce(logits: torch.Tensor) -> torch.Tensor:
    """(B, B) logits with matches on the diagonal -> () symmetric InfoNCE (CLIP)."""
    y = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y))


def deterministic_loss(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """(B, E) audio and location embeddings -> () InfoNCE on scale * cosine similarity."""
    return info_nce(scale * F.normalize(a, dim=1) @ F.normalize(b, dim=1).T)


def probabilistic_loss(mu_a, var_a, mu_b, var_b, scale: float) -> torch.Tensor:
    """(B, E) means (normalised here) and variances of both sides -> () InfoNCE on -(scale / 2) * CSD."""
    return info_nce(-0.5 * scale * csd(F.normalize(mu_a, dim=1), var_a, F.normalize(mu_b, dim=1), var_b))


def vib(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """(B, E) Gaussian -> () mean KL to N(0, I) per row (PCME++'s variational information bottleneck)."""
    return 0.5 * (var + mu.pow(2) - 1 - var.log()).sum(1).mean()


def month_features(month: torch.Tensor) -> torch.Tensor:
    """(B,) month 1-12 -> (B, 2) sin/cos of the month angle (December next to January)."""
    ang = 2 * math.pi * (month.float() - 1) / 12
    return torch.stack([ang.sin(), ang.cos()], 1)


@dataclass(frozen=True)
class PSMConfig:
    in_dim: int = 64  # audio feature size (e.g. a frozen backbone's embedding)
    embed_dim: int = 32  # E: size of the mean and variance vectors
    hidden: int = 128  # MLP width of both encoders
    scale: float = 20.0  # InfoNCE logit scale (fixed: the same for the deterministic baseline)
    vib_weight: float = 1e-4  # weight of the VIB term on both sides


class GaussianHead(nn.Module):
    """x (B, in) -> (mean (B, E), variance (B, E) > 0) from one MLP trunk."""

    def __init__(self, in_dim: int, hidden: int, embed_dim: int):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.mu, self.logvar = nn.Linear(hidden, embed_dim), nn.Linear(hidden, embed_dim)
        nn.init.constant_(self.logvar.bias, -4.0)  # start near-deterministic

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.mu(h), self.logvar(h).clamp(-12, 4).exp()


class PSM(nn.Module):
    """Audio features -> Gaussian; (lat, lon, month) -> Gaussian on the location side (xyz + month sin/cos)."""

    def __init__(self, cfg: PSMConfig = PSMConfig()):
        super().__init__()
        self.cfg = cfg
        self.audio = GaussianHead(cfg.in_dim, cfg.hidden, cfg.embed_dim)
        self.location = GaussianHead(5, cfg.hidden, cfg.embed_dim)

    @staticmethod
    def place(latlon: torch.Tensor, month: torch.Tensor) -> torch.Tensor:
        """(B, 2) degrees, (B,) month -> (B, 5) unit xyz + month sin/cos."""
        la, lo = torch.deg2rad(latlon[:, 0]), torch.deg2rad(latlon[:, 1])
        xyz = torch.stack([la.cos() * lo.cos(), la.cos() * lo.sin(), la.sin()], 1)
        return torch.cat([xyz, month_features(month)], 1)

    def loss(self, x: torch.Tensor, latlon: torch.Tensor, month: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, in) audio features, (B, 2) places, (B,) months -> {"contrastive", "vib", "total"}."""
        mu_a, var_a = self.audio(x)
        mu_b, var_b = self.location(self.place(latlon, month))
        c = probabilistic_loss(mu_a, var_a, mu_b, var_b, self.cfg.scale)
        v = vib(mu_a, var_a) + vib(mu_b, var_b)
        return {"contrastive": c, "vib": v, "total": c + self.cfg.vib_weight * v}

    @torch.no_grad()
    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in) audio features -> (B,) summed audio variance (larger: less sure where it belongs)."""
        return self.audio(x)[1].sum(1)


# ---------------------------------------------------------------- training and evaluation
def pool_recordings(emb: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(W, D) window embeddings, (R + 1,) offsets -> (R, D) mean over each recording's windows."""
    idx = torch.repeat_interleave(torch.arange(len(offsets) - 1), offsets.diff())
    out = torch.zeros(len(offsets) - 1, emb.shape[1]).index_add_(0, idx, emb.float())
    return out / offsets.diff().clamp_min(1)[:, None].float()


def fit(x: torch.Tensor, latlon: torch.Tensor, month: torch.Tensor, cfg: PSMConfig, probabilistic: bool = True,
        epochs: int = 60, batch: int = 256, lr: float = 2e-3, seed: int = 0) -> tuple["PSM", list[float]]:
    """(R, in) features, (R, 2) places, (R,) months -> (trained PSM, contrastive loss per epoch).

    ``probabilistic=False`` trains the same network with the variances ignored (the deterministic
    AG-CLIP-style InfoNCE on cosine logits), the baseline beside it.
    """
    torch.manual_seed(seed)
    model = PSM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    hist = []
    for _ in range(epochs):
        perm, tot = torch.randperm(len(x), generator=g), 0.0
        for s in range(0, len(x) - batch + 1, batch):
            i = perm[s:s + batch]
            if probabilistic:
                parts = model.loss(x[i], latlon[i], month[i])
            else:
                a, b = model.audio(x[i])[0], model.location(model.place(latlon[i], month[i]))[0]
                parts = {"contrastive": deterministic_loss(a, b, cfg.scale)}
                parts["total"] = parts["contrastive"]
            opt.zero_grad()
            parts["total"].backward()
            opt.step()
            tot += parts["contrastive"].item()
        hist.append(tot / max(len(x) // batch, 1))
    return model, hist


@torch.no_grad()
def posterior(model: "PSM", x: torch.Tensor, month: torch.Tensor, points, probabilistic: bool = True) -> torch.Tensor:
    """(R, in) features, (R,) months, (N, 2) gallery -> (R, N) softmax over the gallery of the logits."""
    pts = torch.as_tensor(np.asarray(points), dtype=torch.float32)
    mu_a, var_a = model.audio(x)
    out = []
    for m in month.unique():  # the location side depends on the month: embed the gallery once per month
        sel = month == m
        mu_b, var_b = model.location(model.place(pts, torch.full((len(pts),), int(m))))
        if probabilistic:
            logits = -0.5 * model.cfg.scale * csd(F.normalize(mu_a[sel], dim=1), var_a[sel], F.normalize(mu_b, dim=1), var_b)
        else:
            logits = model.cfg.scale * F.normalize(mu_a[sel], dim=1) @ F.normalize(mu_b, dim=1).T
        out.append((sel.nonzero()[:, 0], logits.softmax(1)))
    post = torch.empty(len(x), len(pts))
    for rows, p in out:
        post[rows] = p
    return post
