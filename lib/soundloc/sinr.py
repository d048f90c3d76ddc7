"""SINR (Cole et al. 2023), the residual FCN species range model, for users with SINR weights
(:func:`load_sinr`; a :class:`~soundloc.range_model.RangeModel`).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .devices import resolve_device
from .range_model import RangeModel, check_latlon, week_vector


# ---------------------------------------------------------------- SINR
@dataclass(frozen=True)
class SINRConfig:
    """SINR ResidualFCNet shape: 'sin_cos' inputs (4) -> num_filts x depth residual layers -> classes."""

    num_classes: int
    num_filts: int = 256
    depth: int = 4
    num_inputs: int = 4
    dropout: float = 0.5


class _ResLayer(nn.Module):
    """SINR residual layer: x + ReLU(W2 Dropout(ReLU(W1 x)))."""

    def __init__(self, size: int, dropout: float):
        super().__init__()
        self.w1, self.w2 = nn.Linear(size, size), nn.Linear(size, size)
        self.dropout1 = nn.Dropout(dropout)

    def forward(self, x):
        """(n, size) -> (n, size)."""
        return x + torch.relu(self.w2(self.dropout1(torch.relu(self.w1(x)))))


class SINR(nn.Module, RangeModel):
    """SINR residual FCN (year-round); parameter names match elijahcole/sinr checkpoints."""

    def __init__(self, config: SINRConfig, species: Sequence[str] | None = None, name: str = "sinr"):
        """No I/O: random-initialised network (fill with :func:`load_sinr`)."""
        nn.Module.__init__(self)
        if config.num_inputs != 4:
            raise ValueError(f"only the 'sin_cos' encoding (4 inputs) is supported, got num_inputs={config.num_inputs}")
        self.config, self.name = config, name
        self.species = list(species) if species is not None else [f"class_{i}" for i in range(config.num_classes)]
        if len(self.species) != config.num_classes:
            raise ValueError(f"{len(self.species)} species names for num_classes={config.num_classes}")
        layers = [nn.Linear(config.num_inputs, config.num_filts), nn.ReLU(inplace=True)]
        layers += [_ResLayer(config.num_filts, config.dropout) for _ in range(config.depth)]
        self.feats = nn.Sequential(*layers)
        self.class_emb = nn.Linear(config.num_filts, config.num_classes, bias=False)

    @staticmethod
    def encode(lat: torch.Tensor, lon: torch.Tensor) -> torch.Tensor:
        """(n,) lat, lon degrees -> (n, 4) [sin(pi lon/180), sin(pi lat/90), cos(..), cos(..)]."""
        x = torch.stack([lon / 180.0, lat / 90.0], dim=1) * torch.pi
        return torch.cat([torch.sin(x), torch.cos(x)], dim=1)

    def forward(self, enc: torch.Tensor, species_idx: torch.Tensor | None = None) -> torch.Tensor:
        """(n, 4) encoded locations -> (n, S|K) probabilities."""
        h = self.feats(enc)
        w = self.class_emb.weight if species_idx is None else self.class_emb.weight[species_idx]
        return torch.sigmoid(h @ w.T)

    @property
    def device(self) -> torch.device:
        """Device holding the weights."""
        return self.class_emb.weight.device

    @torch.inference_mode()
    def prob(self, lat, lon, week=None, species_idx=None, chunk: int = 16384) -> np.ndarray:
        """(N,) lat/lon degrees, week ignored (year-round model), species_idx (K,)|None -> (N, S|K) float32."""
        lat, lon = check_latlon(lat, lon)
        if week is not None:
            week_vector(week, len(lat))  # validated, then ignored
        dev = self.device
        sel = None if species_idx is None else torch.as_tensor(np.asarray(species_idx, np.int64), device=dev)
        la, lo = torch.from_numpy(lat), torch.from_numpy(lon)
        parts = [self(self.encode(la[i:i + chunk].to(dev), lo[i:i + chunk].to(dev)), sel).float().cpu()
                 for i in range(0, len(lat), chunk)]
        k = len(self.species) if sel is None else len(sel)
        return torch.cat(parts).numpy() if parts else np.zeros((0, k), np.float32)


def load_sinr(checkpoint_path, species_names: Sequence[str] | None = None, device=None) -> SINR:
    """SINR checkpoint (raw state_dict or {'state_dict', 'params'}) -> eval-mode SINR on ``device``."""
    path = Path(checkpoint_path)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report the file
        raise ValueError(f"cannot read SINR checkpoint {path}: {e}") from e
    params = {}
    if isinstance(ck, dict) and "state_dict" in ck:
        sd, params = ck["state_dict"], ck.get("params") or {}
    else:
        sd = ck
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: not a SINR checkpoint (expected a state_dict or {{'state_dict', 'params'}})")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    enc = params.get("input_enc", "sin_cos")
    if enc != "sin_cos":
        raise ValueError(f"{path}: input_enc={enc!r}; only 'sin_cos' SINR models are supported")
    if "feats.0.weight" not in sd or "class_emb.weight" not in sd:
        raise ValueError(f"{path}: missing 'feats.0.weight' / 'class_emb.weight'; keys: {sorted(sd)[:8]}...")
    depth = len({k.split(".")[1] for k in sd if re.fullmatch(r"feats\.\d+\.w1\.weight", k)})
    cfg = SINRConfig(num_classes=int(params.get("num_classes", sd["class_emb.weight"].shape[0])),
                     num_filts=int(params.get("num_filts", sd["feats.0.weight"].shape[0])),
                     depth=int(params.get("depth", depth)),
                     num_inputs=int(params.get("input_dim", sd["feats.0.weight"].shape[1])))
    if species_names is None and params.get("class_to_taxa") is not None:
        species_names = [str(t) for t in params["class_to_taxa"]]
    digest = hashlib.sha1(sd["class_emb.weight"].float().numpy().tobytes()).hexdigest()[:8]
    try:
        model = SINR(cfg, species_names, name=f"sinr-{path.stem}-{digest}")
        model.load_state_dict(sd, strict=True)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"{path}: does not fit a SINR {asdict(cfg)} network: {e}") from e
    return model.eval().requires_grad_(False).to(resolve_device(device, default="cpu"))
