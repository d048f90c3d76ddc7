"""What the trainer trains on: a :class:`RecordingSet` (one uint8 ``(128, T)`` spectrogram image per
recording + per-recording targets + optional true lat/lon), the per-epoch training windows drawn from it
(a function of ``(seed, epoch, recording index)`` only), and :func:`synthetic_recordings`, learnable toy data.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from . import spectrogram as spec


# --------------------------------------------------------------------------- data

class RecordingSet:
    """Recordings as uint8 (128, T) spectrogram images + per-recording targets (+ true lat/lon).

    ``images``: a sequence of arrays (positional), a mapping ``audio_id -> array``, or an object
    with ``.get(audio_id)`` (e.g. a SpectrogramCache; its ``ids()`` are used when ``ids`` is None).
    ``targets``: (N, ...) tensor/array from ``head.targets(...)``. ``latlon``: (N, 2) true
    coordinates, used for the km metrics of evaluation.
    """

    def __init__(self, images, targets, latlon=None, ids=None, spec_cfg: spec.SpecConfig = spec.DEFAULT):
        if ids is None:
            if isinstance(images, Mapping):
                ids = list(images.keys())
            elif hasattr(images, "ids") and callable(images.ids):
                ids = list(images.ids())
        self.images, self.ids, self.spec_cfg = images, (None if ids is None else list(ids)), spec_cfg
        n = len(self.ids) if self.ids is not None else len(images)
        self.targets = torch.as_tensor(np.asarray(targets) if not torch.is_tensor(targets) else targets)
        if len(self.targets) != n:
            raise ValueError(f"RecordingSet: {n} recordings but {len(self.targets)} targets")
        self.latlon = None if latlon is None else np.asarray(latlon, float).reshape(-1, 2)
        if self.latlon is not None and len(self.latlon) != n:
            raise ValueError(f"RecordingSet: {n} recordings but {len(self.latlon)} lat/lon rows")
        self.n = n

    def __len__(self) -> int:
        return self.n

    def name(self, i: int) -> str:
        return str(self.ids[i]) if self.ids is not None else f"#{i}"

    def image(self, i: int) -> np.ndarray:
        """The (128, T) uint8 image of recording i (clear error naming it when malformed)."""
        if self.ids is None:
            img = self.images[i]
        elif hasattr(self.images, "get") and not isinstance(self.images, Mapping):
            img = self.images.get(self.ids[i])
        else:
            img = self.images[self.ids[i]]
        img = np.asarray(img)
        if img.dtype != np.uint8 or img.ndim != 2 or img.shape[0] != self.spec_cfg.n_mels or img.shape[1] < 1:
            raise ValueError(f"recording {self.name(i)}: expected a uint8 ({self.spec_cfg.n_mels}, T) "
                             f"spectrogram image, got {img.dtype} {img.shape}")
        return img

    def train_window(self, i: int, seed: int, epoch: int) -> np.ndarray:
        """The (128, 512) training window of recording i in ``epoch`` (a function of seed, epoch, i)."""
        rng = np.random.default_rng([seed, epoch, i])
        return spec.train_window(self.image(i), rng, self.spec_cfg)

    def eval_windows(self, i: int) -> np.ndarray:
        return spec.eval_windows(self.image(i), self.spec_cfg)


class TrainWindows(torch.utils.data.Dataset):
    """Index i -> (window uint8 tensor, i) for the current epoch."""

    def __init__(self, recs: RecordingSet, seed: int):
        self.recs, self.seed, self.epoch = recs, seed, 0

    def __len__(self):
        return len(self.recs)

    def __getitem__(self, i):
        return torch.from_numpy(self.recs.train_window(i, self.seed, self.epoch)), i


# --------------------------------------------------------------------------- synthetic data and demo

SYNTH_CENTERS = np.array([[40.0, -100.0], [48.0, 10.0], [-25.0, 135.0], [-5.0, -60.0],
                          [35.0, 139.0], [0.0, 20.0], [60.0, 90.0], [-40.0, -65.0]])


def synthetic_recordings(n: int = 64, n_classes: int = 4, frames: int = 600, seed: int = 0,
                         jitter_deg: float = 1.0, noise: int = 90, band: int = 6) -> dict:
    """Learnable toy data: uint8 (128, frames) images whose class is a bright band at row 12 + 14 k.

    -> dict(images=list of arrays, labels=(n,) int64, lat=(n,), lon=(n,)); class k lives near
    ``SYNTH_CENTERS[k]`` (uniform jitter of +-``jitter_deg``). Background is uniform noise in
    [0, noise); the band (``band`` rows) is uniform in [200, 256).
    """
    if not 1 <= n_classes <= len(SYNTH_CENTERS):
        raise ValueError(f"n_classes must be 1..{len(SYNTH_CENTERS)}")
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    images = []
    for k in labels:
        img = rng.integers(0, noise, size=(128, frames), dtype=np.uint8)
        row = 12 + 14 * int(k)
        img[row:row + band] = rng.integers(200, 256, size=(band, frames), dtype=np.uint8)
        images.append(img)
    ll = SYNTH_CENTERS[labels] + rng.uniform(-jitter_deg, jitter_deg, size=(n, 2))
    return {"images": images, "labels": labels.astype(np.int64), "lat": ll[:, 0], "lon": ll[:, 1]}
