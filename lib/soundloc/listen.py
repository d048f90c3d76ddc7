"""Listening to a recording: a short embedded player and its spectrogram (s, Hz, dB) with BirdNET's species marked.

The player embeds an MP3 excerpt (a 15 s clip at 22.05 kHz is about 120 KB, a WAV would be 660 KB) so that executed
notebooks stay small. The spectrogram is the models' own image (:func:`soundloc.spectrogram.compute_spectrogram`,
128 HTK mel bands, levels = dB clipped to [-100, 0]) drawn with seconds on x, Hz on a mel-spaced y axis and a dB
colourbar; detections (BirdNET windows) are drawn as one lane per species above it, on the same time axis.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from . import paths
from .audio import load_audio
from .io import cached
from .spectrogram import DEFAULT, SpecConfig, compute_spectrogram, hz_to_mel, level_to_db

HZ_TICKS = (250, 500, 1000, 2000, 4000, 8000)  # y ticks of the mel-spaced axis, Hz


def excerpt(path, start_s: float = 0.0, seconds: float = 15.0, sr: int = DEFAULT.sr) -> np.ndarray:
    """Audio file -> (T,) float32 mono waveform at ``sr`` Hz from ``start_s`` for at most ``seconds`` s."""
    if start_s < 0 or not seconds > 0:
        raise ValueError(f"excerpt of {path}: start_s must be >= 0 and seconds > 0, got {start_s!r}, {seconds!r}")
    wave = load_audio(path, sr=sr)
    return wave[int(start_s * sr): int((start_s + seconds) * sr)]


def excerpt_mp3(path, start_s: float = 0.0, seconds: float = 15.0, sr: int = DEFAULT.sr) -> Path:
    """Audio file -> MP3 of the excerpt (cached in data/cache/listen by file content and span)."""
    import soundfile as sf

    path = Path(path)
    h = hashlib.sha1(path.read_bytes()).hexdigest()[:16]
    out = paths.cache_dir("listen") / f"{path.stem}__{h}__{start_s:g}-{seconds:g}s_{sr}.mp3"

    def write(tmp: Path) -> None:
        sf.write(str(tmp), excerpt(path, start_s, seconds, sr), sr, format="MP3", subtype="MPEG_LAYER_III")

    return cached(out, write, lambda p: p)[0]


def player(path, start_s: float = 0.0, seconds: float = 15.0):
    """Audio file -> IPython.display.Audio embedding a ``seconds`` s MP3 excerpt (plays in the notebook)."""
    from IPython.display import Audio

    return Audio(filename=str(excerpt_mp3(path, start_s, seconds)), embed=True)


def image_db(wave: np.ndarray, cfg: SpecConfig = DEFAULT) -> np.ndarray:
    """(T,) waveform at cfg.sr -> (n_mels, F) float32 dB in [-100, 0], low frequencies in row 0."""
    img = compute_spectrogram(wave, cfg)  # uint8 levels, high frequencies on top
    return level_to_db(img[::-1]).astype(np.float32)


def detection_lanes(table: pd.DataFrame, min_score: float = 0.3, max_species: int = 6) -> pd.DataFrame:
    """Per-window detections (start_s, end_s, common_name, score) -> the windows of the ``max_species`` best species
    scoring >= min_score, with ``lane`` 0.. (best species first)."""
    t = table[table.score >= min_score]
    best = t.groupby("common_name").score.max().sort_values(ascending=False).index[:max_species]
    lane = {name: k for k, name in enumerate(best)}
    t = t[t.common_name.isin(lane)].copy()
    t["lane"] = t.common_name.map(lane).astype(int)
    return t.sort_values(["lane", "start_s"], ignore_index=True)


def plot_listen(wave: np.ndarray, title: str, detections: pd.DataFrame | None = None, start_s: float = 0.0,
                min_score: float = 0.3, max_species: int = 6, cfg: SpecConfig = DEFAULT, fig=None):
    """(T,) waveform at cfg.sr [+ BirdNET windows table] -> matplotlib Figure: species lanes over a mel spectrogram.

    x: seconds from the recording's start (``start_s`` is where ``wave`` begins); y: Hz on the mel scale; colour: dB.
    Only windows overlapping the excerpt are drawn.
    """
    import matplotlib.pyplot as plt

    db = image_db(wave, cfg)
    t0, t1 = start_s, start_s + len(wave) / cfg.sr
    lanes = pd.DataFrame(columns=["start_s", "end_s", "common_name", "score", "lane"])
    if detections is not None and len(detections):
        lanes = detection_lanes(detections, min_score, max_species)
        lanes = lanes[(lanes.end_s > t0) & (lanes.start_s < t1)]
    n = max(1, lanes.lane.nunique()) if len(lanes) else 1
    fig = fig or plt.figure(figsize=(13, 4.2 + 0.25 * n))
    top, ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [0.6 + 0.3 * n, 4], "hspace": 0.05})
    m0, m1 = hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax)
    im = ax.imshow(db, aspect="auto", origin="lower", cmap="magma", vmin=-100, vmax=0, extent=(t0, t1, m0, m1))
    ticks = [f for f in HZ_TICKS if cfg.fmin < f < cfg.fmax]
    ax.set_yticks(hz_to_mel(ticks), [f"{f:,}" for f in ticks])
    ax.set(xlabel="time (s)", ylabel="frequency (Hz, mel scale)", xlim=(t0, t1))
    fig.colorbar(im, ax=[top, ax], shrink=0.8, pad=0.01, label="level (dB re full scale)")
    names = lanes.drop_duplicates("lane").sort_values("lane").common_name.tolist() if len(lanes) else []
    colors = plt.get_cmap("tab10")
    for r in lanes.itertuples():
        top.broken_barh([(max(r.start_s, t0), min(r.end_s, t1) - max(r.start_s, t0))], (r.lane - 0.4, 0.8),
                        color=colors(r.lane % 10), alpha=0.35 + 0.65 * float(r.score))
    top.set_yticks(range(len(names)), names) if names else top.set_yticks([0], [f"no species >= {min_score:g}"])
    top.set_ylim(len(names) - 0.5 if names else 0.5, -0.5)
    top.tick_params(axis="x", labelbottom=False)
    top.set_title(f"{title}\nBirdNET windows of 3 s scoring >= {min_score:g} (opacity: score)" if detections is not None
                  else title)
    return fig
