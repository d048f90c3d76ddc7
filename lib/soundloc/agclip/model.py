"""AG-CLIP's model (paper section 4, A.5): the head, its location encoders and its loss.

:class:`AGCLIPHead` -- a :class:`~soundloc.heads.Head` on the audio encoder: a location decoder
(2-layer MLP, hidden 128) -> 512-d embedding trained with InfoNCE (learnable temperature) against the
batch's location embeddings, plus a checklist decoder (2-layer MLP, hidden 128) trained with BCE against
range-model checklists at the recording's location (weight 0.01). Location encoders: ``"geoclip"``
(GeoCLIP's frozen LocationEncoder; embeddings are precomputed once and travel in the targets),
``"fourier"`` (learnable MLP on multi-scale spherical Fourier features) and ``"sinr"`` (SINR's residual
FCN architecture, learnable). Works with the existing :class:`~soundloc.train.Trainer`, zoo and
checkpoints (``build_head`` kind "agclip"). Building does no I/O; GeoCLIP weights load only through
:func:`load_location_encoder`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..location_encoders import load_geoclip_encoder
from ..heads import Head, register_head
from ..sinr import SINR, _ResLayer
from .retrieval import topk_chunked

LOCATION_ENCODERS = ("geoclip", "fourier", "sinr")


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
        self.feats = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(inplace=True),
                                   *[_ResLayer(hidden, dropout) for _ in range(depth)])
        self.proj = nn.Linear(hidden, out_dim)

    def forward(self, latlon: torch.Tensor) -> torch.Tensor:
        latlon = latlon.float()
        return self.proj(self.feats(SINR.encode(latlon[:, 0], latlon[:, 1])))


def load_location_encoder(device="cpu") -> nn.Module:
    """GeoCLIP's LocationEncoder with its released weights, frozen (the explicit I/O step)."""
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
                                 "embeddings of the locations (soundloc.location_encoders.embed_locations)")
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
                               "(soundloc.location_encoders.gallery_embeddings)")
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


register_head(AGCLIPHead.kind, AGCLIPHead.from_config)
