"""The paper's released-code spectrogram, batched in torch (CPU or GPU), its windows and a dataset cache.

Definition (SPEC section 4; checked against :mod:`soundloc.spectrogram_reference` on real audio):

1. waveform at 22,050 Hz; frames of 512 samples every 128 (no boundary padding, no end padding:
   ``F = 1 + (T - 512) // 128``), periodic Hann window (``scipy.signal.get_window('hann', 512)``),
   each windowed frame zero-padded to a 1024-point FFT (513 bins);
2. magnitude = |FFT| x 2 / window sum (scipy ``stft`` scales by 1 / window sum, the code then x 2);
3. mel = magnitude @ M, M the 513 x 128 ``tf.signal.linear_to_mel_weight_matrix``
   (HTK mel, triangles in mel space on the FFT bin frequencies, fmin..fmax, DC row zero);
4. dB = clip(20 log10(max(1e-10, mel)), -100, 0);
5. uint8 = ((dB + 100) * 255 / 100).astype(uint8): numpy's cast truncates, so this is
   ``floor(2.55 * (dB + 100))``; 0 dB -> 255, -100 dB -> 0; torch uses the same truncating cast;
6. mel rows flipped so row 0 is the highest band -> one (128, F) uint8 image per recording.

Model windows are cut from the image: 512 frames (~2.97 s) at random for training, every 256
frames (~1.49 s) for evaluation, each /255, resized to 224 x 224 (bilinear), normalised with
mean 0.3342 / std 0.1529 and repeated to 3 channels.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from . import paths
from .audio import AudioError, SkipReport, load_audio
from .devices import resolve_device
from .io import atomic_path, file_lock


@dataclass(frozen=True)
class SpecConfig:
    """Spectrogram, window and model-input settings (defaults: the paper's released code)."""

    sr: int = 22050                 # sample rate (Hz) every recording is resampled to
    n_fft: int = 1024               # FFT length; each windowed frame is zero-padded to it (513 bins)
    win: int = 512                  # periodic Hann window length (samples)
    hop: int = 128                  # hop between frames (samples), i.e. scipy noverlap = win - hop = 384
    n_mels: int = 128               # mel bands (image height)
    fmin: float = 0.0               # lower mel edge (Hz): 0 in the released code, 50 in the paper's text
    fmax: float = 11025.0           # upper mel edge (Hz): Nyquist of 22.05 kHz
    window_frames: int = 512        # model window length in image frames (~2.97 s)
    eval_stride: int = 256          # evaluation window stride in frames (~1.49 s)
    image_size: int = 224           # model input side (pixels) in paper mode
    small: bool = False             # SMALL mode: use small_image_size instead of image_size
    small_image_size: int = 112     # model input side (pixels) in SMALL mode
    mean: float = 0.3342            # normalisation mean of the /255 image
    std: float = 0.1529             # normalisation std of the /255 image

    def __post_init__(self):
        if not (0 <= self.fmin < self.fmax <= self.sr / 2):
            raise ValueError(f"SpecConfig needs 0 <= fmin < fmax <= sr / 2, got fmin={self.fmin}, "
                             f"fmax={self.fmax}, sr={self.sr}")
        if not (0 < self.hop <= self.win <= self.n_fft):
            raise ValueError(f"SpecConfig needs 0 < hop <= win <= n_fft, got {self.hop}, {self.win}, {self.n_fft}")
        if self.eval_stride <= 0 or self.window_frames <= 0:
            raise ValueError("SpecConfig window_frames and eval_stride must be positive")

    @property
    def n_bins(self) -> int:
        """Number of one-sided FFT bins (n_fft // 2 + 1)."""
        return self.n_fft // 2 + 1

    @property
    def input_size(self) -> int:
        """Model input side (pixels): small_image_size in SMALL mode, else image_size."""
        return self.small_image_size if self.small else self.image_size

    def n_frames(self, n_samples: int) -> int:
        """Image width F for a waveform of n_samples (0 when shorter than one window)."""
        return 0 if n_samples < self.win else 1 + (n_samples - self.win) // self.hop

    def image_key(self) -> str:
        """Short tag of the fields that determine the image (not the windowing/model-input fields)."""
        f = dataclasses.asdict(self)
        core = {k: f[k] for k in ("sr", "n_fft", "win", "hop", "n_mels", "fmin", "fmax")}
        h = hashlib.sha1(json.dumps(core, sort_keys=True).encode()).hexdigest()[:8]
        return f"sr{self.sr}_m{self.n_mels}_f{self.fmin:g}-{self.fmax:g}_{h}"


DEFAULT = SpecConfig()


# --------------------------------------------------------------------------- the image

def hz_to_mel(hz):
    """Hz -> HTK mel, 2595 log10(1 + f / 700) (float64)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_matrix(cfg: SpecConfig = DEFAULT) -> np.ndarray:
    """TF/HTK mel weights -> (n_fft // 2 + 1, n_mels) float32; triangles in mel space, DC row zero."""
    bin_mel = hz_to_mel(np.linspace(0.0, cfg.sr / 2.0, cfg.n_bins))[:, None]        # (513, 1)
    edges = np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax), cfg.n_mels + 2)    # (n_mels + 2,)
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel - left) / (centre - left)
    falling = (right - bin_mel) / (right - centre)
    w = np.clip(np.minimum(rising, falling), 0.0, None)
    w[0] = 0.0
    return w.astype(np.float32)


def hann_window(cfg: SpecConfig = DEFAULT) -> np.ndarray:
    """Periodic Hann window (== scipy.signal.get_window('hann', win)) -> (win,) float64."""
    n = np.arange(cfg.win, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / cfg.win)


class _Consts:
    """Per (config, device) torch constants: scaled FFT window and the mel matrix cut into dense blocks."""

    _cache: dict = {}

    @classmethod
    def get(cls, cfg: SpecConfig, device: torch.device, n_blocks: int = 8, scale: float = 1.0):
        """-> (window (n_fft,), scaled and zero-padded at the end; [(row0, row1, bin0, bin1, W (rows, bins))]).

        ``scale`` multiplies the mel weights (the CPU path folds the dB offset into them, see ``_LEVEL_SCALE``).
        """
        key = (cfg, str(device), n_blocks, scale)
        if key not in cls._cache:
            w = hann_window(cfg)
            # Fold the "x 2 / window sum" scale into the window and zero-pad it at the END to n_fft, so that
            # an n_fft-long frame starting at t * hop sees exactly scipy's 512 samples (torch.stft would
            # otherwise centre a shorter window inside n_fft, shifting frames by (n_fft - win) / 2).
            wfull = np.zeros(cfg.n_fft)
            wfull[: cfg.win] = w * (2.0 / w.sum())
            # Mel columns reversed (row 0 of the image = highest band); the matrix is ~99 % zeros (each
            # FFT bin feeds at most two bands), so it is applied as n_blocks dense blocks of consecutive
            # bands times only the FFT bins those bands touch: same sums, ~8x fewer multiply-adds.
            m = mel_matrix(cfg)[:, ::-1].astype(np.float64) * scale
            blocks = []
            for rows in np.array_split(np.arange(cfg.n_mels), min(n_blocks, cfg.n_mels)):
                nz = np.flatnonzero(m[:, rows].any(axis=1))
                lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (1, 2)
                blocks.append((int(rows[0]), int(rows[-1]) + 1, lo, hi,
                               torch.tensor(m[lo:hi, rows].T.copy(), dtype=torch.float32, device=device)))
            cls._cache[key] = (torch.tensor(wfull, dtype=torch.float32, device=device), blocks)
        return cls._cache[key]


def _as_batch(waves, device: torch.device) -> torch.Tensor:
    """(B, T) or (T,) array/tensor -> (B, T) float32 tensor on device."""
    x = torch.as_tensor(waves)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"expected a (T,) or (B, T) waveform, got shape {tuple(x.shape)}")
    return x.to(device=device, dtype=torch.float32)


def _to_levels_(mel: torch.Tensor) -> torch.Tensor:
    """Mel magnitudes -> float levels in [0, 255] (in place); the uint8 cast then truncates like numpy's astype.

    (clip(20 log10(max(1e-10, m)), -100, 0) + 100) * 255 / 100 == 51 log10(clip(m, 1e-5, 1)) + 255 exactly
    (log10 is monotonic), computed in 4 passes instead of 7; it agrees with the literal float64 form except
    where a value lies within float32 rounding of an integer level.
    """
    return mel.clamp_(1e-5, 1.0).log10_().mul_(51.0).add_(255.0)


# The CPU path multiplies the mel weights by 1e5, so that its levels take 3 passes instead of 4:
# 51 log10(clip(1e5 m, 1, 1e5)) == 51 log10(clip(m, 1e-5, 1)) + 255 (same float32-rounding caveat).
_LEVEL_SCALE = 1e5


# The CPU path runs its element-wise stages through numpy on the same memory (``Tensor.numpy()`` shares
# it, no copies): numpy's SIMD loops for complex abs, log10 and the float -> uint8 cast are 2.5-3x faster
# than torch's CPU kernels here (one thread, 165k frames: |X| 0.03 s vs 0.08 s for square + strided add +
# sqrt, since torch's complex abs is scalar hypot at 0.3 s; levels + cast 0.02 s vs 0.05 s), and they
# release the GIL like torch's. The FFT and the mel products stay in torch (MKL); the GPU path is all torch.

# Frames per chunk of the CPU path (measured best of 128..1024 on 2 cores: per-call overhead vs cache).
CPU_CHUNK = 512


def _magnitude_np(spec: torch.Tensor, out: np.ndarray) -> np.ndarray:
    """|spec| of a complex64 CPU tensor (n, bins) into the float32 array out (n, bins): numpy's SIMD abs."""
    return np.abs(spec.numpy(), out=out)


def _scaled_levels_np_(mel_scaled: np.ndarray) -> np.ndarray:
    """Mel magnitudes x _LEVEL_SCALE (float32 array) -> float levels in [0, 255] in place (numpy's SIMD loops);
    the same levels as ``_to_levels_`` of the unscaled magnitudes."""
    np.clip(mel_scaled, 1.0, _LEVEL_SCALE, out=mel_scaled)
    np.log10(mel_scaled, out=mel_scaled)
    return np.multiply(mel_scaled, 51.0, out=mel_scaled)


def _chunk_pieces(g0: int, n: int, F: int) -> list[tuple[int, int, int, int]]:
    """Frames [g0, g0 + n) of the all-recordings frame sequence (F frames per recording) as
    (recording, first frame, chunk row, frame count) pieces, one per recording touched."""
    pieces, g, k = [], g0, 0
    while k < n:
        b, f = divmod(g, F)
        m = min(n - k, F - f)
        pieces.append((b, f, k, m))
        g, k = g + m, k + m
    return pieces


def _spectrogram_chunked(x: torch.Tensor, cfg: SpecConfig, out: torch.Tensor, chunk: int, workers: int) -> None:
    """CPU path: all recordings' frames in one sequence, cut into chunks of `chunk` frames (a chunk may span
    recordings), each through reused buffers: window, rfft, magnitude, mel, levels, uint8; chunks spread
    over `workers` threads (1 torch thread each).

    Per chunk: the frames x window product is written into the left half of a zeroed (chunk, n_fft)
    buffer (the right half stays zero: the FFT padding); torch's (MKL) rfft; |X| by numpy's SIMD complex
    abs (``_magnitude_np``); the mel as 8 dense block products (torch/MKL, ``_Consts``) with the 1e5-scaled
    weights (``_LEVEL_SCALE``); the levels and the truncating uint8 cast by numpy (``_scaled_levels_np_``),
    written straight into ``out``'s memory. About 15 calls per chunk.
    """
    window, _ = _Consts.get(cfg, x.device)
    _, blocks = _Consts.get(cfg, x.device, scale=_LEVEL_SCALE)
    win = window[: cfg.win]
    B, F = out.shape[0], out.shape[2]
    total = B * F
    framed = x.unfold(1, cfg.win, cfg.hop)                        # (B, F, win) view, no copy
    out_np = out.numpy()                                          # shares out's memory
    starts = list(range(0, total, chunk))

    def run(my_starts):
        frames = torch.zeros((chunk, cfg.n_fft))                  # right half stays zero: the FFT padding
        mag = torch.empty((chunk, cfg.n_bins))
        mel = torch.empty((cfg.n_mels, chunk))
        mag_np, mel_np = mag.numpy(), mel.numpy()
        full = [(w, mag[:, lo:hi].T, mel[r0:r1]) for r0, r1, lo, hi, w in blocks]
        for g0 in my_starts:
            n = min(chunk, total - g0)
            pieces = _chunk_pieces(g0, n, F)
            for b, f, k, m in pieces:
                torch.mul(framed[b, f:f + m], win, out=frames[k:k + m, : cfg.win])
            # rfft into a fresh tensor: with out= torch computes into a temporary and copies (~15 % slower)
            _magnitude_np(torch.fft.rfft(frames if n == chunk else frames[:n]), mag_np[:n])
            if n == chunk:
                for w, mag_view, mel_view in full:
                    torch.matmul(w, mag_view, out=mel_view)
            else:                                                 # the last, shorter chunk
                for r0, r1, lo, hi, w in blocks:
                    torch.matmul(w, mag[:n, lo:hi].T, out=mel[r0:r1, :n])
            levels = _scaled_levels_np_(mel_np[:, :n])
            for b, f, k, m in pieces:
                out_np[b, :, f:f + m] = levels[:, k:k + m]        # float -> uint8 truncates (C cast)

    workers = max(1, min(workers, len(starts)))
    prev = torch.get_num_threads()
    # One torch thread per worker: small per-chunk ops scale better across Python threads (torch and numpy
    # release the GIL) than through OpenMP, whose spin-waiting collapses when other processes share the cores.
    torch.set_num_threads(1)
    try:
        if workers == 1:
            run(starts)
        else:
            with ThreadPoolExecutor(workers) as ex:
                list(ex.map(run, [starts[i::workers] for i in range(workers)]))
    finally:
        torch.set_num_threads(prev)


def _spectrogram_batched(x: torch.Tensor, cfg: SpecConfig, out: torch.Tensor, chunk_frames: int) -> None:
    """GPU path: torch.stft over many recordings at once (window zero-padded at the end to n_fft)."""
    window, blocks = _Consts.get(cfg, x.device)
    F = out.shape[2]
    x = torch.nn.functional.pad(x, (0, cfg.n_fft - cfg.win))  # the last frame's n_fft span; meets the zero tail
    step = max(1, chunk_frames // F)
    mel_buf = torch.empty((min(step, x.shape[0]), cfg.n_mels, F), device=x.device)
    for s in range(0, x.shape[0], step):
        spec = torch.stft(x[s:s + step], n_fft=cfg.n_fft, hop_length=cfg.hop, win_length=cfg.n_fft,
                          window=window, center=False, onesided=True, return_complex=True)  # (b, bins, F)
        mag = spec.abs().transpose(1, 2)                                                   # (b, F, bins)
        b = mag.shape[0]
        for r0, r1, lo, hi, w in blocks:
            torch.matmul(w, mag[:, :, lo:hi].transpose(1, 2), out=mel_buf[:b, r0:r1])
        out[s:s + b].copy_(_to_levels_(mel_buf[:b]))


@torch.no_grad()
def spectrogram_torch(waves, cfg: SpecConfig = DEFAULT, device: str | torch.device | None = None,
                      method: str = "auto", workers: int | None = None, chunk: int = CPU_CHUNK) -> torch.Tensor:
    """(B, T) or (T,) float32 waveform at 22.05 kHz -> (B, 128, F) uint8 on device, F = 1 + (T - 512) // 128.

    method "auto" uses "chunked" on the CPU (`chunk` frames at a time through reused buffers, `workers`
    threads, default torch.get_num_threads()) and "batched" (torch.stft on up to ~2**18 frames at once)
    elsewhere.
    """
    device = resolve_device(device)
    x = _as_batch(waves, device)
    B, T = x.shape
    F = cfg.n_frames(T)
    if F < 1:
        raise ValueError(f"waveform of {T} samples is shorter than one {cfg.win}-sample window")
    out = torch.empty((B, cfg.n_mels, F), dtype=torch.uint8, device=device)
    if method == "auto":
        method = "chunked" if device.type == "cpu" else "batched"
    if method == "chunked":
        if device.type != "cpu":
            raise ValueError("method='chunked' is the CPU path; use 'batched' on other devices")
        _spectrogram_chunked(x.contiguous(), cfg, out, chunk, torch.get_num_threads() if workers is None else workers)
    elif method == "batched":
        _spectrogram_batched(x, cfg, out, chunk_frames=1 << 18)
    else:
        raise ValueError(f"unknown method {method!r} (auto, chunked, batched)")
    return out


def compute_spectrogram(wave: np.ndarray, cfg: SpecConfig = DEFAULT,
                        device: str | torch.device | None = None) -> np.ndarray:
    """(T,) float32 waveform at 22.05 kHz -> (128, F) uint8 numpy image."""
    return spectrogram_torch(wave, cfg, device)[0].cpu().numpy()


def compute_spectrograms(waves: Sequence[np.ndarray], cfg: SpecConfig = DEFAULT,
                         device: str | torch.device | None = None, max_batch: int = 128) -> list[np.ndarray]:
    """N waveforms (T_i,) of any lengths -> N (128, F_i) uint8 images; equal lengths are batched together."""
    out: list[np.ndarray | None] = [None] * len(waves)
    by_len: dict[int, list[int]] = {}
    for i, w in enumerate(waves):
        by_len.setdefault(len(w), []).append(i)
    for idx in by_len.values():
        for s in range(0, len(idx), max_batch):
            part = idx[s:s + max_batch]
            imgs = spectrogram_torch(np.stack([waves[i] for i in part]), cfg, device).cpu().numpy()
            for i, img in zip(part, imgs):
                out[i] = img
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------- windows on the image

def _pad_centred(img: np.ndarray, width: int) -> np.ndarray:
    """(128, T) uint8 -> (128, width) with zero columns split evenly left/right (extra one on the right)."""
    t = img.shape[-1]
    left = (width - t) // 2
    return np.pad(img, ((0, 0), (left, width - t - left)))


def train_window(img: np.ndarray, rng: np.random.Generator | None = None, cfg: SpecConfig = DEFAULT) -> np.ndarray:
    """(128, T) uint8 image -> (128, 512) uint8 random window; shorter images zero-padded, centred."""
    n = cfg.window_frames
    t = img.shape[-1]
    if t <= n:
        return _pad_centred(np.asarray(img), n)
    rng = np.random.default_rng() if rng is None else rng
    start = int(rng.integers(0, t - n + 1))
    return np.array(img[:, start:start + n])


def n_eval_windows(n_frames: int, cfg: SpecConfig = DEFAULT) -> int:
    """Number of evaluation windows for an image of n_frames: ceil(T / 256) strides, at least one window."""
    padded = max(cfg.window_frames, -(-n_frames // cfg.eval_stride) * cfg.eval_stride)
    return (padded - cfg.window_frames) // cfg.eval_stride + 1


def eval_windows(img: np.ndarray, cfg: SpecConfig = DEFAULT) -> np.ndarray:
    """(128, T) uint8 image -> (W, 128, 512) uint8: centred zero pad to ceil(T/256)*256 (>= 512), stride 256."""
    n, stride = cfg.window_frames, cfg.eval_stride
    t = img.shape[-1]
    padded = _pad_centred(np.asarray(img), max(n, -(-t // stride) * stride))
    views = np.lib.stride_tricks.sliding_window_view(padded, n, axis=1)[:, ::stride]  # (128, W, 512)
    return np.ascontiguousarray(views.transpose(1, 0, 2))


@torch.no_grad()
def to_model_input(windows, size: int | None = None, cfg: SpecConfig = DEFAULT,
                   device: str | torch.device | None = None) -> torch.Tensor:
    """(N, 128, 512) uint8 windows -> (N, 3, S, S) float32 on device: /255, bilinear resize, (x - mean) / std."""
    device = resolve_device(device)
    size = cfg.input_size if size is None else size
    x = torch.as_tensor(np.asarray(windows) if not torch.is_tensor(windows) else windows)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"expected (N, H, W) windows, got shape {tuple(x.shape)}")
    x = x.to(device=device).to(torch.float32).div_(255.0)[:, None]              # (N, 1, H, W)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                        antialias=False)
    x = x.sub_(cfg.mean).div_(cfg.std)
    return x.expand(-1, 3, -1, -1).contiguous()                                  # same image in 3 channels


# --------------------------------------------------------------------------- dataset cache

class CacheError(RuntimeError):
    """A cache shard that is missing, incomplete or corrupt (the message names the file)."""


_FORMAT = 1


class SpectrogramCache:
    """Sharded on-disk cache of (128, T_i) uint8 images for a list of (audio_id, path).

    Shard k holds items [k*K, (k+1)*K): ``shard_{k:05d}.npy`` is their images concatenated along
    time and stored time-major, (sum T_i, 128) uint8, and ``shard_{k:05d}.json`` (written last,
    atomically; the completion marker) lists the shard's ids, each image's [offset, length], the
    skipped ids with their reasons, and the data file's size. A rerun skips shards whose index
    matches (same ids, same config) and whose data file has the recorded size; anything else is
    recomputed. Images are read back through ``np.load(mmap_mode='r')``.
    """

    def __init__(self, root: str | os.PathLike | None = None, cfg: SpecConfig = DEFAULT, shard_size: int = 64,
                 device: str | torch.device | None = None, min_seconds: float = 0.5):
        self.cfg = cfg
        self.root = Path(root) if root is not None else paths.cache_dir("spectrograms", cfg.image_key())
        self.root.mkdir(parents=True, exist_ok=True)
        self.shard_size = int(shard_size)
        self.device = device
        self.min_seconds = min_seconds
        self._where: dict[str, tuple[int, int, int]] | None = None  # audio_id -> (shard, offset, length)
        self._skipped: dict[str, str] = {}
        self._broken: dict[str, int] = {}
        self._mmaps: dict[int, np.ndarray] = {}
        self.last_computed: list[int] = []  # shard numbers the last build() computed (the rest were done)

    # ---- files
    def data_path(self, k: int) -> Path:
        """The data file of shard k."""
        return self.root / f"shard_{k:05d}.npy"

    def index_path(self, k: int) -> Path:
        """The index (completion marker) of shard k."""
        return self.root / f"shard_{k:05d}.json"

    def _config_json(self) -> dict:
        f = dataclasses.asdict(self.cfg)
        return {k: f[k] for k in ("sr", "n_fft", "win", "hop", "n_mels", "fmin", "fmax")}

    def _read_index(self, k: int) -> dict | None:
        """Shard k's index if the shard is complete and intact, else None."""
        ip, dp = self.index_path(k), self.data_path(k)
        if not ip.exists() or not dp.exists():
            return None
        try:
            idx = json.loads(ip.read_text())
        except (OSError, ValueError):
            return None
        if idx.get("format") != _FORMAT or idx.get("config") != self._config_json():
            return None
        if dp.stat().st_size != idx.get("nbytes"):
            return None
        return idx

    # ---- build
    def shards(self, items: Sequence[tuple[str, str | os.PathLike]]) -> list[list[tuple[str, str]]]:
        """Split items into the shard lists (K per shard, in order)."""
        items = [(str(a), str(p)) for a, p in items]
        return [items[i:i + self.shard_size] for i in range(0, len(items), self.shard_size)]

    def is_complete(self, k: int, shard_items: Sequence[tuple[str, str]]) -> bool:
        """Whether shard k is finished, intact and holds exactly these ids."""
        idx = self._read_index(k)
        return idx is not None and idx["ids"] == [a for a, _ in shard_items]

    def build(self, items: Iterable[tuple[str, str | os.PathLike]], progress: bool = True) -> SkipReport:
        """Compute every missing shard for (audio_id, path) items; returns the SkipReport of bad recordings."""
        items = list(items)
        ids = [str(a) for a, _ in items]
        if len(set(ids)) != len(ids):
            dup = sorted(a for a, n in Counter(ids).items() if n > 1)[:5]
            raise ValueError(f"duplicate audio_id(s) in cache items: {dup}")
        shards = self.shards(items)
        todo = [k for k, sh in enumerate(shards) if not self.is_complete(k, sh)]
        report = SkipReport(what="recordings")
        self.last_computed = []
        with contextlib.ExitStack() as stack:
            if todo:  # another process building this cache: wait for it, then do only what is still missing
                stack.enter_context(file_lock(Path(self.root) / ".lock"))
                todo = [k for k in todo if not self.is_complete(k, shards[k])]
            with tqdm(total=len(items), desc=f"spectrograms ({len(todo)}/{len(shards)} shards to do)",
                      unit="rec", disable=not progress) as bar:
                bar.update(len(items) - sum(len(shards[k]) for k in todo))
                for k in todo:
                    self._build_shard(k, shards[k], bar)
                    self.last_computed.append(k)
        for k in range(len(shards)):  # totals over all shards, including those finished earlier
            idx = self._read_index(k)
            report.total += len(idx["ids"])
            for a, reason in idx["skipped"].items():
                report.add(reason.split(":", 1)[0], f"{a}: {reason}")
        self._where = None
        self._mmaps.clear()
        if progress:
            print(f"spectrogram cache {self.root}: {report}")
        return report

    def _build_shard(self, k: int, shard_items: Sequence[tuple[str, str]], bar) -> None:
        waves, keep, skipped = [], [], {}
        for a, p in shard_items:
            try:
                wave = load_audio(p, sr=self.cfg.sr, min_seconds=self.min_seconds)
                if len(wave) < self.cfg.win:
                    raise AudioError(p, "too-short", f"{len(wave)} samples < one {self.cfg.win}-sample window")
                waves.append(wave)
                keep.append(a)
            except AudioError as e:
                skipped[a] = f"{e.reason}: {e}"
            bar.update(1)
        imgs = compute_spectrograms(waves, self.cfg, self.device) if waves else []
        lengths = [int(im.shape[1]) for im in imgs]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(int).tolist()
        data = (np.concatenate([im.T for im in imgs], axis=0) if imgs
                else np.zeros((0, self.cfg.n_mels), np.uint8))
        self.index_path(k).unlink(missing_ok=True)  # never pair an old index with new data
        with atomic_path(self.data_path(k)) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(data))
                f.flush()
                os.fsync(f.fileno())
        index = {
            "format": _FORMAT, "config": self._config_json(), "ids": [a for a, _ in shard_items],
            "entries": {a: [offsets[i], lengths[i]] for i, a in enumerate(keep)},
            "skipped": skipped, "nbytes": self.data_path(k).stat().st_size,
        }
        with atomic_path(self.index_path(k)) as tmp:
            tmp.write_text(json.dumps(index))

    # ---- read
    def _load_index(self) -> None:
        where, skipped, broken = {}, {}, {}
        for ip in sorted(self.root.glob("shard_*.json")):
            k = int(ip.stem.split("_")[1])
            idx = self._read_index(k)
            if idx is None:  # finished once, but its data file is now missing, truncated or replaced
                try:
                    broken.update({a: k for a in json.loads(ip.read_text()).get("ids", [])})
                except (OSError, ValueError):
                    pass
                continue
            for a, (off, n) in idx["entries"].items():
                where[a] = (k, off, n)
            skipped.update(idx["skipped"])
        self._where, self._skipped, self._broken = where, skipped, broken

    def ids(self) -> list[str]:
        """The audio_ids with a cached image."""
        if self._where is None:
            self._load_index()
        return list(self._where)

    def __contains__(self, audio_id: str) -> bool:
        return audio_id in self.ids()

    def get(self, audio_id: str) -> np.ndarray:
        """audio_id -> its (128, T) uint8 image, a read-only view of the memory-mapped shard."""
        if self._where is None:
            self._load_index()
        if audio_id not in self._where:
            if audio_id in self._broken:
                k = self._broken[audio_id]
                raise CacheError(f"{self.data_path(k)} is missing, truncated or does not match "
                                 f"{self.index_path(k).name}; rerun build() to recompute it")
            if audio_id in self._skipped:
                raise KeyError(f"{audio_id} was skipped when the cache was built: {self._skipped[audio_id]}")
            raise KeyError(f"{audio_id} is not in the spectrogram cache at {self.root} (run build first)")
        k, off, n = self._where[audio_id]
        if k not in self._mmaps:
            idx = self._read_index(k)
            if idx is None:
                raise CacheError(f"{self.data_path(k)} is incomplete or corrupt (size or index mismatch); "
                                 "rerun build() to recompute it")
            try:
                self._mmaps[k] = np.load(self.data_path(k), mmap_mode="r")
            except (OSError, ValueError) as e:
                raise CacheError(f"{self.data_path(k)} cannot be read: {e}") from e
        return self._mmaps[k][off:off + n].T


# --------------------------------------------------------------------------- showing the image

def level_to_db(level):
    """uint8 levels 0-255 -> dB re full scale, -100..0 (the inverse of the image's scaling)."""
    return np.asarray(level, np.float64) * 100.0 / 255.0 - 100.0
