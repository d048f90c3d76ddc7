"""The trainer's checkpoints and metrics log (:class:`CheckpointMixin`, a base of :class:`soundloc.train.Trainer`).

After every epoch rank 0 writes ``checkpoint_dir/last.pt`` atomically (model, optimizer, scheduler, RNG
state, epoch, history, model + train config) and rewrites the metrics log (JSONL, one line per epoch,
atomically, from the history stored in the checkpoint); a resume checks both configs and, for a
frozen-encoder run (head-only ``last.pt``), the encoder's fingerprint.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .encoders import CheckpointMismatch, _strip
from .io import atomic_path
from .models import check_config, read_checkpoint, save_model

LAST, BEST = "last.pt", "best.pt"


class CheckpointMixin:
    """Checkpoint and log methods of the Trainer (they use its ``cfg``, ``model``, ``device``, ``history``)."""

    def _save_state(self, epoch: int, opt, sched, best: float) -> None:
        if self.ckpt_dir is None:
            return
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        train = {"config": self._train_config_dict(), "epoch": epoch, "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "rng": rng, "history": self.history, "best": best}
        state = None
        if self.cfg.freeze_encoder:  # the frozen encoder is the model's own: a fingerprint, not 4-20 MB a epoch
            train["encoder_sha1"] = self._encoder_fingerprint()
            state = self.model.head.state_dict(prefix="head.")
        save_model(self.model, self.ckpt_dir / LAST, {"train": train}, state=state)
        self.checkpoints_written += 1

    def _encoder_fingerprint(self) -> str:
        """sha1 over the encoder's parameter names and bytes (frozen: computed once per fit)."""
        if self._enc_sha1 is None:
            h = hashlib.sha1()
            for name, p in self.model.encoder.named_parameters():
                h.update(name.encode())
                h.update(p.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            self._enc_sha1 = h.hexdigest()
        return self._enc_sha1

    def _load_state(self, path: Path, opt, sched) -> tuple[int, float]:
        ckpt = read_checkpoint(path, map_location=self.device)
        check_config(path, ckpt["config"], self.model.config(), "model")
        if "train" not in ckpt:
            raise CheckpointMismatch(f"{path}: holds model weights only, no training state to resume")
        tr = ckpt["train"]
        check_config(path, tr["config"], self._train_config_dict(), "training")
        if "encoder_sha1" in tr:  # head-only checkpoint of a frozen-encoder run
            if tr["encoder_sha1"] != self._encoder_fingerprint():
                raise CheckpointMismatch(f"{path}: written for a frozen encoder with other weights than this "
                                         "model's; resume with the same encoder, or start afresh (resume=False)")
            self.model.head.load_state_dict(_strip(ckpt["model"], "head."))
        else:
            self.model.load_state_dict(ckpt["model"])
        opt.load_state_dict(tr["optimizer"])
        sched.load_state_dict(tr["scheduler"])
        torch.set_rng_state(tr["rng"]["torch"].cpu())
        if "cuda" in tr["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(tr["rng"]["cuda"].cpu(), self.device)
        self.history = list(tr["history"])
        return int(tr["epoch"]), float(tr["best"])

    def _write_log(self) -> None:
        if self.log_file is None:
            return
        with atomic_path(self.log_file) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.history))


def read_log(path) -> list[dict]:
    """The metrics JSONL written by :class:`Trainer` -> list of per-epoch dicts."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
