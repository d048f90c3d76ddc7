"""One trainer for every head: windows from uint8 spectrogram images, checkpoints, resume, DDP.

Data. A :class:`~soundloc.recording_sets.RecordingSet` holds one uint8 ``(128, T)`` spectrogram image
per recording (a list, a dict, or anything with ``.get(audio_id)`` such as
:class:`soundloc.spectrogram.SpectrogramCache`) and per-recording targets (from ``head.targets(...)``), plus optional true lat/lon for metrics.
Training draws ONE random 512-frame window per recording per epoch; the window is a function of
``(seed, epoch, recording index)`` only, so a resumed run replays exactly the same data.
Evaluation runs every stride-256 window and averages per recording (probabilities for
classifiers, unit vectors for regression). Windows are resized/normalised on the device by
:func:`soundloc.spectrogram.to_model_input`.

Optimisation (paper A.5): Nesterov SGD, lr linearly ramped from ``lr * min_lr_ratio`` to ``lr``
over ``warmup_epochs``, then cosine-decayed back to ``lr * min_lr_ratio`` (per step); or AdamW.
bf16 autocast and channels_last on CUDA (``"auto"``), off on the CPU unless asked for (``amp="bf16"``:
the forward passes, the cached-embedding fast path's included, run in bfloat16; losses in float32).

Checkpoints (:mod:`soundloc.train_checkpoints`). After every epoch rank 0 writes ``checkpoint_dir/last.pt`` atomically (model,
optimizer, scheduler, RNG state, epoch, history, model + train config), rewrites the metrics log
(JSONL, one line per epoch, atomically, from the history stored in the checkpoint -- so log and
checkpoint never disagree) and ``best.pt`` when the validation loss improves. ``fit(resume=True)``
continues from ``last.pt`` -- e.g. after the process was SIGKILLed mid-epoch -- and reaches the
same final weights and metrics as an uninterrupted run: every random draw is re-derived from
``(seed, epoch)`` at the start of each epoch, and CPU runs use deterministic algorithms.
With ``freeze_encoder`` the frozen encoder's weights are not rewritten every epoch: ``last.pt``
holds the head and a fingerprint of the encoder's parameters, which a resume checks against the
model it is given (the encoder's BatchNorm statistics are recomputed deterministically at the start
of every fit); ``best.pt`` and the final model stay complete.

Fast path (CPU / SMALL mode): ``TrainConfig(freeze_encoder=True)`` runs the (frozen, eval-mode)
encoder ONCE over every stride-256 window of every recording, keeps the embeddings on the device,
and trains only the head on them. Each epoch then draws one random cached window per recording
(the random 512-frame window is restricted to the stride-256 grid of the centred-padded image),
which is orders of magnitude faster than running the encoder each step. Use it for linear-probe
baselines and for notebooks on a laptop CPU; fine-tune the encoder on a GPU.

Multi-GPU: launch with ``torchrun --nproc-per-node N ...``; the trainer initialises (:mod:`soundloc.distributed`)
``torch.distributed`` from the environment (nccl on CUDA, gloo on the CPU), shards training with a
``DistributedSampler`` and evaluation by recording, and only rank 0 logs and checkpoints.
``python -m soundloc.train demo --out DIR`` (or under torchrun) trains on synthetic data.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import spectrogram as spec
from .distributed import Dist, dist_setup
from .encoders import AudioEncoder, EncoderConfig, recalibrate_batchnorm
from .heads import Head, RegressionHead, SpeciesHead
from .io import atomic_path
from .metrics import geo_metrics
from .models import GeoModel, average_by_recording, save_model
from .recording_sets import RecordingSet, TrainWindows, synthetic_recordings
from .sphere import haversine
from .train_checkpoints import BEST, LAST, CheckpointMixin


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (defaults: the paper's A.5 recipe)."""

    epochs: int = 50                    # total epochs (a resumed run continues up to this)
    batch_size: int = 128               # windows per optimisation step (per process under DDP)
    lr: float = 1e-2                    # peak learning rate (after warm-up)
    min_lr_ratio: float = 0.1           # warm-up starts and cosine ends at lr * min_lr_ratio (1e-3)
    warmup_epochs: int = 5              # linear warm-up length (epochs; stepped per batch)
    weight_decay: float = 1e-5          # L2 (SGD) / decoupled (AdamW) weight decay
    momentum: float = 0.9               # SGD momentum (Nesterov)
    optimizer: str = "sgd_nesterov"     # "sgd_nesterov" (paper) | "adamw"
    fused: bool = field(default=False, metadata={"since": 2})  # the optimizer's fused kernel (one pass per
                                        # tensor; rounds differently)
    freeze_encoder: bool = False        # train only the head on precomputed window embeddings (fast path)
    bn_recalibrate: int = 0             # fast path: first recompute the frozen encoder's BatchNorm statistics
                                        # on up to this many training windows (for random-init encoders)
    grad_clip: float | None = None      # max gradient norm, or None
    amp: str = "auto"                   # "auto" (bf16 on CUDA, off on CPU) | "bf16" | "off"
    channels_last: str = "auto"         # "auto" (on CUDA) | "on" | "off"
    seed: int = 0                       # seeds weights-independent randomness: windows, order, dropout
    deterministic: bool = True          # deterministic algorithms (CPU) / cudnn (CUDA)
    num_workers: int = 0                # DataLoader workers cutting training windows
    checkpoint_dir: str | None = None   # folder for last.pt / best.pt (None: no checkpoints)
    log_path: str | None = None         # metrics JSONL (default: checkpoint_dir/metrics.jsonl)
    device: str = "auto"                # "auto" | "cpu" | "cuda" | "cuda:N" (DDP: cuda:LOCAL_RANK)
    eval_batch_size: int = 256          # windows per evaluation forward pass
    eval_every: int = 1                 # evaluate every N epochs (and always after the last)
    progress: bool = True               # tqdm progress bars (rank 0 only)

    # fields that do not change the result: allowed to differ when resuming
    RUNTIME_FIELDS = ("num_workers", "checkpoint_dir", "log_path", "device", "eval_batch_size", "progress")

    def __post_init__(self):
        if self.optimizer not in ("sgd_nesterov", "adamw"):
            raise ValueError(f"TrainConfig.optimizer={self.optimizer!r}: expected 'sgd_nesterov' or 'adamw'")
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError(f"TrainConfig.amp={self.amp!r}: expected 'auto', 'bf16' or 'off'")
        if self.channels_last not in ("auto", "on", "off"):
            raise ValueError(f"TrainConfig.channels_last={self.channels_last!r}: expected 'auto', 'on' or 'off'")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ValueError("TrainConfig epochs, batch_size and eval_every must be >= 1")

    def identity(self) -> dict:
        """The fields that determine the trained weights (compared when resuming, hashed into zoo keys).

        Versioned by field: a field added in identity version N > 1 (``metadata={"since": N}``) enters it
        only when set away from its default, so a config that leaves it alone keeps its version-1
        identity, and the checkpoints and zoo keys made before the field existed stay valid.
        """
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in self.RUNTIME_FIELDS
                and (f.metadata.get("since", 1) == 1 or getattr(self, f.name) != f.default)}


# --------------------------------------------------------------------------- schedule

def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak lr at ``step``: linear min_ratio -> 1 over warm-up, cosine 1 -> min_ratio."""
    if warmup_steps > 0 and step < warmup_steps:
        return min_ratio + (1 - min_ratio) * step / warmup_steps
    rest = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / rest)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def _epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank, 7]).generate_state(1)[0])


# --------------------------------------------------------------------------- trainer

class Trainer(CheckpointMixin):
    """Train ``model`` (a GeoModel) on ``train_set`` and evaluate on ``val_set`` each epoch.

    ``fit(resume=False)`` -> history (list of per-epoch metric dicts). Keys: ``epoch`` (1-based),
    ``lr``, ``train_loss``, ``train_windows_per_s``, ``time_s`` and, when evaluated, ``val_loss``
    (mean window loss), ``val_<metric>`` from :func:`soundloc.metrics.geo_metrics` when the set
    has lat/lon and the head can locate, and ``val_acc`` (recording-level top-1) for classifiers.
    """

    def __init__(self, model: GeoModel, train_set: RecordingSet, val_set: RecordingSet | None = None,
                 cfg: TrainConfig = TrainConfig()):
        if not isinstance(model, GeoModel):
            raise TypeError(f"Trainer needs a GeoModel, got {type(model).__name__}")
        self.model, self.train_set, self.val_set, self.cfg = model, train_set, val_set, cfg
        self.history: list[dict] = []
        self.checkpoints_written = 0
        self.size = model.encoder.cfg.input_size
        self.spec_cfg = train_set.spec_cfg

    # ---- paths
    @property
    def ckpt_dir(self) -> Path | None:
        return None if self.cfg.checkpoint_dir is None else Path(self.cfg.checkpoint_dir)

    @property
    def log_file(self) -> Path | None:
        if self.cfg.log_path is not None:
            return Path(self.cfg.log_path)
        return None if self.ckpt_dir is None else self.ckpt_dir / "metrics.jsonl"

    # ---- setup helpers
    def _amp_dtype(self):
        if self.cfg.amp == "bf16" or (self.cfg.amp == "auto" and self.device.type == "cuda"):
            return torch.bfloat16
        return None

    def _channels_last(self) -> bool:
        return self.cfg.channels_last == "on" or (self.cfg.channels_last == "auto" and self.device.type == "cuda")

    def _make_optimizer(self, params):
        c = self.cfg
        fused = True if c.fused else None
        if c.optimizer == "sgd_nesterov":
            return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=True, weight_decay=c.weight_decay,
                                   fused=fused)
        return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay, fused=fused)

    def _train_config_dict(self) -> dict:
        return {"train": self.cfg.identity(), "n_train": len(self.train_set), "world": self.dist.world}

    def _sampler(self):
        return torch.utils.data.DistributedSampler(range(len(self.train_set)), num_replicas=self.dist.world,
                                                   rank=self.dist.rank, shuffle=True, seed=self.cfg.seed)

    # ---- fit
    def fit(self, resume: bool = False) -> list[dict]:
        """Train for ``cfg.epochs`` (continuing from ``last.pt`` when ``resume``) -> history."""
        cfg = self.cfg
        self.dist, self.device = dist_setup(cfg.device)
        self._enc_sha1 = None  # the frozen encoder's fingerprint, taken at the first checkpoint
        prev_det = torch.are_deterministic_algorithms_enabled()
        prev_bench = torch.backends.cudnn.benchmark
        try:
            random.seed(cfg.seed)
            np.random.seed(cfg.seed % 2**32)
            torch.manual_seed(cfg.seed)
            if cfg.deterministic:
                if self.device.type == "cpu":
                    torch.use_deterministic_algorithms(True, warn_only=True)
                torch.backends.cudnn.deterministic = True
                torch.backends.cudnn.benchmark = False
            else:
                torch.backends.cudnn.benchmark = self.device.type == "cuda"
            return self._fit(resume)
        finally:
            torch.use_deterministic_algorithms(prev_det)
            torch.backends.cudnn.benchmark = prev_bench
            if self.dist.owns_group:
                import torch.distributed as dist

                dist.destroy_process_group()

    def _fit(self, resume: bool) -> list[dict]:
        cfg, dist_ = self.cfg, self.dist
        model = self.model.to(self.device)
        if self._channels_last():
            model.encoder.to(memory_format=torch.channels_last)
        if cfg.freeze_encoder:
            for p in model.encoder.parameters():
                p.requires_grad_(False)
        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("no trainable parameters")
        opt = self._make_optimizer(trainable)

        sampler = self._sampler()
        n_local = len(sampler)
        drop_last = n_local >= cfg.batch_size  # never a 1-window last batch through BatchNorm
        steps = n_local // cfg.batch_size if drop_last else 1
        if not drop_last and n_local == 1 and not cfg.freeze_encoder:
            raise ValueError("need at least 2 training recordings per process (BatchNorm)")
        total, warm = steps * cfg.epochs, steps * cfg.warmup_epochs
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, total, warm, cfg.min_lr_ratio))

        start_epoch, best = 0, math.inf
        if dist_.main and self.ckpt_dir is not None:
            for tmp in glob.glob(str(self.ckpt_dir / ".*.tmp")):  # temporaries of a killed run (checkpoints, log)
                os.unlink(tmp)
        if resume and self.ckpt_dir is not None and (self.ckpt_dir / LAST).is_file():
            start_epoch, best = self._load_state(self.ckpt_dir / LAST, opt, sched)

        if cfg.freeze_encoder:
            self._cache_embeddings()
        train_mod: nn.Module = model.head if cfg.freeze_encoder else model
        if dist_.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            train_mod = nn.parallel.DistributedDataParallel(train_mod, device_ids=ids)
        self._train_mod = train_mod

        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.time()
            torch.manual_seed(_epoch_seed(cfg.seed, epoch, dist_.rank))  # dropout etc. depend on (seed, epoch)
            sampler.set_epoch(epoch)
            order = list(sampler)
            loss, n_win = (self._train_epoch_cached if cfg.freeze_encoder else self._train_epoch)(
                epoch, order, opt, sched, drop_last)
            train_time = time.time() - t0
            row = {"epoch": epoch + 1, "lr": float(opt.param_groups[0]["lr"]), "train_loss": loss,
                   "train_windows_per_s": n_win * dist_.world / max(train_time, 1e-9)}
            if self.val_set is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                row.update(self.evaluate())
            row["time_s"] = time.time() - t0
            self.history.append(row)
            if dist_.main:
                if "val_loss" in row and row["val_loss"] < best:
                    best = row["val_loss"]
                    if self.ckpt_dir is not None:
                        save_model(model, self.ckpt_dir / BEST, {"epoch": epoch + 1, "metrics": row})
                self._save_state(epoch + 1, opt, sched, best)
                self._write_log()
        return self.history

    # ---- one epoch, full model
    def _train_epoch(self, epoch, order, opt, sched, drop_last):
        cfg, model, dev = self.cfg, self.model, self.device
        ds = TrainWindows(self.train_set, cfg.seed)
        ds.epoch = epoch
        loader = torch.utils.data.DataLoader(
            ds, batch_size=cfg.batch_size, sampler=order, num_workers=cfg.num_workers, drop_last=drop_last,
            pin_memory=dev.type == "cuda")
        model.train()
        amp = self._amp_dtype()
        cl = self._channels_last()
        tot, n = torch.zeros((), dtype=torch.float64, device=dev), 0
        bar = self._bar(loader, f"epoch {epoch + 1}/{cfg.epochs}")
        for win, idx in bar:
            win = win.to(dev, non_blocking=True)
            y = self.train_set.targets[idx].to(dev, non_blocking=True)
            x = spec.to_model_input(win, size=self.size, cfg=self.spec_cfg, device=dev)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                out = self._train_mod(x)
            loss = model.head.loss(out.float(), y)
            self._step(loss, opt, sched)
            tot += loss.detach().double() * len(idx)
            n += len(idx)
            if hasattr(bar, "set_postfix") and n // len(idx) % 10 == 1:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        return self._reduce_mean(tot, n), n

    def _step(self, loss, opt, sched):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], self.cfg.grad_clip)
        opt.step()
        sched.step()

    def _reduce_mean(self, tot: torch.Tensor, n: int) -> float:
        if self.dist.world > 1:
            import torch.distributed as dist

            t = torch.stack([tot, torch.tensor(float(n), dtype=torch.float64, device=tot.device)])
            dist.all_reduce(t)
            tot, n = t[0], int(t[1].item())
        return float(tot.item() / max(n, 1))

    def _bar(self, it, desc):
        if self.cfg.progress and self.dist.main:
            return tqdm(it, desc=desc, leave=False, dynamic_ncols=True)
        return it

    # ---- fast path: cached embeddings
    @torch.no_grad()
    def _embed_set(self, recs: RecordingSet, desc: str):
        """Every stride-256 window of every recording -> (W, D) embeddings on the device + offsets."""
        enc, dev, amp = self.model.encoder, self.device, self._amp_dtype()
        enc.eval()
        counts = np.array([spec.n_eval_windows(recs.image(i).shape[1], recs.spec_cfg) for i in range(len(recs))])
        offsets = np.concatenate([[0], np.cumsum(counts)])
        out = torch.empty(int(offsets[-1]), enc.dim, device=dev)
        bs = self.cfg.eval_batch_size
        buf, pos = [], 0
        for i in self._bar(range(len(recs)), desc):
            buf.append(recs.eval_windows(i))
            if sum(len(b) for b in buf) >= bs or i == len(recs) - 1:
                w = np.concatenate(buf)
                buf = []
                for s in range(0, len(w), bs):
                    x = spec.to_model_input(w[s:s + bs], size=self.size, cfg=recs.spec_cfg, device=dev)
                    if self._channels_last():
                        x = x.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                        out[pos:pos + len(x)] = enc(x).float()
                    pos += len(x)
        return out, torch.as_tensor(offsets, device=dev)

    def _recalibrate_bn(self):
        """Fast path: BatchNorm statistics of the frozen encoder from the first training recordings' windows."""
        want, bs, got, buf = self.cfg.bn_recalibrate, self.cfg.eval_batch_size, 0, []
        for i in range(len(self.train_set)):
            if got >= want:
                break
            w = self.train_set.eval_windows(i)[: want - got]
            buf.append(w)
            got += len(w)
        w = np.concatenate(buf)

        def batches():
            for s in range(0, len(w), bs):
                x = spec.to_model_input(w[s:s + bs], size=self.size, cfg=self.spec_cfg, device=self.device)
                yield x.contiguous(memory_format=torch.channels_last) if self._channels_last() else x

        recalibrate_batchnorm(self.model.encoder, batches())

    def _cache_embeddings(self):
        if self.cfg.bn_recalibrate > 0:
            self._recalibrate_bn()
        self._emb = {"train": self._embed_set(self.train_set, "embedding train windows")}
        if self.val_set is not None:
            self._emb["val"] = self._embed_set(self.val_set, "embedding val windows")

    def _train_epoch_cached(self, epoch, order, opt, sched, drop_last):
        cfg, dev, head = self.cfg, self.device, self.model.head
        emb, offsets = self._emb["train"]
        counts = (offsets[1:] - offsets[:-1]).cpu().numpy()
        u = np.random.default_rng([cfg.seed, epoch]).random(len(counts))  # window choice: (seed, epoch, i)
        pick = torch.as_tensor(offsets[:-1].cpu().numpy() + np.floor(u * counts).astype(np.int64), device=dev)
        head.train()
        self.model.encoder.eval()
        order_t = torch.as_tensor(order, dtype=torch.long)
        bs = cfg.batch_size
        n_batches = len(order) // bs if drop_last else math.ceil(len(order) / bs)
        tot, n = torch.zeros((), dtype=torch.float64, device=dev), 0
        amp = self._amp_dtype()
        for b in range(n_batches):
            idx = order_t[b * bs:(b + 1) * bs]
            z = emb[pick[idx.to(dev)]]
            y = self.train_set.targets[idx].to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                out = self._train_mod(z)
            loss = head.loss(out.float(), y)
            self._step(loss, opt, sched)
            tot += loss.detach().double() * len(idx)
            n += len(idx)
        return self._reduce_mean(tot, n), n

    # ---- evaluation
    @torch.no_grad()
    def evaluate(self, recs: RecordingSet | None = None) -> dict:
        """Recording-level evaluation of ``recs`` (default: the validation set) -> ``val_*`` metrics.

        Recordings are sharded across DDP ranks and the results gathered, so every rank returns
        the same dict. Window scores are averaged per recording (:func:`average_by_recording`).
        """
        recs = self.val_set if recs is None else recs
        if recs is None:
            raise ValueError("no recordings to evaluate (no val_set given)")
        if not hasattr(self, "dist"):  # called outside fit(): single process, the model's device
            self.dist, self.device = Dist(), next(self.model.parameters()).device
        model, dev, head = self.model, self.device, self.model.head
        cached = self.cfg.freeze_encoder and recs is self.val_set and "val" in getattr(self, "_emb", {})
        was = model.training
        model.eval()
        try:
            mine = list(range(self.dist.rank, len(recs), self.dist.world))
            scores, loss_sum, n_win = self._eval_scores(recs, mine, cached)
        finally:
            model.train(was)
            if self.cfg.freeze_encoder:
                model.encoder.eval()
        pred = head.predict_from_scores(scores).cpu().numpy() if head.can_locate() else None
        top1 = scores.argmax(-1).cpu().numpy() if head.kind in ("h3", "species") else None
        part = {"idx": mine, "pred": pred, "top1": top1, "loss_sum": loss_sum, "n_win": n_win}
        parts = [part]
        if self.dist.world > 1:
            import torch.distributed as dist

            parts = [None] * self.dist.world
            dist.all_gather_object(parts, part)
        idx = np.concatenate([np.asarray(p["idx"], np.int64) for p in parts])
        out = {"val_loss": sum(p["loss_sum"] for p in parts) / max(1, sum(p["n_win"] for p in parts))}
        if pred is not None and recs.latlon is not None:
            P = np.concatenate([p["pred"] for p in parts])
            d = haversine(P[:, 0], P[:, 1], recs.latlon[idx, 0], recs.latlon[idx, 1])
            out.update({f"val_{k}": v for k, v in geo_metrics(d).items()})
        if top1 is not None:
            t = recs.targets.numpy()[idx]
            ok = t >= 0
            out["val_acc"] = float(np.mean(np.concatenate([p["top1"] for p in parts])[ok] == t[ok])) if ok.any() else float("nan")
        return out

    def _eval_scores(self, recs, mine, cached):
        """(len(mine), K) averaged scores, summed window loss, window count, for recordings ``mine``."""
        head, dev, amp = self.model.head, self.device, self._amp_dtype()
        if cached:
            emb, offsets = self._emb["val"]
            off = offsets.cpu().numpy()
            sel = np.concatenate([np.arange(off[i], off[i + 1]) for i in mine]) if mine else np.zeros(0, np.int64)
            rec = np.repeat(np.arange(len(mine)), [off[i + 1] - off[i] for i in mine]).astype(np.int64)
            outs = [head(emb[torch.as_tensor(sel[s:s + 65536], device=dev)]).float()
                    for s in range(0, len(sel), 65536)]
            out = torch.cat(outs) if outs else torch.zeros(0, 1, device=dev)
            rec_t = torch.as_tensor(rec, device=dev)
            y = recs.targets[torch.as_tensor([mine[r] for r in rec], dtype=torch.long)].to(dev) if len(rec) else None
            loss_sum = float(head.loss(out, y).item()) * len(rec) if len(rec) else 0.0
            return average_by_recording(head.scores(out), rec_t, len(mine)), loss_sum, len(rec)
        bs = self.cfg.eval_batch_size
        all_scores, all_rec, loss_sum, n_win = [], [], 0.0, 0
        buf, brec = [], []
        for j, i in enumerate(self._bar(mine, "evaluating")):
            w = recs.eval_windows(i)
            buf.append(w)
            brec.append(np.full(len(w), j))
            if sum(len(b) for b in buf) >= bs or j == len(mine) - 1:
                w_all, r_all = np.concatenate(buf), np.concatenate(brec)
                buf, brec = [], []
                for s in range(0, len(w_all), bs):
                    x = spec.to_model_input(w_all[s:s + bs], size=self.size, cfg=recs.spec_cfg, device=dev)
                    if self._channels_last():
                        x = x.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                        o = self.model(x)
                    o = o.float()
                    r = torch.as_tensor(r_all[s:s + bs])
                    y = recs.targets[torch.as_tensor([mine[k] for k in r.tolist()], dtype=torch.long)].to(dev)
                    loss_sum += float(head.loss(o, y).item()) * len(r)
                    n_win += len(r)
                    all_scores.append(head.scores(o))
                    all_rec.append(r.to(dev))
        if not all_scores:
            return torch.zeros(0, 1, device=dev), 0.0, 0
        return average_by_recording(torch.cat(all_scores), torch.cat(all_rec), len(mine)), loss_sum, n_win



def ddp_demo(out: str, epochs: int = 3, n: int = 32, input_size: int = 64, batch_size: int = 8,
             head: str = "species", freeze_encoder: bool = False, seed: int = 0) -> list[dict]:
    """Train a small model on synthetic data (also under torchrun); each rank writes ``out/rank{r}.json``."""
    d = synthetic_recordings(n=n, seed=seed)
    enc = AudioEncoder(EncoderConfig("mobilenet_v3_small", input_size=input_size, dropout=0.0))
    h: Head = SpeciesHead(enc.dim, 4) if head == "species" else RegressionHead(enc.dim, "haversine")
    model = GeoModel(enc, h)
    tgt = h.targets(lat=d["lat"], lon=d["lon"], species=d["labels"])
    ll = np.stack([d["lat"], d["lon"]], 1)
    train = RecordingSet(d["images"], tgt, ll)
    val = RecordingSet(d["images"][: n // 2], tgt[: n // 2], ll[: n // 2])
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=0.05, warmup_epochs=0, seed=seed,
                      freeze_encoder=freeze_encoder, checkpoint_dir=str(Path(out) / "ckpt"), progress=False)
    tr = Trainer(model, train, val, cfg)
    hist = tr.fit()
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    res = {"rank": rank, "world": world, "history": hist, "checkpoints_written": tr.checkpoints_written}
    Path(out).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(out) / f"rank{rank}.json") as tmp:
        tmp.write_text(json.dumps(res))
    return hist


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m soundloc.train",
                                description="soundloc trainer utilities (demo: synthetic-data training; works under torchrun)")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="train on synthetic data; torchrun --nproc-per-node N -m soundloc.train demo ...")
    d.add_argument("--out", required=True)
    d.add_argument("--epochs", type=int, default=3)
    d.add_argument("--recordings", type=int, default=32)
    d.add_argument("--input-size", type=int, default=64)
    d.add_argument("--batch-size", type=int, default=8)
    d.add_argument("--head", choices=("species", "regression"), default="species")
    d.add_argument("--freeze-encoder", action="store_true")
    d.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0: default)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    hist = ddp_demo(a.out, a.epochs, a.recordings, a.input_size, a.batch_size, a.head, a.freeze_encoder)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(hist[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
