"""The trained-model zoo: train a model once, cache it, load it when asked again; window-embedding caches.

- :func:`train_or_load` trains a model once and saves it under ``paths.cache_dir("models", "<name>-<key>")``,
  the key hashing everything that determines the weights (model config and initial weights -- so a backbone
  it starts from is part of it --, training config, training/validation ids and targets, the data key). A
  rerun, or a later chapter asking for the same model, loads it (``torch.load(weights_only=True)``); a
  changed config gives another key and trains anew; an unreadable checkpoint raises :class:`ZooError`
  naming the file. Training is resumable (the trainer's ``last.pt``) until the final ``model.pt`` is
  written atomically.
- Window embeddings of a frozen encoder, computed once per (encoder, split) and cached beside the
  encoder's checkpoint (:func:`split_embeddings`); heads trained on them with the trainer's
  ``freeze_encoder`` fast path without recomputing them (:func:`train_or_load` ``embeddings=``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import paths
from . import spectrogram as spec
from .devices import resolve_device, torch_threads
from .encoders import AudioEncoder, CheckpointMismatch
from .io import cached, digest
from .models import GeoModel, average_by_recording, check_config, read_checkpoint, recording_predict, save_model
from .recording_sets import RecordingSet
from .train import Trainer, TrainConfig

__all__ = ["ZooError", "ZooEntry", "zoo_key", "train_or_load", "window_embeddings", "split_embeddings",
           "head_scores", "recording_scores"]

ZOO_VERSION = 1


# --------------------------------------------------------------------------- the model zoo

class ZooError(CheckpointMismatch):
    """A cached model cannot be used (unreadable, or made for another key); the message names the file."""


@dataclass
class ZooEntry:
    """A trained (or loaded) model of the zoo."""

    name: str
    key: str
    path: Path              # the model.pt checkpoint
    model: GeoModel         # in eval mode, on the training config's device
    history: list[dict]     # the trainer's per-epoch metrics
    trained: bool           # True when this call trained it, False when it was loaded
    seconds: float = 0.0    # training (or loading) time of this call

    @property
    def folder(self) -> Path:
        return self.path.parent


def _setdigest(recs: RecordingSet | None) -> str | None:
    if recs is None:
        return None
    h = hashlib.sha1(json.dumps([recs.name(i) for i in range(len(recs))]).encode())
    h.update(np.ascontiguousarray(recs.targets.numpy()).tobytes())
    return h.hexdigest()[:12]


def _statedigest(model: torch.nn.Module) -> str:
    h = hashlib.sha1()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def zoo_key(name: str, model: GeoModel, train_cfg: TrainConfig, train_set: RecordingSet,
            val_set: RecordingSet | None, data_key: str = "") -> tuple[str, dict]:
    """-> (key, the fields it hashes): name, model config, initial weights (and BatchNorm momenta),
    training config (without its runtime fields: device, checkpoint folder, progress...), data."""
    bn = sorted({float(m.momentum) if m.momentum is not None else -1.0 for m in model.modules()
                 if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)})  # not in config() or the weights
    fields = {"zoo": ZOO_VERSION, "name": name, "model": model.config(), "init": _statedigest(model),
              "bn_momentum": bn, "train": train_cfg.identity(), "train_set": _setdigest(train_set),
              "val_set": _setdigest(val_set), "data": data_key}
    return digest(fields), fields


class _EmbeddedTrainer(Trainer):
    """The trainer's freeze_encoder fast path, fed with window embeddings computed beforehand."""

    def __init__(self, *a, embeddings: dict, **kw):
        super().__init__(*a, **kw)
        self._given = embeddings

    def _cache_embeddings(self):
        self._emb = {k: (e.to(self.device), torch.as_tensor(o).to(self.device)) for k, (e, o) in self._given.items()}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def _load_entry(name: str, key: str, path: Path, model: GeoModel, device) -> dict:
    try:
        ckpt = read_checkpoint(path)
    except (CheckpointMismatch, OSError) as e:
        raise ZooError(f"{path}: cached model {name!r} is unreadable or corrupt ({e}); delete {path.parent} "
                       "or call train_or_load(..., retrain=True) to train it again") from e
    zoo = ckpt.get("zoo", {})
    if zoo.get("key") != key:
        raise ZooError(f"{path}: holds model {zoo.get('name')!r} with key {zoo.get('key')!r}, expected {name!r} "
                       f"with key {key!r}; delete {path.parent} or retrain")
    check_config(path, ckpt["config"], model.config())
    model.load_state_dict(ckpt["model"])
    return zoo


def train_or_load(name: str, build_fn: Callable[[], GeoModel], train_set: RecordingSet,
                  val_set: RecordingSet | None, train_cfg: TrainConfig, *, data_key: str = "",
                  embeddings: dict | None = None, retrain: bool = False, root=None,
                  progress: bool = True) -> ZooEntry:
    """Train ``build_fn()`` once and cache it, or load it when the same model was trained before.

    ``build_fn`` is called after ``torch.manual_seed(train_cfg.seed)``, so a model's initial
    weights are a function of the seed (and of anything it loads, e.g. a backbone's weights:
    they are hashed into the key). ``data_key`` names the images behind the recording sets
    (e.g. ``AudioSplits.key``). ``embeddings`` ({"train": (emb, offsets), "val": ...} from
    :func:`split_embeddings`) feed the ``freeze_encoder`` fast path without recomputing them.
    The checkpoint is ``<root or cache_dir("models")>/<name>-<key>/model.pt``.
    """
    if embeddings is not None and not train_cfg.freeze_encoder:
        raise ValueError(f"train_or_load({name!r}): embeddings are for TrainConfig(freeze_encoder=True)")
    t0 = time.time()
    torch.manual_seed(train_cfg.seed)
    model = build_fn()
    if not isinstance(model, GeoModel):
        raise TypeError(f"train_or_load({name!r}): build_fn must return a GeoModel, got {type(model).__name__}")
    key, fields = zoo_key(name, model, train_cfg, train_set, val_set, data_key)
    folder = (Path(root) if root is not None else paths.cache_dir("models")) / f"{_safe(name)}-{key}"
    path = folder / "model.pt"
    device = resolve_device(train_cfg.device)

    def build() -> list[dict]:
        if retrain:
            path.unlink(missing_ok=True)
            shutil.rmtree(folder / "train", ignore_errors=True)
        (folder / "key.json").write_text(json.dumps(fields, indent=1, sort_keys=True, default=str))
        cfg = dataclasses.replace(train_cfg, checkpoint_dir=str(folder / "train"), progress=progress)
        if embeddings is not None:
            trainer = _EmbeddedTrainer(model, train_set, val_set, cfg, embeddings=embeddings)
        else:
            trainer = Trainer(model, train_set, val_set, cfg)
        with torch_threads(device):
            return trainer.fit(resume=True)  # continues a run that was killed before model.pt existed

    # a second process asking for the same model waits on the lock, then loads it; an unreadable checkpoint
    # raises ZooError (corrupt=()): a trained model is not thrown away silently
    history, trained = cached(
        path, build, lambda p: list(_load_entry(name, key, p, model, device).get("history", [])),
        lambda history, tmp: save_model(model, tmp, {"zoo": {"name": name, "key": key, "history": history}}),
        lock=folder / ".lock", rebuild=retrain, corrupt=())
    if trained:
        shutil.rmtree(folder / "train", ignore_errors=True)  # the resume state is not needed once model.pt exists
    return ZooEntry(name, key, path, model.to(device).eval(), history, trained, time.time() - t0)


# --------------------------------------------------------------------------- window embeddings

@torch.no_grad()
def window_embeddings(encoder: AudioEncoder, recs: RecordingSet, batch_size: int = 256, device=None,
                      progress: bool = True, channels_last: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Every stride-256 window of every recording -> ((W, D) float32 CPU embeddings, (N + 1,) int64 offsets).

    The same windows the trainer's fast path and :func:`~soundloc.models.recording_predict` use.
    ``channels_last``: run the convolutions channels-last (about 1.6x faster for MobileNetV3 on the
    CPU here, as on GPUs).
    """
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    was = encoder.training
    encoder.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    encoder.to(memory_format=fmt)
    counts = [spec.n_eval_windows(recs.image(i).shape[1], recs.spec_cfg) for i in range(len(recs))]
    offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(counts)]), dtype=torch.int64)
    out = torch.empty(int(offsets[-1]), encoder.dim)
    pos, buf = 0, []
    amp = torch.bfloat16 if device.type == "cuda" else None
    try:
        with torch_threads(device):
            for i in tqdm(range(len(recs)), desc="window embeddings", disable=not progress, leave=False):
                buf.append(recs.eval_windows(i))
                if sum(len(b) for b in buf) < batch_size and i < len(recs) - 1:
                    continue
                w, buf = np.concatenate(buf), []
                for s in range(0, len(w), batch_size):
                    x = spec.to_model_input(w[s:s + batch_size], size=encoder.cfg.input_size, cfg=recs.spec_cfg,
                                            device=device).contiguous(memory_format=fmt)
                    with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                        out[pos:pos + len(x)] = encoder(x).float().cpu()
                    pos += len(x)
    finally:
        encoder.train(was)
    return out, offsets


def split_embeddings(entry: ZooEntry, sim, split: str, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Window embeddings of ``entry``'s (frozen) encoder over a split, cached beside its checkpoint."""
    df = sim.splits[split]
    tag = digest({"data": sim.key, "ids": list(df["audio_id"]), "input": entry.model.encoder.cfg.input_size})

    def load(path) -> tuple[torch.Tensor, torch.Tensor]:
        with np.load(path, allow_pickle=False) as z:
            return torch.from_numpy(z["emb"].astype(np.float32)), torch.from_numpy(z["offsets"])

    def build() -> tuple[torch.Tensor, torch.Tensor]:
        recs = RecordingSet(sim.caches[split], np.zeros(len(df)), ids=list(df["audio_id"]), spec_cfg=sim.spec_cfg)
        return window_embeddings(entry.model.encoder, recs, progress=progress)

    def save(value, tmp) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, emb=value[0].numpy(), offsets=value[1].numpy())

    return cached(entry.folder / f"emb-{split}-{tag}.npz", build, load, save)[0]


@torch.no_grad()
def head_scores(head, emb: torch.Tensor, offsets: torch.Tensor, batch: int = 65536) -> torch.Tensor:
    """A head over cached window embeddings -> (N, K) recording scores (window scores averaged)."""
    head = head.eval()
    dev = next(head.parameters()).device
    out = torch.cat([head.scores(head(emb[s:s + batch].to(dev)).float()).cpu() for s in range(0, len(emb), batch)])
    counts = (offsets[1:] - offsets[:-1]).cpu()
    rec = torch.repeat_interleave(torch.arange(len(counts)), counts)
    return average_by_recording(out, rec, len(counts))


def recording_scores(model: GeoModel, sim, split: str, embeddings=None, progress: bool = True) -> torch.Tensor:
    """(N, K) recording-level scores of ``model`` on a split: from cached embeddings, or end to end."""
    if embeddings is not None:
        return head_scores(model.head, *embeddings)
    dev = next(model.parameters()).device
    with torch_threads(dev):
        pred = recording_predict(model, [spec.eval_windows(im, sim.spec_cfg) for im in sim.images(split)],
                                 spec_cfg=sim.spec_cfg)
    return pred.scores
