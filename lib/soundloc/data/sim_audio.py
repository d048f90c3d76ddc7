"""SimSounds' audio synthesis: each species' deterministic synthetic voice (:func:`species_voice`, drawn from
a seed derived from its scientific name and the voice seed; congeners share part of a genus template),
its calls rendered vectorised with numpy (:func:`render_calls`), and ambient noise (pink-to-brown noise,
white floor, occasional wind gusts, rain, broadband bursts; :func:`ambient_noise`). All simulated.
"""
from __future__ import annotations

__all__ = ["Voice", "species_voice", "render_calls", "ambient_noise"]

import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

_CONTOURS = ("up", "down", "arch", "tone", "trill", "vibrato", "buzz")


# ---------------------------------------------------------------- voices
@dataclass(frozen=True)
class Voice:
    """A species' synthetic song: phrases of syllables with one frequency-contour type."""

    name: str              # scientific name
    contour: str           # up | down | arch | tone | trill | vibrato | buzz
    f_lo: float            # lower edge of the band, Hz (>= 1 kHz)
    f_hi: float            # upper edge of the band, Hz (<= 10 kHz)
    curvature: float       # exponent shaping up/down/arch sweeps
    syllable_s: float      # syllable length, s
    gap_s: float           # silence between syllables, s
    n_syllables: tuple[int, int]  # syllables per phrase (min, max)
    phrase_gap_s: float    # typical silence between phrases, s
    fm_hz: float           # trill / vibrato FM rate, or buzz AM rate, Hz
    fm_depth: float        # vibrato depth (fraction of the log band)
    drift: float           # frequency ratio from one syllable to the next within a phrase
    harmonics: tuple[float, ...]  # amplitude of harmonic 1, 2, ...
    attack: float          # envelope peak position (fraction of the syllable)
    env_power: float       # envelope exponent (<1 flat-topped, >1 peaky)

    @property
    def phrase_s(self) -> float:
        """Mean phrase duration, s."""
        return float(np.mean(self.n_syllables)) * (self.syllable_s + self.gap_s)


def _latent(seed_words: Sequence[int]) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(list(seed_words))
    return rng.random(16), int(rng.integers(len(_CONTOURS)))


def _loguni(z: float, lo: float, hi: float) -> float:
    return float(np.exp(np.log(lo) + z * (np.log(hi) - np.log(lo))))


@lru_cache(maxsize=8192)
def species_voice(name: str, voice_seed: int = 0, genus_share: float = 0.7) -> Voice:
    """Scientific name -> its deterministic :class:`Voice` (seeded by ``zlib.crc32`` of the name).

    A voice is drawn from latent uniforms: ``genus_share`` of them come from the genus' template
    (seeded by the genus name), the rest from the species' own draw, so congeners sound alike.
    """
    name = " ".join(str(name).split())
    genus = name.split(" ")[0]
    zg, cg = _latent([zlib.crc32(("genus:" + genus).encode()), int(voice_seed), 1])
    zs, cs = _latent([zlib.crc32(("species:" + name).encode()), int(voice_seed), 2])
    a = float(genus_share)
    z = a * zg + (1 - a) * zs
    contour = _CONTOURS[cg if zs[15] < a else cs]
    fc = _loguni(z[0], 1300.0, 8000.0)
    band = {"tone": (1.01, 1.06), "buzz": (1.01, 1.08), "trill": (1.15, 1.7), "vibrato": (1.15, 1.7)}.get(contour, (1.2, 2.2))
    ratio = _loguni(z[1], *band)
    f_lo, f_hi = fc / np.sqrt(ratio), fc * np.sqrt(ratio)
    if f_lo < 1000.0:
        f_lo, f_hi = 1000.0, 1000.0 * ratio
    if f_hi > 10000.0:
        f_lo, f_hi = 10000.0 / ratio, 10000.0
    syl = {"up": (0.03, 0.25), "down": (0.03, 0.25), "arch": (0.04, 0.3)}.get(contour, (0.08, 0.5))
    n_lo = 1 + int(z[4] * 7.999)
    n_hi = n_lo + int(z[5] * 3.999)
    fm = {"trill": (10.0, 40.0), "vibrato": (4.0, 14.0), "buzz": (30.0, 120.0)}.get(contour, (1.0, 1.0))
    n_harm = 1 + int(z[9] * 2.999)
    decay = 0.15 + 0.55 * z[10]
    return Voice(
        name=name, contour=contour, f_lo=round(float(f_lo), 3), f_hi=round(float(f_hi), 3),
        curvature=round(_loguni(z[2], 0.5, 2.0), 4),
        syllable_s=round(_loguni(z[3], *syl), 4), gap_s=round(_loguni(z[6], 0.02, 0.25), 4),
        n_syllables=(n_lo, n_hi), phrase_gap_s=round(_loguni(z[7], 0.3, 1.5), 4),
        fm_hz=round(_loguni(z[8], *fm), 3), fm_depth=round(0.08 + 0.3 * z[11], 4),
        drift=round(float(np.exp((z[12] - 0.5) * 0.12)), 5),
        harmonics=tuple(round(float(decay ** h), 4) for h in range(n_harm)),
        attack=round(0.05 + 0.6 * z[13], 4), env_power=round(_loguni(z[14], 0.5, 2.5), 4),
    )


def _schedule(voice: Voice, dur: float, rng: np.random.Generator, mode: str, tempo: float) -> np.ndarray:
    """Phrase onset times (s) for one species in one recording."""
    plen = voice.phrase_s * tempo
    if mode == "focal":  # sings through the clip
        t = [rng.uniform(0.0, min(0.5, 0.15 * dur))]
        while True:
            nxt = t[-1] + plen + voice.phrase_gap_s * tempo * rng.uniform(0.7, 1.3)
            if nxt >= dur - 0.05:
                break
            t.append(nxt)
        return np.asarray(t)
    if mode == "background":  # one or two phrases somewhere
        return np.sort(rng.uniform(0.0, max(dur - 0.3, 0.05), int(rng.integers(1, 3))))
    if mode == "chorus":  # phrases spread over the whole recording
        interval = rng.uniform(3.0, 12.0)
        t = [rng.uniform(0.0, interval)]
        while True:
            nxt = t[-1] + plen + interval * rng.uniform(0.5, 1.5)
            if nxt >= dur - 0.2:
                break
            t.append(nxt)
        return np.asarray(t)
    raise ValueError(f"unknown call mode {mode!r}; use 'focal', 'background' or 'chorus'")


def render_calls(voice: Voice, n_samples: int, rng: np.random.Generator, mode: str = "focal",
                 sr: int = 22050, onsets_s: Sequence[float] | None = None) -> tuple[np.ndarray, int]:
    """One species calling in a recording -> ((n_samples,) float64 signal, samples while calling).

    ``mode`` sets the phrase schedule (focal: throughout; background: 1-2 phrases; chorus: spread
    sparsely), unless ``onsets_s`` gives the phrase onsets. Each recording varies the voice a little
    (pitch +-2 %, tempo +-6 %), as individuals of one species do.
    """
    dur = n_samples / sr
    fscale = float(np.exp(rng.normal(0.0, 0.02)))
    tempo = float(np.exp(rng.normal(0.0, 0.06)))
    phrases = (_schedule(voice, dur, rng, mode, tempo) if onsets_s is None
               else np.asarray(onsets_s, float).reshape(-1))
    n_syl = rng.integers(voice.n_syllables[0], voice.n_syllables[1] + 1, len(phrases))
    step = (voice.syllable_s + voice.gap_s) * tempo
    k = np.concatenate([np.arange(n) for n in n_syl]) if len(phrases) else np.zeros(0, int)
    onset = np.repeat(phrases, n_syl) + k * step + rng.normal(0.0, 0.01 * step, len(k))
    fac = fscale * voice.drift ** k
    amp = np.repeat(rng.uniform(0.6, 1.0, len(phrases)), n_syl) * rng.uniform(0.85, 1.0, len(k))
    phi0 = rng.uniform(0.0, 2 * np.pi, len(k))
    fm_phase = rng.uniform(0.0, 2 * np.pi, len(k))

    L = max(16, int(round(voice.syllable_s * tempo * sr)))
    f32 = np.float32
    u = (np.arange(L) / L).astype(f32)
    t = (np.arange(L) / sr).astype(f32)
    c = f32(voice.curvature)
    two_pi = f32(2 * np.pi)
    if voice.contour == "up":
        shape = (u ** c)[None]
    elif voice.contour == "down":
        shape = (1 - u ** c)[None]
    elif voice.contour == "arch":
        shape = (np.sin(f32(np.pi) * u) ** c)[None]
    elif voice.contour in ("tone", "buzz"):
        shape = (f32(0.35) + f32(0.3) * u)[None]
    elif voice.contour == "trill":
        shape = f32(0.5) + f32(0.5) * np.sin(two_pi * f32(voice.fm_hz) * t[None] + fm_phase.astype(f32)[:, None])
    else:  # vibrato: a sweep with sinusoidal FM on top
        shape = (f32(0.15) + f32(0.7) * u[None] ** c
                 + f32(voice.fm_depth) * np.sin(two_pi * f32(voice.fm_hz) * t[None] + fm_phase.astype(f32)[:, None]))
    ratio = voice.f_hi / voice.f_lo
    base = np.power(f32(ratio), np.clip(shape, f32(-0.2), f32(1.2)))            # (1|n, L)
    inc = np.cumsum(base, axis=1, dtype=np.float64)                              # phase per unit frequency
    phase = (inc * (2 * np.pi / sr) * (voice.f_lo * fac)[:, None] + phi0[:, None]).astype(f32)  # (n, L)
    nyq = sr / 2
    wave = np.zeros((len(k), L), f32)
    for h, a in enumerate(voice.harmonics, start=1):
        if h * voice.f_hi * fscale * 1.3 < 0.95 * nyq:
            wave += f32(a) * np.sin(f32(h) * phase)
    a_pos, p = voice.attack, voice.env_power
    env = np.where(u < a_pos, u / f32(a_pos), (1 - u) / f32(1 - a_pos)) ** f32(p)
    if voice.contour == "buzz":
        env = env * (f32(0.5) + f32(0.5) * np.sin(two_pi * f32(voice.fm_hz) * t)) ** 2
    wave *= env[None] * amp.astype(f32)[:, None]

    sig = np.zeros(n_samples)
    n_active = 0
    for j, o in enumerate(np.round(onset * sr).astype(np.int64)):  # per syllable, not per sample
        a, b = max(0, o), min(n_samples, o + L)
        if b > a:
            sig[a:b] += wave[j, a - o:b - o]
            n_active += b - a
    return sig, n_active


# ---------------------------------------------------------------- ambient noise
def _colored(n: int, sr: int, alpha: float, rng: np.random.Generator, f_lo: float = 20.0) -> np.ndarray:
    """Unit-RMS noise with a 1/f**alpha power spectrum above f_lo (alpha 0 white, 1 pink, 2 brown)."""
    m = _fast_len(n)
    X = np.fft.rfft(rng.standard_normal(m))
    f = np.fft.rfftfreq(m, 1.0 / sr)
    X *= np.maximum(f, f_lo) ** (-alpha / 2)
    x = np.fft.irfft(X, m)[:n]
    return x / (np.sqrt(np.mean(x * x)) + 1e-12)


def _fast_len(n: int) -> int:
    """Smallest 2**a * 3**b * 5**c >= n (fast FFT sizes)."""
    best = 1 << max(0, int(n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _smooth_env(n: int, sr: int, rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Slowly varying positive envelope (random knots at ``rate_hz``, linearly interpolated, squared)."""
    m = max(2, int(np.ceil(n / sr * rate_hz)) + 2)
    knots = rng.random(m) ** 2
    return np.interp(np.arange(n) / sr * rate_hz, np.arange(m), knots)


def ambient_noise(n_samples: int, rng: np.random.Generator, sr: int = 22050) -> np.ndarray:
    """Ambient background: pink-to-brown noise at unit RMS, a white floor, and occasional wind
    gusts, rain and broadband bursts on top -> (n_samples,) float64."""
    n = int(n_samples)
    x = _colored(n, sr, rng.uniform(1.0, 2.0), rng)
    x += 10 ** (rng.uniform(-32.0, -18.0) / 20) * rng.standard_normal(n)
    if rng.random() < 0.3:  # wind gusts: low, rumbling, slowly swelling
        x += 10 ** (rng.uniform(0.0, 10.0) / 20) * _colored(n, sr, 2.0, rng) * _smooth_env(n, sr, rng.uniform(0.3, 1.0), rng)
    if rng.random() < 0.15:  # rain: many short broadband drops
        drops = np.zeros(n)
        k = rng.poisson(rng.uniform(30.0, 300.0) * n / sr)
        np.add.at(drops, rng.integers(0, n, k), rng.standard_normal(k))
        kern = rng.standard_normal(int(0.004 * sr)) * np.exp(-np.arange(int(0.004 * sr)) / (0.001 * sr))
        m = _fast_len(n + len(kern))
        rain = np.fft.irfft(np.fft.rfft(drops, m) * np.fft.rfft(kern, m), m)[:n]
        x += 10 ** (rng.uniform(-6.0, 4.0) / 20) * rain / (np.sqrt(np.mean(rain * rain)) + 1e-12)
    if rng.random() < 0.2:  # broadband bursts (a gust in the microphone, rustling)
        for _ in range(int(rng.integers(1, 4))):
            L = int(rng.uniform(0.2, 1.5) * sr)
            L = min(L, n)
            s = int(rng.integers(0, n - L + 1))
            x[s:s + L] += 10 ** (rng.uniform(0.0, 10.0) / 20) * _colored(L, sr, rng.uniform(0.0, 1.0), rng) * np.hanning(L)
    return x
