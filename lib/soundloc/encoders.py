"""Audio encoders (paper A.3): :class:`AudioEncoder`, a torchvision MobileNetV3 (Small or Large, ``weights=None``:
never any network) mapping ``(B, 3, S, S)`` window images to one embedding per window: the pooled features after
the first classifier ``Linear + Hardswish`` (D = 1024 Small, 1280 Large; the paper's 1280-d features).
Pretrained weights load only through :func:`load_encoder_weights`; a checkpoint that does not fit raises
:class:`CheckpointMismatch` naming the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

CHECKPOINT_FORMAT = "soundloc-checkpoint"  # what save_model writes (soundloc.models)
CHECKPOINT_VERSION = 1
ARCHS = {"mobilenet_v3_small": 1024, "mobilenet_v3_large": 1280}  # arch -> embedding size D


class CheckpointMismatch(ValueError):
    """A checkpoint does not fit the model it is loaded into (the message names file and fields)."""


# --------------------------------------------------------------------------- encoder

@dataclass(frozen=True)
class EncoderConfig:
    """Audio encoder settings (defaults: the paper's MobileNetV3-Large at 224 x 224)."""

    arch: str = "mobilenet_v3_large"     # "mobilenet_v3_small" (SMALL mode) | "mobilenet_v3_large" (paper)
    input_size: int = 224                # side S of the (B, 3, S, S) window images (112 in SMALL mode)
    pretrained_path: str | None = None   # weights file for load_pretrained(); never read at construction
    dropout: float = 0.2                 # dropout on the embedding during training (torchvision's 0.2)

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"EncoderConfig.arch={self.arch!r}: expected one of {sorted(ARCHS)}")
        if self.input_size < 32:
            raise ValueError(f"EncoderConfig.input_size={self.input_size}: need >= 32 pixels")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"EncoderConfig.dropout={self.dropout}: need 0 <= dropout < 1")

    @property
    def dim(self) -> int:
        """Embedding size D."""
        return ARCHS[self.arch]

    def identity(self) -> dict:
        """The fields that define the weights' shapes/meaning (pretrained_path excluded)."""
        return {"arch": self.arch, "input_size": self.input_size, "dropout": self.dropout}


class AudioEncoder(nn.Module):
    """torchvision MobileNetV3 without its last Linear: (B, 3, S, S) -> (B, D) window embeddings.

    Submodule names match torchvision's (``features``, ``classifier.0``), so torchvision-style
    state dicts load directly (their ``classifier.3`` -- the ImageNet/species classifier -- is
    ignored). No weights are read here: see :func:`load_encoder_weights` / :func:`load_pretrained`.
    """

    def __init__(self, cfg: EncoderConfig = EncoderConfig()):
        super().__init__()
        import torchvision

        self.cfg = cfg
        net = getattr(torchvision.models, cfg.arch)(weights=None)
        self.features = net.features
        self.avgpool = net.avgpool
        lin = net.classifier[0]
        self.classifier = nn.Sequential(lin, nn.Hardswish(), nn.Dropout(p=cfg.dropout))
        self.dim = lin.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x)).flatten(1)
        return self.classifier(x)


def _unwrap_state_dict(obj, path) -> dict:
    """A loaded checkpoint object -> plain state dict (ours, torchvision-style, or wrapped)."""
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        obj = obj["model"]
    elif isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "net"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointMismatch(f"{path}: not a state dict of tensors (keys {list(obj)[:5] if isinstance(obj, dict) else type(obj)})")
    return obj


def _strip(sd: dict, prefix: str) -> dict:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}


@dataclass
class LoadReport:
    """What :func:`load_encoder_weights` did: keys loaded, missing, unexpected and skipped for shape."""

    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    skipped_shape: list[str]

    def __str__(self) -> str:
        return (f"loaded {len(self.loaded)} tensors; missing {len(self.missing)} {self.missing[:4]}; "
                f"unexpected {len(self.unexpected)} {self.unexpected[:4]}; shape-skipped "
                f"{len(self.skipped_shape)} {self.skipped_shape[:4]}")


def load_encoder_weights(encoder: AudioEncoder, path: str | os.PathLike, map_location="cpu",
                         strict: bool = False) -> LoadReport:
    """Load encoder weights from ``path`` (torchvision-style, DDP ``module.``-prefixed, or our own).

    Accepts a plain state dict, ``{"state_dict": ...}``-style wrappers, and our GeoModel/encoder
    checkpoints (``encoder.`` prefix stripped). Keys not used by the encoder -- e.g. the final
    classifier ``classifier.3`` of a species model -- are reported as unexpected; tensors whose
    shape differs are skipped and reported. ``strict=True`` raises when any encoder key is missing.
    """
    obj = torch.load(path, map_location=map_location, weights_only=True)
    sd = _strip(_unwrap_state_dict(obj, path), "module.")
    if any(k.startswith("encoder.") for k in sd):
        sd = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
    own = encoder.state_dict()
    use, skipped = {}, []
    for k, v in sd.items():
        if k in own:
            if own[k].shape == v.shape:
                use[k] = v
            else:
                skipped.append(f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}")
    missing = [k for k in own if k not in use]
    unexpected = [k for k in sd if k not in own]
    if strict and missing:
        raise CheckpointMismatch(f"{path}: encoder keys missing or mismatched: {missing[:8]} "
                                 f"({len(missing)} in all; shape-skipped: {skipped[:4]})")
    if not use:
        raise CheckpointMismatch(f"{path}: no tensor fits the {encoder.cfg.arch} encoder "
                                 f"(unexpected keys e.g. {unexpected[:4]}, shape-skipped {skipped[:4]})")
    encoder.load_state_dict(use, strict=False)
    return LoadReport(sorted(use), missing, unexpected, skipped)


def load_pretrained(encoder: AudioEncoder, map_location="cpu") -> LoadReport | None:
    """Load ``encoder.cfg.pretrained_path`` when set (the explicit step a constructor never does)."""
    if encoder.cfg.pretrained_path is None:
        return None
    return load_encoder_weights(encoder, encoder.cfg.pretrained_path, map_location=map_location)


@torch.no_grad()
def recalibrate_batchnorm(module: nn.Module, batches) -> int:
    """Recompute every BatchNorm's running mean/var as the plain average over ``batches`` of inputs.

    Weights are untouched. Use it before freezing a randomly initialised (or domain-shifted)
    encoder: torchvision's MobileNetV3 BatchNorms (momentum 0.01) otherwise keep their init
    statistics (mean 0, var 1), which makes a random encoder's eval-mode embeddings ~1e-10.
    Returns the number of inputs seen.
    """
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum) for m in bns]
    was = module.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    module.train()
    n = 0
    try:
        for x in batches:
            if len(x) < 2:
                continue
            module(x)
            n += len(x)
    finally:
        for m, mom in saved:
            m.momentum = mom
        module.train(was)
    return n
