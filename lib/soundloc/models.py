"""GeoModel (encoder + head), its checkpoints and recording-level inference (paper section 4, A.5).

- :class:`GeoModel` = :class:`~soundloc.encoders.AudioEncoder` + a :mod:`soundloc.heads` head;
  :func:`recording_predict` averages window outputs per recording (probabilities for classifiers, unit
  vectors for regression), vectorised.
- Checkpoints (:func:`save_model`, :func:`load_model_weights`, :func:`load_model`) store the model's
  config dict and load with ``torch.load(..., weights_only=True)``; a checkpoint made for another
  config raises :class:`~soundloc.encoders.CheckpointMismatch` naming the file and the differing fields.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import spectrogram as spec
from .encoders import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, AudioEncoder, CheckpointMismatch, EncoderConfig, _strip
from .heads import Head, build_head
from .io import atomic_path


# --------------------------------------------------------------------------- model

class GeoModel(nn.Module):
    """Encoder + head: ``forward(x)`` -> head outputs, ``embed(x)`` -> (B, D) embeddings."""

    def __init__(self, encoder: AudioEncoder, head: Head):
        super().__init__()
        if getattr(head, "in_dim", encoder.dim) != encoder.dim:
            raise ValueError(f"head in_dim={head.in_dim} but the {encoder.cfg.arch} encoder gives D={encoder.dim}")
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def config(self) -> dict:
        """Plain-data description stored in checkpoints and compared when loading."""
        return {"encoder": self.encoder.cfg.identity(), "head": self.head.config()}

    @classmethod
    def from_config(cls, cfg: dict) -> "GeoModel":
        """Rebuild an (untrained) model from :meth:`config`; no I/O."""
        return cls(AudioEncoder(EncoderConfig(**cfg["encoder"])), build_head(cfg["head"]))


def config_diff(a, b, prefix: str = "") -> list[str]:
    """Human-readable differences between two nested config dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            p = f"{prefix}.{k}" if prefix else str(k)
            if k not in a or k not in b:
                out.append(f"{p}: {'absent' if k not in a else _short(a[k])} vs {'absent' if k not in b else _short(b[k])}")
            else:
                out += config_diff(a[k], b[k], p)
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b):
        return []
    return [] if a == b else [f"{prefix}: {_short(a)} vs {_short(b)}"]


def _short(v) -> str:
    s = repr(v)
    if isinstance(v, (list, tuple)) and len(s) > 60:
        return f"<{type(v).__name__} of {len(v)}>"
    return s if len(s) <= 60 else s[:57] + "..."


def save_model(model: GeoModel, path: str | os.PathLike, extra: dict | None = None, state: dict | None = None) -> Path:
    """Write ``{format, version, config, model state, **extra}`` atomically (loads with weights_only=True).

    ``state``: the tensors to store instead of the whole ``model.state_dict()`` (the trainer's head-only
    checkpoints of a frozen encoder)."""
    model = getattr(model, "module", model)
    ckpt = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": model.config(),
            "model": model.state_dict() if state is None else state, **(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load one of our checkpoints with ``weights_only=True``; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, corrupt, or holding non-tensor objects
        raise CheckpointMismatch(f"{path}: cannot be read as a weights-only checkpoint ({e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatch(f"{path}: not a soundloc checkpoint (use load_encoder_weights for "
                                 f"torchvision-style weights)")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointMismatch(f"{path}: checkpoint version {ckpt.get('version')}, expected {CHECKPOINT_VERSION}")
    return ckpt


def check_config(path, stored: dict, expected: dict, what: str = "model") -> None:
    """Raise CheckpointMismatch naming ``path`` and each differing field when configs differ."""
    diff = config_diff(stored, expected)
    if diff:
        raise CheckpointMismatch(f"{path}: checkpoint was made for another {what} config "
                                 f"(checkpoint vs this {what}): " + "; ".join(diff[:8])
                                 + (f"; ... {len(diff) - 8} more" if len(diff) > 8 else ""))


def load_model_weights(model: GeoModel, path: str | os.PathLike, map_location="cpu") -> dict:
    """Load our checkpoint into ``model`` after checking its stored config -> the checkpoint dict."""
    model = getattr(model, "module", model)
    ckpt = read_checkpoint(path, map_location)
    check_config(path, ckpt["config"], model.config())
    model.load_state_dict(_full_state(path, ckpt))
    return ckpt


def load_model(path: str | os.PathLike, map_location="cpu") -> GeoModel:
    """Rebuild a GeoModel from a checkpoint's stored config and load its weights (eval mode)."""
    ckpt = read_checkpoint(path, map_location)
    model = GeoModel.from_config(ckpt["config"])
    model.load_state_dict(_full_state(path, ckpt))
    return model.eval()


def _full_state(path, ckpt: dict) -> dict:
    """The checkpoint's complete state dict; a clear error for a frozen-encoder run's head-only last.pt."""
    if "encoder_sha1" in (ckpt.get("train") or {}):
        raise CheckpointMismatch(f"{path}: a head-only training checkpoint of a frozen-encoder run (it resumes "
                                 "that run); load best.pt or the final model for the complete weights")
    return _strip(ckpt["model"], "module.")


# --------------------------------------------------------------------------- recording-level inference

def average_by_recording(scores: torch.Tensor, rec_index: torch.Tensor, n_recordings: int) -> torch.Tensor:
    """(W, K) window scores, (W,) recording index -> (N, K) mean per recording (index_add, vectorised)."""
    rec_index = rec_index.to(scores.device, torch.long)
    s = torch.zeros(n_recordings, scores.shape[-1], dtype=torch.float64, device=scores.device)
    s.index_add_(0, rec_index, scores.double())
    n = torch.bincount(rec_index, minlength=n_recordings).clamp_min(1).to(s)
    return (s / n[:, None]).float()


@dataclass
class RecordingPredictions:
    """Output of :func:`recording_predict`."""

    latlon: np.ndarray      # (N, 2) predicted lat/lon degrees per recording
    scores: torch.Tensor    # (N, K) window-averaged scores (probabilities / unit vectors), on the CPU
    n_windows: np.ndarray   # (N,) windows per recording


@torch.no_grad()
def recording_predict(model: GeoModel, windows_batches, size: int | None = None, spec_cfg=None,
                      device=None, batch_size: int = 256, autocast_dtype=None) -> RecordingPredictions:
    """Recording-level predictions: average window scores per recording, then decode.

    ``windows_batches``: a sequence of per-recording ``(W_i, 128, 512)`` uint8 window stacks (e.g.
    :func:`soundloc.spectrogram.eval_windows` of each image). All windows are concatenated and
    run in batches of ``batch_size`` (so recordings share batches), then averaged per recording
    with one ``index_add``. Regression heads average unit vectors; classifiers probabilities.
    """
    net = getattr(model, "module", model)
    spec_cfg = spec.DEFAULT if spec_cfg is None else spec_cfg
    size = net.encoder.cfg.input_size if size is None else size
    device = next(net.parameters()).device if device is None else torch.device(device)
    stacks = [np.asarray(w) for w in windows_batches]
    counts = np.array([len(w) for w in stacks], dtype=np.int64)
    if (counts == 0).any():
        raise ValueError(f"recording {int(np.argmin(counts))} has no windows")
    allw = np.concatenate(stacks, axis=0) if stacks else np.zeros((0, 128, spec_cfg.window_frames), np.uint8)
    rec = torch.repeat_interleave(torch.arange(len(stacks)), torch.as_tensor(counts))
    was_training = net.training
    net.eval()
    try:
        out = []
        for s in range(0, len(allw), batch_size):
            x = spec.to_model_input(allw[s:s + batch_size], size=size, cfg=spec_cfg, device=device)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                o = net(x)
            out.append(net.head.scores(o.float()))
        scores = average_by_recording(torch.cat(out), rec.to(device), len(stacks))
        latlon = net.head.predict_from_scores(scores)
    finally:
        net.train(was_training)
    return RecordingPredictions(latlon.cpu().numpy().astype(float), scores.cpu(), counts)
