"""AG-CLIP (paper section 4, A.5-A.7): contrastive audio -> location-embedding retrieval.

- :class:`AGCLIPHead` -- a :class:`~soundloc.models.Head` on the audio encoder: a location decoder
  (2-layer MLP, hidden 128) -> 512-d embedding trained with InfoNCE (learnable temperature)
  against the batch's location embeddings, plus a checklist decoder (2-layer MLP, hidden 128)
  trained with BCE against range-model checklists at the recording's location (weight 0.01).
  Location encoders: ``"geoclip"`` (GeoCLIP's frozen LocationEncoder; embeddings are precomputed
  once and travel in the targets), ``"fourier"`` (learnable MLP on multi-scale spherical Fourier
  features) and ``"sinr"`` (SINR's residual FCN architecture, learnable). Works with the
  existing :class:`~soundloc.train.Trainer`, zoo and checkpoints (``build_head`` kind "agclip").
  Building does no I/O; GeoCLIP weights load only through :func:`load_location_encoder`.
- Retrieval: window embeddings pooled per recording (:func:`pool_windows`: average, max,
  largest k-means cluster, or a trained :class:`TransformerPooler`), similarity with a gallery's
  embeddings chunked over queries AND gallery so memory stays bounded (:func:`topk_chunked`),
  top-k / argmax and softmax posteriors (:func:`log_posterior`).
- Galleries of Table A1 (:func:`build_gallery`): uniform 1 / 0.5 deg, land 1 deg, training
  locations, training neighbours (0.5 deg points inside H3 cells holding training data),
  validation locations.
- Beyond the paper: :func:`fuse` (product of experts with the species-range posterior, one
  weight chosen on validation) and :func:`credible_sets` (area of the smallest posterior sets
  holding 50 % / 90 % and their coverage).
- :func:`run_agclip` trains (or loads from the zoo) and evaluates everything chapter 03 shows.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from .geo import EARTH_RADIUS_KM, h3_cells, haversine, land_grid, uniform_grid
from .models import Head
from .train import TrainConfig

LOCATION_ENCODERS = ("geoclip", "fourier", "sinr")
POOLINGS = ("average", "max", "kmeans", "transformer")
GALLERIES = ("uniform1", "uniform0.5", "land1", "train", "train_neighbours", "val")


# --------------------------------------------------------------------------- config

@dataclass(frozen=True)
class AGCLIPConfig:
    """AG-CLIP head settings (defaults: the paper's A.5)."""

    in_dim: int = 1280                   # audio embedding size D (1280 MobileNetV3-Large, 1024 Small)
    embed_dim: int = 512                 # location-embedding size (GeoCLIP's 512)
    hidden: int = 128                    # hidden width of both decoders (2-layer MLPs)
    n_species: int = 0                   # checklist length S; 0 = no checklist decoder
    checklist_weight: float = 0.01       # weight of the checklist BCE (0 switches the loss off)
    location_encoder: str = "geoclip"    # "geoclip" (frozen) | "fourier" | "sinr" (both learnable)
    init_temperature: float = 0.07       # initial InfoNCE temperature
    learn_temperature: bool = True       # temperature is a learned parameter (log scale)
    max_logit_scale: float = 100.0       # 1 / temperature is clamped here (CLIP's rule)
    loc_hidden: int = 256                # width of the learnable location encoders
    fourier_scales: tuple[float, ...] = (1.0, 4.0, 16.0, 64.0)  # frequencies (cycles per radian) of "fourier"
    fourier_features: int = 64           # random directions per scale of "fourier"
    loss_block: int = 4096               # InfoNCE computed in blocks of this many rows (bounded memory)
    adapter: int = 0                     # width of a shared trainable Linear+ReLU between the audio embedding and
                                         # both decoders (0 = none, the paper's). On a FROZEN encoder it stands in for
                                         # the fine-tuned encoder: without it the checklist loss cannot reach the
                                         # location decoder at all
    input_dropout: float = 0.0           # dropout on the audio embedding while training

    def __post_init__(self):
        if self.location_encoder not in LOCATION_ENCODERS:
            raise ValueError(f"AGCLIPConfig.location_encoder={self.location_encoder!r}: expected one of {LOCATION_ENCODERS}")
        if self.adapter < 0 or not 0 <= self.input_dropout < 1:
            raise ValueError("AGCLIPConfig adapter must be >= 0 and input_dropout in [0, 1)")
        if self.in_dim < 1 or self.embed_dim < 1 or self.hidden < 1 or self.n_species < 0:
            raise ValueError("AGCLIPConfig in_dim, embed_dim, hidden must be >= 1 and n_species >= 0")
        if self.checklist_weight < 0 or not 0 < self.init_temperature < 10:
            raise ValueError("AGCLIPConfig checklist_weight must be >= 0 and init_temperature in (0, 10)")
        if self.location_encoder == "geoclip" and self.embed_dim != 512:
            raise ValueError("AGCLIPConfig: GeoCLIP embeddings are 512-d (embed_dim=512)")

    @property
    def uses_checklist(self) -> bool:
        return self.n_species > 0 and self.checklist_weight > 0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["fourier_scales"] = list(self.fourier_scales)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AGCLIPConfig":
        d = {k: v for k, v in d.items() if k != "kind"}
        d["fourier_scales"] = tuple(d.get("fourier_scales", cls.fourier_scales))
        return cls(**d)


class MaskDropout(nn.Module):
    """Dropout as ``nn.Dropout`` (zero with probability p, scale the rest by 1 / (1 - p)), its mask drawn from
    ``rand_like`` instead of ``bernoulli_`` (scalar on the CPU): 3.4x faster for (128, 1024). (B, D) -> (B, D)."""

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"MaskDropout: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))


def mlp(i: int, h: int, o: int) -> nn.Sequential:
    """2-layer MLP i -> h -> o (ReLU)."""
    return nn.Sequential(nn.Linear(i, h), nn.ReLU(inplace=True), nn.Linear(h, o))


# --------------------------------------------------------------------------- location encoders

def _xyz(latlon: torch.Tensor) -> torch.Tensor:
    la, lo = torch.deg2rad(latlon[:, 0]), torch.deg2rad(latlon[:, 1])
    return torch.stack([torch.cos(la) * torch.cos(lo), torch.cos(la) * torch.sin(lo), torch.sin(la)], 1)


class FourierLocationEncoder(nn.Module):
    """Learnable encoder: (B, 2) lat/lon degrees -> unit xyz -> fixed multi-scale random Fourier
    features on the sphere (sin/cos of xyz . w, |w| = scale) -> 2-layer MLP -> (B, E).

    The fixed directions come from a generator seeded 0 and live in a buffer, so a checkpoint
    round trip reproduces them exactly.
    """

    def __init__(self, out_dim: int = 512, hidden: int = 256, scales=(1.0, 4.0, 16.0, 64.0), n_feat: int = 64):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        dirs = F.normalize(torch.randn(len(scales) * n_feat, 3, generator=g), dim=1)
        sc = torch.tensor(scales, dtype=torch.float32).repeat_interleave(n_feat)[:, None]
        self.register_buffer("W", dirs * sc)  # (K, 3)
        self.net = mlp(2 * len(dirs) + 3, hidden, out_dim)

    def forward(self, latlon: torch.Tensor) -> torch.Tensor:
        x = _xyz(latlon.float())
        p = x @ self.W.T
        return self.net(torch.cat([x, torch.sin(p), torch.cos(p)], 1))


class SINRLocationEncoder(nn.Module):
    """SINR's architecture (sin/cos inputs -> Linear + ReLU -> 4 residual layers) -> Linear -> (B, E)."""

    def __init__(self, out_dim: int = 512, hidden: int = 256, depth: int = 4, dropout: float = 0.0):
        super().__init__()
        from .ranges import _ResLayer

        self.feats = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(inplace=True),
                                   *[_ResLayer(hidden, dropout) for _ in range(depth)])
        self.proj = nn.Linear(hidden, out_dim)

    def forward(self, latlon: torch.Tensor) -> torch.Tensor:
        from .ranges import SINR

        latlon = latlon.float()
        return self.proj(self.feats(SINR.encode(latlon[:, 0], latlon[:, 1])))


def load_location_encoder(device="cpu") -> nn.Module:
    """GeoCLIP's LocationEncoder with its released weights, frozen (the explicit I/O step)."""
    from .location import load_geoclip_encoder

    return load_geoclip_encoder(device)


# --------------------------------------------------------------------------- the head

class _BCEWithLogits(torch.autograd.Function):
    """Mean binary cross-entropy on logits with a closed-form gradient ``(sigmoid(x) - y) / n``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, y)
        # max(x, 0) - x y + log(1 + exp(-|x|)), the last term as -log(sigmoid(|x|)): on CPU torch's
        # log1p / softplus / log_sigmoid kernels are scalar, exp/sigmoid/log are vectorised (2-3x faster)
        return (torch.relu(x) - x * y - torch.log(torch.sigmoid(x.abs()))).mean()

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, y = ctx.saved_tensors
        return (torch.sigmoid(x) - y) * (g / x.numel()), None


def bce_with_logits(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, S) logits, (B, S) 0/1 targets -> () mean BCE; equals ``F.binary_cross_entropy_with_logits`` (tested)."""
    if x.shape != y.shape:
        raise ValueError(f"bce_with_logits: logits {tuple(x.shape)} vs targets {tuple(y.shape)}")
    return _BCEWithLogits.apply(x, y.to(x.dtype))


class AGCLIPHead(Head):
    """Audio embedding -> [location embedding (E) | checklist logits (S)] (see the module docstring).

    Targets (from :meth:`make_targets`): ``(B, 2 + E' + S')`` = lat/lon degrees, the location's
    GeoCLIP embedding (E' = E for ``"geoclip"``, else 0: learnable encoders embed lat/lon in the
    loss) and its checklist (S' = S when the checklist decoder exists). ``scores`` are
    L2-normalised location embeddings (averaged over a recording's windows); prediction is the
    most similar point of the gallery attached with :meth:`set_gallery`.
    """

    kind = "agclip"

    def __init__(self, cfg: AGCLIPConfig):
        super().__init__()
        self.cfg = cfg
        self.in_dim = cfg.in_dim
        trunk = [MaskDropout(cfg.input_dropout)] if cfg.input_dropout > 0 else []
        if cfg.adapter:
            trunk += [nn.Linear(cfg.in_dim, cfg.adapter), nn.ReLU(inplace=True)]
        self.trunk = nn.Sequential(*trunk)
        d = cfg.adapter or cfg.in_dim
        self.loc_dec = mlp(d, cfg.hidden, cfg.embed_dim)
        self.check_dec = mlp(d, cfg.hidden, cfg.n_species) if cfg.n_species > 0 else None
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)),
                                        requires_grad=cfg.learn_temperature)
        if cfg.location_encoder == "fourier":
            self.loc_enc = FourierLocationEncoder(cfg.embed_dim, cfg.loc_hidden, cfg.fourier_scales, cfg.fourier_features)
        elif cfg.location_encoder == "sinr":
            self.loc_enc = SINRLocationEncoder(cfg.embed_dim, cfg.loc_hidden)
        else:
            self.loc_enc = None  # frozen GeoCLIP: embeddings come with the targets
        self._gallery: tuple[np.ndarray, torch.Tensor] | None = None  # (points, embeddings), not persisted

    @classmethod
    def from_config(cls, cfg: dict) -> "AGCLIPHead":
        return cls(AGCLIPConfig.from_dict(cfg))

    def config(self) -> dict:
        return {"kind": self.kind, **self.cfg.to_dict()}

    @property
    def E(self) -> int:
        """Width of the location-embedding slot in the targets (E for GeoCLIP, 0 otherwise)."""
        return self.cfg.embed_dim if self.loc_enc is None else 0

    @property
    def S(self) -> int:
        return self.cfg.n_species

    @property
    def temperature(self) -> float:
        return float(1.0 / self.logit_scale.detach().exp().clamp(max=self.cfg.max_logit_scale))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) audio embeddings -> (B, E + S) location embedding and checklist logits; (B, E) when the
        checklist loss is off (checklist_weight 0: its decoder stays untrained and is not run, half a step's time)."""
        z = self.trunk(z)
        loc = self.loc_dec(z)
        return loc if not self.cfg.uses_checklist else torch.cat([loc, self.check_dec(z)], dim=1)

    # ---- targets
    def make_targets(self, latlon, loc_emb=None, checklist=None) -> torch.Tensor:
        """(N, 2) lat/lon, (N, E) GeoCLIP embeddings (``"geoclip"`` only), (N, S) 0/1 checklists -> (N, 2+E'+S')."""
        ll = torch.as_tensor(np.asarray(latlon, np.float32)).reshape(-1, 2)
        parts = [ll]
        if self.E:
            if loc_emb is None:
                raise ValueError("AGCLIPHead(location_encoder='geoclip'): give loc_emb, the (N, 512) GeoCLIP "
                                 "embeddings of the locations (soundloc.location.embed_locations)")
            e = torch.as_tensor(loc_emb, dtype=torch.float32)
            if e.shape != (len(ll), self.E):
                raise ValueError(f"loc_emb has shape {tuple(e.shape)}, expected ({len(ll)}, {self.E})")
            parts.append(e)
        if self.S:
            if checklist is None:
                raise ValueError(f"AGCLIPHead(n_species={self.S}): give checklist, (N, {self.S}) 0/1 range-model "
                                 "checklists at the locations (or build the head with n_species=0)")
            c = torch.as_tensor(checklist).float()
            if c.shape != (len(ll), self.S):
                raise ValueError(f"checklist has shape {tuple(c.shape)}, expected ({len(ll)}, {self.S})")
            parts.append(c)
        return torch.cat(parts, 1)

    def targets(self, lat=None, lon=None, species=None) -> torch.Tensor:
        """Lat/lon-only targets (learnable encoder, no checklist); otherwise use :meth:`make_targets`."""
        return self.make_targets(np.stack([np.asarray(lat, float), np.asarray(lon, float)], 1))

    def split_targets(self, t: torch.Tensor):
        """(B, 2+E'+S') -> lat/lon (B, 2), location embedding (B, E') | None, checklist (B, S') | None."""
        e0, e1 = 2, 2 + self.E
        return t[:, :2], (t[:, e0:e1] if self.E else None), (t[:, e1:e1 + self.S] if self.S else None)

    def location_embed(self, latlon: torch.Tensor) -> torch.Tensor:
        """(B, 2) lat/lon degrees -> (B, E) normalised embeddings of the learnable location encoder."""
        if self.loc_enc is None:
            raise RuntimeError("the GeoCLIP location encoder is frozen and lives outside the head "
                               "(soundloc.location.gallery_embeddings)")
        return F.normalize(self.loc_enc(latlon), dim=1)

    # ---- loss
    def loss_parts(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """-> {"contrastive", "checklist", "total"}: InfoNCE (both directions, locations shared by several
        rows count as positives) in blocks of ``cfg.loss_block`` rows, plus the weighted checklist BCE."""
        target = target.to(out.device, torch.float32)
        ll, emb, chk = self.split_targets(target)
        a = F.normalize(out[:, :self.cfg.embed_dim].float(), dim=1)
        b = F.normalize(emb, dim=1) if emb is not None else self.location_embed(ll)
        scale = self.logit_scale.exp().clamp(max=self.cfg.max_logit_scale)
        tot, n = out.new_zeros((), dtype=torch.float32), 0
        for s in range(0, len(a), self.cfg.loss_block):
            ab, bb, lb = a[s:s + self.cfg.loss_block], b[s:s + self.cfg.loss_block], ll[s:s + self.cfg.loss_block]
            logits = scale * ab @ bb.T
            pos = (lb[:, None, :] == lb[None, :, :]).all(-1)  # same location -> positive
            neg_inf = torch.finfo(logits.dtype).min
            lp_a = logits.log_softmax(1).masked_fill(~pos, neg_inf).logsumexp(1)
            lp_b = logits.T.log_softmax(1).masked_fill(~pos, neg_inf).logsumexp(1)
            tot = tot - 0.5 * (lp_a.sum() + lp_b.sum())
            n += len(ab)
        parts = {"contrastive": tot / max(n, 1)}
        if self.cfg.uses_checklist and chk is not None:
            parts["checklist"] = bce_with_logits(out[:, self.cfg.embed_dim:].float(), chk)
            parts["total"] = parts["contrastive"] + self.cfg.checklist_weight * parts["checklist"]
        else:
            parts["total"] = parts["contrastive"]
        return parts

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_parts(out, target)["total"]

    # ---- inference
    def scores(self, out: torch.Tensor) -> torch.Tensor:
        """Window outputs -> (B, E) L2-normalised location embeddings."""
        return F.normalize(out[:, :self.cfg.embed_dim].float(), dim=1)

    def set_gallery(self, points: np.ndarray, embeddings: torch.Tensor | None = None) -> "AGCLIPHead":
        """Attach a gallery: (N, 2) lat/lon + (N, E) embeddings (GeoCLIP) or None (learnable: embedded here)."""
        points = np.asarray(points, np.float64).reshape(-1, 2)
        if embeddings is None and self.loc_enc is None:
            raise ValueError("set_gallery: the GeoCLIP head needs the gallery's (N, 512) GeoCLIP embeddings")
        if embeddings is not None:
            if len(embeddings) != len(points):
                raise ValueError(f"gallery: {len(points)} points but {len(embeddings)} embeddings")
            embeddings = F.normalize(torch.as_tensor(embeddings).float(), dim=1)
        self._gallery = (points, embeddings)  # None: embedded by the (learnable) encoder at prediction time
        return self

    @torch.no_grad()
    def gallery_embeddings(self, points: np.ndarray, batch: int = 65536) -> torch.Tensor:
        """(N, 2) points -> (N, E) normalised embeddings of the head's learnable location encoder (CPU)."""
        dev = self.logit_scale.device
        pts = torch.as_tensor(np.asarray(points, np.float32))
        was = self.training
        self.eval()
        try:
            return torch.cat([self.location_embed(pts[i:i + batch].to(dev)).cpu() for i in range(0, len(pts), batch)])
        finally:
            self.train(was)

    def can_locate(self) -> bool:
        return self._gallery is not None

    def predict_from_scores(self, scores: torch.Tensor) -> torch.Tensor:
        if self._gallery is None:
            raise RuntimeError("AGCLIPHead has no gallery: call set_gallery(points, embeddings) first")
        pts, g = self._gallery
        g = self.gallery_embeddings(pts) if g is None else g
        _, idx = topk_chunked(scores, g.to(scores.device), k=1)
        return torch.as_tensor(pts[idx[:, 0].cpu().numpy()], dtype=torch.float32)


# --------------------------------------------------------------------------- retrieval

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
    from .geo import to_xyz

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


def window_features(head: AGCLIPHead, emb: torch.Tensor, batch: int = 65536) -> torch.Tensor:
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
        from .models import average_by_recording

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
    from tqdm.auto import tqdm

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


# --------------------------------------------------------------------------- galleries

def build_gallery(name: str, train_latlon: np.ndarray | None = None, val_latlon: np.ndarray | None = None,
                  h3_res: int = 2) -> np.ndarray:
    """Named gallery of Table A1 -> (N, 2) lat/lon degrees.

    ``uniform1`` / ``uniform0.5`` (cell-centred grid), ``land1`` (1 deg grid on land), ``train``
    (the distinct training locations), ``train_neighbours`` (0.5 deg grid points inside H3 cells at
    ``h3_res`` that hold training data), ``val`` (the distinct validation locations).
    """
    if name == "uniform1":
        return uniform_grid(1.0)
    if name == "uniform0.5":
        return uniform_grid(0.5)
    if name == "land1":
        return land_grid(1.0)
    if name in ("train", "train_neighbours", "val"):
        src = val_latlon if name == "val" else train_latlon
        if src is None:
            raise ValueError(f"gallery {name!r} needs the {'validation' if name == 'val' else 'training'} locations")
        src = np.asarray(src, np.float64).reshape(-1, 2)
        if name != "train_neighbours":
            return np.unique(src, axis=0)
        cells = set(h3_cells(src[:, 0], src[:, 1], h3_res))
        g = uniform_grid(0.5)
        keep = np.isin(h3_cells(g[:, 0], g[:, 1], h3_res), np.array(sorted(cells), dtype=object))
        return g[keep]
    raise ValueError(f"unknown gallery {name!r}; use one of {GALLERIES}")


SUBGRID_OF = {"land1": ("uniform1", 1.0), "train_neighbours": ("uniform0.5", 0.5)}  # gallery -> (grid it is cut from, step)
GRID_STEP = {"uniform1": 1.0, "uniform0.5": 0.5, "land1": 1.0, "train_neighbours": 0.5}  # grid galleries' steps, deg


def gallery_log_area(name: str, points: np.ndarray) -> torch.Tensor | None:
    """Named gallery, its (N, 2) points -> (N,) float32 log cell areas (log km^2), or None for equal weights.

    Grid galleries (uniform, land, train neighbours) are cells of a lat/lon grid whose area shrinks towards
    the poles, so a point's mass is its density times its cell's area. The sampled galleries (training and
    validation locations) are draws of where recordings are made, not a partition of the sphere: each point
    stands for an equal share of the data, so they keep equal weights.
    """
    from .geo import cell_areas

    if name not in GRID_STEP:
        return None
    return torch.as_tensor(np.log(cell_areas(points, GRID_STEP[name])), dtype=torch.float32)


def grid_rows(points: np.ndarray, step_deg: float) -> np.ndarray:
    """(N, 2) points of ``uniform_grid(step_deg)`` -> (N,) their rows in it; ValueError for a point off the grid."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    i = np.rint((points[:, 0] + 90 - step_deg / 2) / step_deg).astype(np.int64)
    j = np.rint((points[:, 1] + 180 - step_deg / 2) / step_deg).astype(np.int64)
    n_lat, n_lon = int(round(180 / step_deg)), int(round(360 / step_deg))
    rows = i * n_lon + j
    ok = (i >= 0) & (i < n_lat) & (j >= 0) & (j < n_lon)
    if not ok.all() or not np.array_equal(uniform_grid(step_deg)[rows], points):
        raise ValueError(f"grid_rows: some points are not on the {step_deg:g} deg cell-centred grid")
    return rows


def nearest_point(points: np.ndarray, query: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """(N, 2) gallery, (Q, 2) queries (degrees) -> (Q,) index of the nearest gallery point (chunked matmul)."""
    from .geo import to_xyz

    G = torch.as_tensor(to_xyz(points[:, 0], points[:, 1]), dtype=torch.float64)
    Q = torch.as_tensor(to_xyz(query[:, 0], query[:, 1]), dtype=torch.float64)
    return torch.cat([(Q[i:i + chunk] @ G.T).argmax(1) for i in range(0, len(Q), chunk)]).numpy()


# --------------------------------------------------------------------------- fusion and calibration

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
    :func:`soundloc.geo.credible_set`; ranking by mass would favour large cells) until the mass reaches
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


# --------------------------------------------------------------------------- the chapter's pipeline

@dataclass(frozen=True)
class AGCLIPRunConfig:
    """What chapter 03 trains and evaluates (see :meth:`small` and :meth:`paper`)."""

    head: AGCLIPConfig = AGCLIPConfig()                     # the main model (in_dim / n_species filled in)
    train: TrainConfig = TrainConfig()                      # every AG-CLIP head (A.5 by default)
    checklist_threshold: float = 0.1                        # range probability -> checklist presence (paper)
    checklist_week: bool = False                            # False: year-round checklists (as SINR's)
    gallery: str = "train"                                  # gallery of the main rows and ablations
    decoder: str = "mass_within"                            # decoder of the ablations ("argmax" = the paper's)
    radius_km: float = 200.0                                # mass_within radius (the region scale)
    galleries: tuple[str, ...] = GALLERIES                  # Table A1
    neighbour_res: int = 2                                  # H3 resolution of the train-neighbours gallery
    encoders: tuple[str, ...] = LOCATION_ENCODERS           # Table 2b
    poolings: tuple[str, ...] = POOLINGS                    # Table 2c
    checklist_seeds: tuple[int, ...] = (0, 1, 2)            # checklist on/off, seeds
    pooler_epochs: int = 50                                 # transformer pooler (A.6)
    fusion_weights: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)  # chosen on validation
    prior_weights: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)  # weight of the log location prior, chosen on validation
    prior_bandwidth_km: float = 200.0                       # vMF smoothing of the TRAINING locations (the prior)
    calibration_gallery: str = "land1"                      # a grid gallery (its cells have areas)

    def __post_init__(self):
        if self.decoder not in DECODERS:
            raise ValueError(f"AGCLIPRunConfig.decoder={self.decoder!r}: expected one of {DECODERS}")
        for g in (self.gallery, *self.galleries):
            if g not in GALLERIES:
                raise ValueError(f"AGCLIPRunConfig: unknown gallery {g!r}; use one of {GALLERIES}")
        if not self.calibration_gallery.startswith(("land", "uniform")):
            raise ValueError("AGCLIPRunConfig.calibration_gallery must be a grid gallery (land1, uniform1, ...)")

    @classmethod
    def small(cls, seed: int = 0, device: str = "auto") -> "AGCLIPRunConfig":
        """CPU: heads on frozen backbone embeddings, with a shared 256-wide adapter standing in for the
        fine-tuned encoder (AdamW, lr 1e-3, 40 epochs, input dropout 0.5: chosen on the validation split);
        bf16 autocast where the hardware runs bf16 (:func:`soundloc.devices.native_bf16`), float32 elsewhere;
        fused AdamW."""
        from .devices import native_bf16

        tc = TrainConfig(epochs=40, batch_size=128, lr=1e-3, min_lr_ratio=0.1, warmup_epochs=2, weight_decay=1e-4,
                         optimizer="adamw", freeze_encoder=True, seed=seed, device=device, eval_every=10,
                         amp="bf16" if native_bf16(device) else "off", fused=True)
        return cls(head=AGCLIPConfig(adapter=256, input_dropout=0.5), train=tc, pooler_epochs=10)

    @classmethod
    def paper(cls, seed: int = 0, device: str = "auto") -> "AGCLIPRunConfig":
        """A.5: Nesterov SGD, lr 1e-3 -> 1e-2 over 5 epochs, cosine to 1e-3, 50 epochs, batch 128, wd 1e-5."""
        return cls(train=TrainConfig(epochs=50, seed=seed, device=device, num_workers=4))


@dataclass
class AGCLIPResult:
    """Everything chapter 03 reports (errors in km, aligned with the test split's rows)."""

    main: dict[str, np.ndarray] = field(default_factory=dict)          # method -> (N,) km (Table 1 rows)
    encoders: dict[str, np.ndarray] = field(default_factory=dict)      # Table 2b
    checklist: pd.DataFrame | None = None                              # one row per seed x checklist on/off
    pooling: dict[str, np.ndarray] = field(default_factory=dict)       # Table 2c
    galleries: pd.DataFrame | None = None                              # Table A1 (gallery x decoder rows)
    fusion: dict[str, np.ndarray] = field(default_factory=dict)        # AG-CLIP / ranges / fused
    fusion_sweep: pd.DataFrame | None = None                           # weights tried on validation
    fusion_weight: float | None = None
    calibration: pd.DataFrame | None = None
    prior_sweep: pd.DataFrame | None = None                            # location-prior weights tried on validation
    prior_weight: float | None = None                                  # the one chosen there
    examples: list[dict] = field(default_factory=list)                 # posterior maps to draw
    models: dict = field(default_factory=dict)                         # name -> ZooEntry
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def models_table(self) -> pd.DataFrame:
        """One row per AG-CLIP head: trained now or loaded from the zoo, epochs, last validation metrics."""
        rows = []
        for k, e in self.models.items():
            last = e.history[-1] if e.history else {}
            rows.append({"model": k, "zoo key": e.key, "trained now": e.trained, "epochs": last.get("epoch"),
                         "val median km (argmax, train gallery)": last.get("val_median_error"),
                         "temperature": e.model.head.temperature, "seconds (this run)": e.seconds})
        return pd.DataFrame(rows)


def checklist_targets(sim, split: str, threshold: float, weekly: bool) -> torch.Tensor:
    """(N, S_all) bool checklists of BirdNET's range model at a split's recording locations."""
    from .oracles import checklists
    from .ranges import load_range_model

    weeks = sim.splits[split]["week"].to_numpy() if weekly else None
    return checklists(load_range_model("birdnet", "torch"), sim.latlon(split), weeks, threshold)


def _km(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    return haversine(pred[:, 0], pred[:, 1], true[:, 0], true[:, 1])


DECODER_NAMES = {"argmax": "argmax retrieval", "mass_within": "posterior mass within {r:g} km"}


def run_agclip(sim, backbone, emb: dict, cfg: AGCLIPRunConfig, progress: bool = True,
               species_probs: dict | None = None,
               what: Sequence[str] = ("encoders", "checklist", "pooling", "galleries", "fusion", "calibration")
               ) -> AGCLIPResult:
    """Train (or load from the zoo) AG-CLIP models starting from ``backbone``'s encoder; evaluate on test.

    With ``cfg.train.freeze_encoder`` (SMALL) the heads train on the backbone's cached window
    embeddings ``emb``: {"train"|"val"|"test": ((W, D) embeddings, (N+1,) offsets)}
    (:func:`soundloc.zoo.split_embeddings`); otherwise every model fine-tunes its own copy of
    the encoder end to end (the paper's A.5) and its splits are embedded with it once. ``species_probs``: {"val"|"test": (N, S) species
    probabilities of the backbone's classifier}, needed for the fusion with species ranges. Free
    parameters (fusion weight) are chosen on the validation split; everything is reported on test.
    """
    from .devices import resolve_device
    from .location import embed_locations, gallery_embeddings
    from .metrics import summary_row
    from .models import AudioEncoder, EncoderConfig, GeoModel
    from .devices import torch_threads
    from .zoo import train_or_load
    from .train import RecordingSet

    res = AGCLIPResult()
    t0 = time.time()
    enc_cfg = backbone.model.encoder.cfg
    enc_state = backbone.model.encoder.state_dict()
    geo = load_location_encoder()
    ll = {s: sim.latlon(s) for s in ("train", "val", "test")}
    geo_emb = {s: embed_locations(geo, ll[s]) for s in ll}
    chk_all = {s: checklist_targets(sim, s, cfg.checklist_threshold, cfg.checklist_week) for s in ll}
    cols = torch.nonzero(chk_all["train"].any(0))[:, 0]  # species present in some training checklist
    chk = {s: c[:, cols] for s, c in chk_all.items()}
    res.notes.append(f"checklists: BirdNET range model, threshold {cfg.checklist_threshold}, "
                     f"{'weekly' if cfg.checklist_week else 'year-round'}; {len(cols)} of {chk_all['train'].shape[1]} "
                     f"species present in some training checklist (the decoder's outputs); "
                     f"{float(chk['train'].float().sum(1).mean()):.0f} species per training checklist on average")
    res.seconds["targets"] = time.time() - t0
    gal_cache: dict[str, tuple[np.ndarray, torch.Tensor]] = {}

    def geoclip_gallery(name):
        if name not in gal_cache:
            pts = build_gallery(name, ll["train"], ll["val"], cfg.neighbour_res)
            parent, step = SUBGRID_OF.get(name, (None, None))
            if parent in cfg.galleries:  # rows of a grid this run embeds anyway: slice, do not embed again
                gal_cache[name] = (pts, geoclip_gallery(parent)[1][grid_rows(pts, step)])
            else:
                tag = name if name in ("uniform1", "uniform0.5", "land1") else f"sim-{name}"
                gal_cache[name] = (pts, gallery_embeddings(pts, tag, encoder=geo))
        return gal_cache[name]

    def gallery_for(head: AGCLIPHead, name: str):
        if head.loc_enc is None:
            return geoclip_gallery(name)
        pts = build_gallery(name, ll["train"], ll["val"], cfg.neighbour_res)
        return pts, head.gallery_embeddings(pts)

    def train_head(name, hcfg: AGCLIPConfig, seed: int) -> AGCLIPHead:
        def build():
            enc = AudioEncoder(EncoderConfig(**enc_cfg.identity()))
            enc.load_state_dict(enc_state)
            h = AGCLIPHead(hcfg)  # validation metrics while training: argmax over the training locations
            h.set_gallery(*(geoclip_gallery("train") if h.loc_enc is None else (build_gallery("train", ll["train"]), None)))
            return GeoModel(enc, h)

        head = AGCLIPHead(hcfg)

        def rs(split):
            t = head.make_targets(ll[split], geo_emb[split] if head.E else None, chk[split] if head.S else None)
            return RecordingSet(sim.caches[split], t, ll[split], ids=list(sim.splits[split]["audio_id"]),
                                spec_cfg=sim.spec_cfg)

        e = train_or_load(name, build, rs("train"), rs("val"), dataclasses.replace(cfg.train, seed=seed),
                          data_key=sim.key, embeddings={k: emb[k] for k in ("train", "val")} if frozen else None,
                          progress=progress)
        res.models[f"{name} (seed {seed})"] = e
        encoders[id(e.model.head)] = e.model.encoder
        return e.model.head

    def wemb(head, split):
        """(W, D) window embeddings of ``head``'s audio encoder over a split + (N+1,) offsets."""
        if frozen:
            return emb[split]
        key = (id(head), split)
        if key not in own_emb:  # fine-tuned encoder: embed the split's windows with it, once
            from .zoo import window_embeddings

            df = sim.splits[split]
            recs = RecordingSet(sim.caches[split], np.zeros(len(df)), ids=list(df["audio_id"]), spec_cfg=sim.spec_cfg)
            own_emb[key] = window_embeddings(encoders[id(head)], recs, progress=progress)
        return own_emb[key]

    def feats(head, split, pooling="average", pooler=None):
        e, off = wemb(head, split)
        return pool_windows(window_features(head, e), off, pooling, pooler=pooler)

    log_priors: dict[str, torch.Tensor] = {}

    def location_prior(gallery_name, n):
        """(n, N) log prior over a gallery: beta x vMF density of the training locations (None if beta = 0)."""
        if beta == 0:
            return None
        if gallery_name not in log_priors:
            pts = build_gallery(gallery_name, ll["train"], ll["val"], cfg.neighbour_res)
            log_priors[gallery_name] = vmf_log_prior(pts, ll["train"], cfg.prior_bandwidth_km)
        return beta * log_priors[gallery_name][None].expand(n, -1)

    def locate(head, split, gallery_name=cfg.gallery, decoder=cfg.decoder, q=None, prior=None, with_prior=True):
        pts, g = gallery_for(head, gallery_name)
        q = feats(head, split) if q is None else q
        lp = location_prior(gallery_name, len(q)) if with_prior else None
        prior = lp if prior is None else (prior if lp is None else prior + lp)
        return pts[decode(q, g, pts, 1.0 / head.temperature, decoder, cfg.radius_km, prior=prior,
                          log_area=gallery_log_area(gallery_name, pts))]

    frozen = cfg.train.freeze_encoder  # False: every head fine-tunes its own copy of the encoder (paper, GPU)
    encoders, own_emb = {}, {}
    base = dataclasses.replace(cfg.head, in_dim=backbone.model.encoder.dim, n_species=len(cols))
    seed0 = cfg.train.seed
    with torch_threads(resolve_device(cfg.train.device)):
        t0 = time.time()
        main = train_head("agclip", base, seed0)
        q_test, q_val = feats(main, "test"), feats(main, "val")
        beta = 0.0
        for dec in DECODERS:
            res.main[f"AG-CLIP ({DECODER_NAMES[dec].format(r=cfg.radius_km)})"] = _km(
                locate(main, "test", decoder=dec, q=q_test), ll["test"])
        rows = []
        for b in cfg.prior_weights:  # the location prior's weight, chosen on the validation split
            beta = b
            rows.append({"prior weight": b, **summary_row("AG-CLIP, validation", _km(locate(main, "val", q=q_val), ll["val"]))})
        res.prior_sweep = pd.DataFrame(rows).drop(columns=["method"])
        beta = float(res.prior_sweep.sort_values(["median_km", "region_%"], ascending=[True, False], kind="stable")
                     .iloc[0]["prior weight"])
        res.prior_weight = beta
        for dec in DECODERS:
            res.main[f"AG-CLIP + location prior ({DECODER_NAMES[dec].format(r=cfg.radius_km)})"] = _km(
                locate(main, "test", decoder=dec, q=q_test), ll["test"])
        res.notes.append(f"AG-CLIP learned temperature {main.temperature:.4f}; gallery of the main rows and "
                         f"ablations: {cfg.gallery}; decoder of the ablations: {cfg.decoder}; location prior "
                         f"(vMF {cfg.prior_bandwidth_km:g} km of the training locations) weight {beta:g}, chosen on "
                         f"validation from {list(cfg.prior_weights)} and used by every ablation")
        res.seconds["main model"] = time.time() - t0

        if "encoders" in what:
            t0 = time.time()
            for name in cfg.encoders:
                h = main if name == base.location_encoder else train_head(
                    f"agclip-{name}", dataclasses.replace(base, location_encoder=name), seed0)
                res.encoders[name] = _km(locate(h, "test"), ll["test"])
            res.seconds["location encoders"] = time.time() - t0

        if "checklist" in what:
            t0 = time.time()
            rows = []
            for seed in cfg.checklist_seeds:
                for on in (True, False):
                    if on and seed == seed0:
                        h = main
                    else:
                        h = train_head("agclip" if on else "agclip-nochecklist",
                                       base if on else dataclasses.replace(base, checklist_weight=0.0), seed)
                    rows.append(summary_row("AG-CLIP + checklist" if on else "AG-CLIP, no checklist",
                                            _km(locate(h, "test"), ll["test"]), seed=seed, checklist=on))
            res.checklist = pd.DataFrame(rows)
            res.seconds["checklist on/off"] = time.time() - t0

        if "pooling" in what:
            t0 = time.time()
            for p in cfg.poolings:
                pooler = None
                if p == "transformer":
                    pooler = _cached_pooler(res.models[f"agclip (seed {seed0})"], main, wemb(main, "train"), geo_emb["train"],
                                            cfg.pooler_epochs, seed0, progress)
                res.pooling[p] = _km(locate(main, "test", q=feats(main, "test", p, pooler)), ll["test"])
            res.seconds["pooling"] = time.time() - t0

        if "galleries" in what:
            t0 = time.time()
            rows = []
            for gname in cfg.galleries:
                n = len(gallery_for(main, gname)[0])
                for dec in DECODERS:
                    for wp in (False, True):
                        d = _km(locate(main, "test", gname, dec, q=q_test, with_prior=wp), ll["test"])
                        rows.append(summary_row(GALLERY_ROWS[gname], d, gallery=gname, points=n, decoder=dec,
                                                prior=f"{beta:g}" if wp else "none"))
            res.galleries = pd.DataFrame(rows)
            res.seconds["galleries"] = time.time() - t0

        if "fusion" in what and species_probs is not None:
            t0 = time.time()
            _fusion(res, main, sim, cfg, species_probs, gallery_for, feats, ll, progress,
                    location_prior(cfg.gallery, 1))
            res.seconds["fusion"] = time.time() - t0

        if "calibration" in what:
            t0 = time.time()
            _calibration(res, main, sim, cfg, gallery_for, feats, q_test, ll)
            res.seconds["calibration"] = time.time() - t0
    return res


def _cached_pooler(entry, main: AGCLIPHead, train_emb, targets, epochs: int, seed: int, progress: bool):
    """The transformer pooler of a zoo model, trained once and cached beside its checkpoint (weights_only)."""
    from .io import atomic_path

    path = entry.folder / f"pooler-e{epochs}-s{seed}.pt"
    if path.exists():
        try:
            pooler = TransformerPooler(main.cfg.embed_dim)
            pooler.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return pooler.eval()
        except (OSError, RuntimeError, KeyError):
            pass  # unreadable or another shape: train again below
    pooler = train_pooler(window_features(main, train_emb[0]), train_emb[1], targets, epochs=epochs, seed=seed,
                          temperature=main.temperature, progress=progress)
    with atomic_path(path) as tmp:
        torch.save(pooler.state_dict(), tmp)
    return pooler


GALLERY_ROWS = {"uniform1": "Uniform 1 deg", "uniform0.5": "Uniform 0.5 deg", "land1": "Land 1 deg",
                "train": "Train", "train_neighbours": "Train neighbours", "val": "Validation"}
PAPER_GALLERY = {"uniform1": "Uniform 1 deg (65K)", "uniform0.5": "Uniform 0.5 deg (260K)", "land1": "Land 1 deg (20K)",
                 "train": "Train (137K)", "train_neighbours": "Train neighbours (43K)", "val": "Validation (45K)"}


def _fusion(res: AGCLIPResult, main: AGCLIPHead, sim, cfg: AGCLIPRunConfig, species_probs: dict, gallery_for,
            feats, ll, progress, log_prior: torch.Tensor | None = None) -> None:
    """AG-CLIP x species ranges of the top-1 predicted species (product of experts); weight chosen on val.

    ``log_prior``: (1, N) location prior added to every expert's logits (None: none).
    """
    from .geolocate import RangeGeolocator, RangeLocConfig
    from .metrics import summary_row
    from .ranges import load_range_model

    pts, g = gallery_for(main, cfg.gallery)
    la = gallery_log_area(cfg.gallery, pts)
    # areas=None: the range expert's posterior over equal weights is its density up to a constant, so its log
    # adds to AG-CLIP's log density; decode() then weighs the product by the cells' areas once
    loc = RangeGeolocator(load_range_model("birdnet", "torch"), pts, RangeLocConfig(prior_weight=0.0),
                          gallery_name=f"agclip-{cfg.gallery}-{len(pts)}", log_prior=None, areas=None)
    names = np.asarray(sim.species, dtype=object)
    scale = 1.0 / main.temperature
    parts = {}
    for split in ("val", "test"):
        top1 = [[names[i]] for i in np.asarray(species_probs[split]).argmax(1)]
        r = loc.locate(top1, weeks=sim.splits[split]["week"].to_numpy(), return_posterior=True, progress=progress)
        parts[split] = (feats(main, split), torch.as_tensor(r.posterior).clamp_min(1e-30).log())

    def run(split, w, only_ranges=False):
        q, lb = parts[split]
        lp = 0.0 if log_prior is None else log_prior
        if only_ranges:  # the range expert alone: zero audio logits
            return pts[decode(q, g, pts, 0.0, cfg.decoder, cfg.radius_km, prior=lb + lp, log_area=la)]
        return pts[decode(q, g, pts, scale, cfg.decoder, cfg.radius_km, prior=w * lb + lp, log_area=la)]

    rows = [{"weight": w, **summary_row(f"fused, weight {w:g} (validation)", _km(run("val", w), ll["val"]))}
            for w in cfg.fusion_weights]
    sweep = pd.DataFrame(rows)
    best = float(sweep.sort_values(["median_km", "region_%"], ascending=[True, False], kind="stable").iloc[0]["weight"])
    res.fusion = {"AG-CLIP": _km(run("test", 0.0), ll["test"]),
                  "Ranges: predicted species top-1 (same gallery and location prior)": _km(run("test", 0, True), ll["test"]),
                  f"Fused: AG-CLIP x ranges^{best:g}": _km(run("test", best), ll["test"])}
    res.fusion_sweep, res.fusion_weight = sweep.drop(columns=["method"]), best
    res.notes.append(f"fusion weight {best:g} chosen on the validation split (lowest median) from {list(cfg.fusion_weights)}")


def _calibration(res: AGCLIPResult, main: AGCLIPHead, sim, cfg: AGCLIPRunConfig, gallery_for, feats, q_test, ll) -> None:
    """Credible-set areas / coverage on a grid gallery with the learned temperature and with one fitted on the
    validation split (highest mean log posterior of the true cell), and three example posteriors."""
    pts, g = gallery_for(main, cfg.calibration_gallery)
    la = gallery_log_area(cfg.calibration_gallery, pts)
    area = la.double().exp().numpy()
    learned = 1.0 / main.temperature
    q_val, cell_val = feats(main, "val"), nearest_point(pts, ll["val"])

    def val_loglik(scale):
        lp = torch.cat([log_posterior(q_val[s:s + 128], g, scale, log_area=la) for s in range(0, len(q_val), 128)])
        return float(lp[torch.arange(len(lp)), torch.as_tensor(cell_val)].mean())

    grid = [learned * f for f in (0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)]
    fitted = max(grid, key=val_loglik)
    cell_test = nearest_point(pts, ll["test"])
    rows = []
    for what, scale in (("learned", learned), ("fitted on validation", fitted)):
        areas, cov = [], []
        for s in range(0, len(q_test), 128):  # bounded memory: 128 posteriors at a time
            post = log_posterior(q_test[s:s + 128], g, scale, log_area=la).exp()
            a, c = credible_sets(post, area, cell_test[s:s + 128])
            areas.append(a)
            cov.append(c)
        areas, cov = np.concatenate(areas), np.concatenate(cov)
        for k, lv in enumerate(("50 %", "90 %")):
            rows.append({"temperature": f"{what} ({1 / scale:.4f})", "credible level": lv,
                         "gallery": cfg.calibration_gallery, "median area (km^2)": float(np.median(areas[:, k])),
                         "mean area (km^2)": float(areas[:, k].mean()), "coverage %": 100 * float(cov[:, k].mean())})
    res.calibration = pd.DataFrame(rows)
    res.notes.append(f"calibration: temperature fitted on the validation split {1 / fitted:.4f} (learned {1 / learned:.4f})")
    top = decode(q_test, g, pts, learned, "argmax")
    err = _km(pts[top], ll["test"])
    for i in np.argsort(err, kind="stable")[[len(err) // 10, len(err) // 2, (9 * len(err)) // 10]]:
        post = log_posterior(q_test[i:i + 1], g, learned, log_area=la).exp()[0].numpy()
        res.examples.append({"i": int(i), "audio_id": str(sim.test.audio_id.iloc[i]), "species": sim.test.species.iloc[i],
                             "true": ll["test"][i], "pred": pts[top[i]], "error_km": float(err[i]),
                             "points": pts, "prob": post, "gallery": cfg.calibration_gallery})


def hierarchical_baseline(sim, backbone, base_cfg, emb: dict, split: str = "test", progress: bool = True) -> np.ndarray:
    """(N,) km errors of chapter 01's "Classification hierarchical 0-1-2" on ``split`` (heads loaded from the zoo).

    ``base_cfg``: the :class:`soundloc.table1.BaselineConfig` chapter 01 used (same zoo keys, so
    the heads are loaded, not retrained); ``emb``: the backbone's window embeddings per split.
    """
    from .models import hierarchical_decode
    from .table1 import train_geo_models
    from .zoo import head_scores

    geo = train_geo_models(sim, backbone, base_cfg, progress, {k: emb[k] for k in ("train", "val")})
    scores = [head_scores(geo[f"res{r}"].model.head, *emb[split]) for r in (0, 1, 2)]
    classes = [geo[f"res{r}"].model.head.classes for r in (0, 1, 2)]
    idx = hierarchical_decode(scores, classes=classes, mode="sum")
    return _km(classes[2].decode(idx.cpu().numpy()), sim.latlon(split))


def hierarchical_gallery_log_posterior(sim, backbone, base_cfg, emb: dict, points: np.ndarray,
                                       split: str = "test", progress: bool = True) -> torch.Tensor:
    """Chapter 01's hierarchical classifier as a (R, N) log posterior over AG-CLIP's gallery points.

    Each point gets its res-2 class's probability shared equally among the gallery points of that
    class (points in no class get eps), so AG-CLIP and the classifier can be decoded the same way
    (``decode_log_posterior``) with the same location prior over the same gallery.
    """
    from .models import hierarchical_log_posterior
    from .table1 import train_geo_models
    from .zoo import head_scores

    geo = train_geo_models(sim, backbone, base_cfg, progress, {k: emb[k] for k in ("train", "val")})
    scores = [head_scores(geo[f"res{r}"].model.head, *emb[split]) for r in (0, 1, 2)]
    classes = [geo[f"res{r}"].model.head.classes for r in (0, 1, 2)]
    lp = hierarchical_log_posterior(scores, classes)                      # (R, C)
    cls = classes[2].encode(points[:, 0], points[:, 1])                   # (N,) class of each point, -1 none
    count = np.bincount(cls[cls >= 0], minlength=len(classes[2]))
    share = torch.as_tensor(-np.log(np.maximum(count, 1)), dtype=torch.float32)
    out = torch.full((len(lp), len(points)), float(np.log(1e-12)))
    inside = torch.as_tensor(np.flatnonzero(cls >= 0))
    c = torch.as_tensor(cls[cls >= 0])
    out[:, inside] = lp[:, c] + share[c]
    return out.log_softmax(1)


def decode_log_posterior(log_post: torch.Tensor, points: np.ndarray, decoder: str = "argmax",
                         radius_km: float = 200.0) -> np.ndarray:
    """(Q, N) log posterior over gallery ``points`` -> (Q,) decoded gallery indices, by :func:`decode` itself.

    Zero query and gallery features make decode's similarity term 0, so the posterior enters as its
    ``prior`` and every model goes through one decoder implementation.
    """
    Q, N = log_post.shape
    return decode(torch.zeros(Q, 1), torch.zeros(N, 1), points, 1.0, decoder, radius_km, prior=log_post)


def main_entry(res: AGCLIPResult):
    """The main AG-CLIP model's zoo entry of a :func:`run_agclip` result (first seed of "agclip")."""
    return res.models[next(k for k in res.models if k.startswith("agclip (seed "))]


def split_recording_features(res: AGCLIPResult, sim, split: str) -> torch.Tensor:
    """(R, E) main-model recording features of a SimSounds split (its encoder's window embeddings, cached)."""
    from .zoo import split_embeddings

    entry = main_entry(res)
    return split_features(entry.model.head, split_embeddings(entry, sim, split, progress=False))


def split_features(head: AGCLIPHead, emb: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Cached (window embeddings, offsets) of a split -> (R, E) recording features (windows averaged)."""
    return pool_windows(window_features(head, emb[0]), emb[1])


def gallery_posterior(head: AGCLIPHead, feats: torch.Tensor, points: np.ndarray, prior_weight: float = 0.0,
                      prior_points: np.ndarray | None = None, bandwidth_km: float = 200.0) -> torch.Tensor:
    """(R, E) features over a small gallery (N, 2) -> (R, N) posterior softmax(cos / T + beta log prior).

    The prior is a vMF density (``bandwidth_km``) of ``prior_points`` (e.g. the training locations). The
    points carry equal weights: meant for sampled galleries (training or chorus locations), which stand for
    equal shares of where recordings are made; a lat/lon grid needs its cell areas (:func:`log_posterior`).
    """
    from .location import embed_locations

    g = head.gallery_embeddings(points) if head.loc_enc is not None else embed_locations(load_location_encoder(), points)
    logits = (F.normalize(feats.float(), dim=1) @ F.normalize(g.float(), dim=1).T) / head.temperature
    if prior_weight > 0:
        if prior_points is None:
            raise ValueError("gallery_posterior: prior_weight > 0 needs prior_points")
        logits += prior_weight * vmf_log_prior(points, prior_points, bandwidth_km)
    return torch.softmax(logits, dim=1)


def vmf_log_prior(points: np.ndarray, prior_points: np.ndarray, bandwidth_km: float) -> torch.Tensor:
    """Gallery (N, 2) lat/lon deg, prior points (M, 2) -> (N,) float32 log vMF density (``bandwidth_km``) of the prior points."""
    from .geolocate import vmf_log_density

    return torch.as_tensor(vmf_log_density(points, prior_points, bandwidth_km), dtype=torch.float32)


# --------------------------------------------------------------------------- `soundloc locate --method agclip|fused`

def recording_features(model, paths: Sequence[str], device="cpu") -> torch.Tensor:
    """Audio files -> (R, E) normalised AG-CLIP recording features (window features averaged)."""
    from . import spectrogram as spec
    from .audio import load_audio

    dev = torch.device(device)
    model = model.to(dev).eval()
    cfg = spec.SpecConfig()
    out = []
    with torch.no_grad():
        for p in paths:
            win = spec.eval_windows(spec.compute_spectrogram(load_audio(p, sr=cfg.sr), cfg, dev), cfg)
            x = spec.to_model_input(win, size=model.encoder.cfg.input_size, cfg=cfg, device=dev)
            f = model.head.scores(model.head(model.encoder(x)))
            out.append(F.normalize(f.mean(0, keepdim=True), dim=1).cpu())
    return torch.cat(out)


def _load_agclip(path: str):
    from .models import load_model

    model = load_model(path)
    if not isinstance(model.head, AGCLIPHead) or not model.head.E:
        raise ValueError(f"{path}: not an AG-CLIP checkpoint with a location decoder (head {type(model.head).__name__})")
    return model


def agclip_logits(paths, opts) -> tuple[np.ndarray, torch.Tensor]:
    """Audio files -> gallery points (N, 2) and (R, N) AG-CLIP logits (scale x cosine, no prior)."""
    from .geolocate import gallery
    from .location import gallery_embeddings

    model = _load_agclip(opts.model)
    head = model.head
    pts = gallery(opts.gallery)
    g = (gallery_embeddings(pts, opts.gallery, encoder=load_location_encoder()) if head.loc_enc is None
         else head.gallery_embeddings(pts))
    q = recording_features(model, paths, opts.device)
    return pts, (q @ F.normalize(g.float(), dim=1).T) / head.temperature


def _outputs(pts: np.ndarray, logits: torch.Tensor, notes: list[str], areas: np.ndarray | None = None):
    """(N, 2) gallery, (R, N) log densities, (N,) cell areas km^2 | None -> R MethodOutputs: the posterior
    mass of every point (softmax(logit + log area)) and the densest point."""
    from .locate import MethodOutput

    la = 0.0 if areas is None else torch.as_tensor(np.log(areas), dtype=torch.float64)[None]
    post = torch.softmax(logits.double() + la, dim=1).numpy()
    best = logits.argmax(1).numpy()
    return [MethodOutput(pts, post[r], float(pts[best[r], 0]), float(pts[best[r], 1]), None, list(notes), areas)
            for r in range(len(post))]


def _locate_agclip(paths, weeks, opts):
    """AG-CLIP retrieval over the gallery x a GeoCLIP photo-density location prior (weight opts.prior_weight)."""
    from .geolocate import gallery_areas, location_prior

    pts, logits = agclip_logits(paths, opts)
    if opts.prior_weight > 0:
        logits = logits + opts.prior_weight * torch.as_tensor(location_prior(pts, 200.0, cache_key=opts.gallery),
                                                              dtype=logits.dtype)[None]
    return _outputs(pts, logits, [f"AG-CLIP model {opts.model}; location prior weight {opts.prior_weight:g}"],
                    gallery_areas(pts, opts.gallery))


def _locate_fused(paths, weeks, opts):
    """Product of experts: AG-CLIP posterior x (BirdNET detections -> species-range posterior)^w."""
    from .geolocate import gallery_areas
    from .locate import get_method

    pts, logits = agclip_logits(paths, opts)
    ranges = get_method("ranges")(paths, weeks, opts)
    if ranges and not np.array_equal(ranges[0].points, pts):
        raise ValueError("fused: the AG-CLIP and range posteriors are on different galleries")
    areas = gallery_areas(pts, opts.gallery)
    lr = np.log(np.maximum(np.stack([r.posterior for r in ranges]), 1e-30))  # log masses of the range posterior
    lr = torch.as_tensor(lr if areas is None else lr - np.log(areas), dtype=logits.dtype)  # -> log densities
    outs = _outputs(pts, logits + opts.fusion_weight * lr,
                    [f"AG-CLIP model {opts.model} x species ranges^{opts.fusion_weight:g}"], areas)
    for o, r in zip(outs, ranges):
        o.species, o.notes = r.species, o.notes + r.notes
    return outs


def _register_locate_methods() -> None:
    from .locate import register_method

    register_method("agclip", _locate_agclip, "AG-CLIP retrieval (needs --model) x GeoCLIP photo-density prior")
    register_method("fused", _locate_fused, "AG-CLIP (needs --model) x BirdNET detections -> species ranges")


_register_locate_methods()
