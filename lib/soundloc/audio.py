"""Audio loading: any soundfile format (WAV/FLAC/OGG/MP3) -> mono float32 at 22.05 kHz, with checks.

``load_audio`` raises :class:`AudioError` (a ``ValueError``) naming the file and the problem;
``load_many`` is the batch form that counts skips by reason instead of crashing.
MP3 is read by libsndfile itself (>= 1.1; the soundfile wheel bundles 1.2.x), no ffmpeg needed.
Resampling uses soxr at "HQ" quality (the same resampler as ``librosa.load``'s default).
"""
from __future__ import annotations

import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

DEFAULT_SR = 22050

# Short reason keys used by AudioError.reason and SkipReport counts.
REASONS = ("missing", "unreadable", "truncated", "empty", "non-finite", "silent", "too-short")
_VBR_TAGS = (b"Xing", b"Info", b"VBRI")  # MP3 first-frame headers that carry the exact frame count


class AudioError(ValueError):
    """A recording that cannot be used; ``path`` and ``reason`` (one of ``REASONS``) say why."""

    def __init__(self, path, reason: str, detail: str = ""):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}" + (f" ({detail})" if detail else ""))


@dataclass
class SkipReport:
    """Counts of skipped items by reason (with a few example messages) for a batch job."""

    total: int = 0                                         # items attempted
    skipped: Counter = field(default_factory=Counter)      # reason -> count
    examples: dict = field(default_factory=dict)           # reason -> up to `max_examples` messages
    max_examples: int = 3
    what: str = "items"                                    # noun used in the summary line

    @property
    def n_skipped(self) -> int:
        """Number of skipped items."""
        return int(sum(self.skipped.values()))

    @property
    def n_ok(self) -> int:
        """Number of items that were processed."""
        return self.total - self.n_skipped

    def add(self, reason: str, message: str) -> None:
        """Record one skipped item (reason key, full message naming the item)."""
        self.skipped[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < self.max_examples:
            ex.append(message)

    def merge(self, other: "SkipReport") -> "SkipReport":
        """Add another report's counts into this one (in place); returns self."""
        self.total += other.total
        for reason, n in other.skipped.items():
            self.skipped[reason] += n
            ex = self.examples.setdefault(reason, [])
            ex.extend(other.examples.get(reason, [])[: max(0, self.max_examples - len(ex))])
        return self

    def __str__(self) -> str:
        """One-line summary, e.g. '95/97 recordings ok, 2 skipped (too-short: 1, unreadable: 1)'."""
        s = f"{self.n_ok}/{self.total} {self.what} ok, {self.n_skipped} skipped"
        if self.skipped:
            s += " (" + ", ".join(f"{r}: {n}" for r, n in sorted(self.skipped.items())) + ")"
        return s


def _read(path: Path) -> tuple[np.ndarray, int]:
    """Read a file with soundfile -> ((N, C) float32, sample rate); AudioError if it is not audio."""
    import soundfile as sf

    if not path.exists():
        raise AudioError(path, "missing", "no such file")
    if path.is_dir():
        raise AudioError(path, "unreadable", "is a folder")
    try:
        info = sf.info(str(path))
        x, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as e:
        raise AudioError(path, "unreadable", f"not a readable audio file: {e}") from e
    _check_complete(path, _declared_frames(path, info, x.shape[0]), x.shape[0], file_sr)
    return x, int(file_sr)


def _check_complete(path: Path, declared: int | None, present: float, sr: int) -> None:
    """AudioError "truncated" when a header promises more than 0.1 % beyond the ``present`` frames."""
    if declared is not None and present < 0.999 * declared:
        raise AudioError(path, "truncated", f"its header promises {declared / sr:.2f} s, only "
                         f"{present / sr:.2f} s are there; re-export it (e.g. sox in out.wav) to use that part")


def check_decoded_length(path: str | os.PathLike, seconds: float) -> None:
    """A file and the seconds decoded from it earlier (e.g. by cached scores) -> AudioError "truncated" if its
    header promises more, as :func:`load_audio` would raise; reads the header only (no decoding)."""
    import soundfile as sf

    path = Path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as e:
        raise AudioError(path, "unreadable", f"not a readable audio file: {e}") from e
    # a WAV's promised length is scaled from the frames libsndfile finds (info.frames, what is there)
    _check_complete(path, _declared_frames(path, info, info.frames), seconds * info.samplerate, info.samplerate)


def _declared_frames(path: Path, info, n_read: int) -> int | None:
    """Frames a file's header promises (a WAV's data chunk size, an MP3's Xing/Info/VBRI count, other formats'
    count as libsndfile reads it) -> int, or None where the header does not say (streamed WAV, MP3 without tag)."""
    if info.format in ("WAV", "WAVEX"):
        with open(path, "rb") as f:
            head = f.read(1 << 16)
        pos, size = 12, path.stat().st_size
        while pos + 8 <= len(head):
            cid, n = struct.unpack_from("<4sI", head, pos)
            if cid == b"data":  # libsndfile's frame count is what is there: scale it by promised / present bytes
                have = size - pos - 8
                return None if n in (0, 0xFFFFFFFF) or have <= 0 or n <= have else int(n_read * n / have)
            pos += 8 + n + (n & 1)
        return None
    if info.format == "MPEG":
        with open(path, "rb") as f:
            head = f.read(10)
            skip = (sum(b << (7 * (3 - i)) for i, b in enumerate(head[6:10])) + 10) if head[:3] == b"ID3" else 0
            f.seek(skip)
            frame = f.read(256)  # the tag sits in the first frame, after its side information
        return info.frames if any(t in frame for t in _VBR_TAGS) else None
    return info.frames


def load_audio(path: str | os.PathLike, sr: int = DEFAULT_SR, min_seconds: float = 0.5) -> np.ndarray:
    """Audio file -> (T,) float32 mono waveform in [-1, 1] at ``sr`` Hz; AudioError naming the file if unusable."""
    import soxr

    path = Path(path)
    x, file_sr = _read(path)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise AudioError(path, "empty", "0 samples")
    if not np.isfinite(x).all():
        n_bad = int((~np.isfinite(x)).sum())
        raise AudioError(path, "non-finite", f"{n_bad} NaN/inf samples")
    if not x.any():
        raise AudioError(path, "silent", f"all {x.shape[0]} samples are zero (digital silence)")
    seconds = x.shape[0] / file_sr
    if seconds < min_seconds:
        raise AudioError(path, "too-short", f"{seconds:.3f} s < min_seconds={min_seconds:g} s")
    mono = x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]
    if file_sr != sr:
        mono = soxr.resample(mono, file_sr, sr, quality="HQ")
    # Resampling can overshoot full scale slightly (and float files may exceed it): clip to [-1, 1].
    return np.ascontiguousarray(np.clip(mono, -1.0, 1.0), dtype=np.float32)


def load_many(paths: Iterable[str | os.PathLike], sr: int = DEFAULT_SR, min_seconds: float = 0.5,
              progress: bool = False) -> tuple[list[np.ndarray | None], SkipReport]:
    """N paths -> (N waveforms (T_i,) float32, None where skipped), SkipReport of skips by reason."""
    paths: Sequence = list(paths)
    report = SkipReport(what="recordings")
    out: list[np.ndarray | None] = []
    it = paths
    if progress:
        it = tqdm(paths, desc="load audio", unit="file")
    for p in it:
        report.total += 1
        try:
            out.append(load_audio(p, sr=sr, min_seconds=min_seconds))
        except AudioError as e:
            report.add(e.reason, str(e))
            out.append(None)
    return out, report
