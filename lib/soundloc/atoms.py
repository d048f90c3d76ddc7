"""Acoustic atoms: a top-k sparse autoencoder over audio window embeddings (the AVG paper's first stage).

Each window embedding z (D,) is coded as a = TopK(ReLU(W_e (z - b_d) + b_e)) over M atoms and decoded as
z^ = D a + b_d, with unit-norm atoms (the columns of D, renormalised after every step) so that an
activation's size is its contribution. Reported: the fraction of variance explained (FVE) and the dead
atoms (never active on a set). Atoms are described by what activates them: the species of their top
windows and the frequency band of those windows' spectrograms. A geolocation head on atom activations
is compared with the same head on the raw embedding (:func:`h3_head_errors`).

Real recordings (:func:`real_windows`): BirdNET's 1,024-d embeddings of their 3 s windows
(:meth:`soundloc.detect.BirdNETDetector.embed`), each window's level in log-spaced frequency bands above
its clip's floor, and the hour of day where the file name gives it, cached on disk; a linear probe
(:func:`linear_probe`) compares atom activations with the raw embedding on what real data can answer.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pooch
import torch
from scipy import signal
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from . import paths
from . import spectrogram as spec
from .audio import load_audio
from .detect import SR, WINDOW_S, BirdNETDetector, get_detector
from .devices import resolve_device
from .io import atomic_path, digest, file_lock, lock_path
from .sphere import h3_cells, h3_centers, haversine


@dataclass(frozen=True)
class SAEConfig:
    n_atoms: int = 256          # dictionary size M
    k: int = 8                  # active atoms per window (top-k)
    epochs: int = 60            # passes over the windows
    batch_size: int = 256       # windows per step
    lr: float = 1e-3            # Adam learning rate
    seed: int = 0               # initial dictionary (random windows) and batch order

    def digest(self) -> str:
        return hashlib.sha1(repr(sorted(asdict(self).items())).encode()).hexdigest()[:12]


class TopKSAE(nn.Module):
    """(B, D) embeddings -> (B, D) reconstructions through (B, M) k-sparse non-negative activations."""

    def __init__(self, dim: int, cfg: SAEConfig):
        super().__init__()
        if not 1 <= cfg.k <= cfg.n_atoms:
            raise ValueError(f"SAEConfig: need 1 <= k <= n_atoms, got k={cfg.k}, n_atoms={cfg.n_atoms}")
        self.cfg = cfg
        self.enc = nn.Linear(dim, cfg.n_atoms)
        self.dec = nn.Parameter(torch.randn(cfg.n_atoms, dim) / math.sqrt(dim))  # (M, D): one atom per row
        self.b_dec = nn.Parameter(torch.zeros(dim))
        self.renorm()

    @torch.no_grad()
    def renorm(self) -> None:
        self.dec.div_(self.dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, M) activations, k non-zero per row."""
        pre = torch.relu(self.enc(z - self.b_dec))
        top = pre.topk(self.cfg.k, dim=1)
        return torch.zeros_like(pre).scatter_(1, top.indices, top.values)

    def decode(self, a: torch.Tensor) -> torch.Tensor:
        return a @ self.dec + self.b_dec

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(z))


def fit_sae(X: torch.Tensor, cfg: SAEConfig, device="cpu") -> tuple[TopKSAE, list[float]]:
    """Train on (N, D) embeddings -> (model in eval mode, per-epoch mean squared error normalised by the variance)."""
    dev = resolve_device(device)
    X = torch.as_tensor(X, dtype=torch.float32, device=dev)
    g = torch.Generator(device="cpu").manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    sae = TopKSAE(X.shape[1], cfg).to(dev)
    with torch.no_grad():  # start: b_dec at the mean, atoms at random centred windows (as k-means would)
        sae.b_dec.copy_(X.mean(0))
        init = X[torch.randperm(len(X), generator=g)[:cfg.n_atoms].to(dev)] - X.mean(0)
        sae.dec[:len(init)] = init
        sae.renorm()
        sae.enc.weight.copy_(sae.dec)
        sae.enc.bias.zero_()
    var = float(((X - X.mean(0)) ** 2).sum(1).mean())
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    hist = []
    sae.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(X), generator=g).to(dev)
        tot = 0.0
        for s in range(0, len(X), cfg.batch_size):
            z = X[order[s:s + cfg.batch_size]]
            loss = ((sae(z) - z) ** 2).sum(1).mean() / var
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sae.renorm()
            tot += float(loss.detach()) * len(z)
        hist.append(tot / len(X))
    return sae.eval(), hist


@torch.no_grad()
def activations(sae: TopKSAE, X, batch: int = 8192) -> torch.Tensor:
    """(N, D) embeddings -> (N, M) CPU activations."""
    dev = sae.dec.device
    X = torch.as_tensor(X, dtype=torch.float32)
    return torch.cat([sae.encode(X[s:s + batch].to(dev)).cpu() for s in range(0, len(X), batch)])


@torch.no_grad()
def fve(sae: TopKSAE, X, batch: int = 8192) -> float:
    """Fraction of the variance of (N, D) embeddings that the reconstruction explains: 1 - SSE / SST."""
    X = torch.as_tensor(X, dtype=torch.float32)
    dev = sae.dec.device
    sse = sum(float(((sae(X[s:s + batch].to(dev)).cpu() - X[s:s + batch]) ** 2).sum()) for s in range(0, len(X), batch))
    return 1.0 - sse / float(((X - X.mean(0)) ** 2).sum())


def dead_rate(acts: torch.Tensor) -> float:
    """(N, M) activations -> fraction of atoms never active on these N windows."""
    return float((acts > 0).sum(0).eq(0).double().mean())


def pool_recordings(acts: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(W, M) window activations, (R + 1,) offsets -> (R, M) mean activation per recording."""
    counts = (offsets[1:] - offsets[:-1]).cpu()
    rec = torch.repeat_interleave(torch.arange(len(counts)), counts)
    out = torch.zeros(len(counts), acts.shape[1]).index_add_(0, rec, acts.float())
    return out / counts.clamp_min(1)[:, None]


# ---------------------------------------------------------------- describing atoms
def window_peak_hz(images, spec_cfg) -> np.ndarray:
    """Spectrogram images (list of (128, T) uint8) -> (W,) peak frequency (Hz) of every evaluation window, in
    the windows' order (the same windows as :func:`soundloc.zoo.window_embeddings`): the mel band whose
    level stands highest, on average over the window's frames, above that band's median over the whole
    recording (its noise floor: broadband noise alone would favour the wide high-frequency bands), at its centre."""
    edges = np.linspace(spec.hz_to_mel(spec_cfg.fmin), spec.hz_to_mel(spec_cfg.fmax), spec_cfg.n_mels + 2)[1:-1]
    centre_hz = 700.0 * (10 ** (edges / 2595.0) - 1)
    out = []
    for img in images:
        img = np.asarray(img, np.float32)
        # level above each band's floor, >= 0, so that the zero padding of short clips favours no band
        excess = np.clip(img - np.median(img, axis=1, keepdims=True), 0, None)
        level = spec.eval_windows(excess, spec_cfg).mean(2)  # (W, 128)
        level[:, 0] = -1  # the DC row is zero by construction
        out.append(centre_hz[level.argmax(1)])
    return np.concatenate(out) if out else np.zeros(0)


def describe_atoms(acts: torch.Tensor, species: np.ndarray, peak_hz: np.ndarray | None = None, top: int = 20,
                   hours: np.ndarray | None = None) -> pd.DataFrame:
    """(W, M) activations, (W,) species of each window's recording, optional (W,) peak Hz and hour of day
    -> one row per live atom: how often it fires, its top ``top`` windows' most common species and that
    species' share, the median and interquartile peak frequency of those windows (and their median hour)."""
    A = acts.float()
    n_top = min(top, len(A))
    vals, idx = A.topk(n_top, dim=0)  # (top, M)
    rows = []
    species = np.asarray(species, dtype=object)
    for m in np.flatnonzero((A > 0).any(0).numpy()):
        i = idx[:, m][vals[:, m] > 0].numpy()
        sp = pd.Series(species[i]).value_counts()
        row = {"atom": int(m), "active %": 100 * float((A[:, m] > 0).double().mean()),
               "mean activation": float(A[:, m].mean()), "top species": sp.index[0],
               "top species share %": 100 * sp.iloc[0] / len(i), "species in top": int(len(sp))}
        if peak_hz is not None:
            q = np.percentile(peak_hz[i], [25, 50, 75])
            row.update({"peak Hz (median)": q[1], "peak Hz (IQR)": q[2] - q[0]})
        if hours is not None:
            h = np.asarray(hours, float)[i]
            row["hour (median)"] = float(np.nanmedian(h)) if np.isfinite(h).any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows).sort_values("mean activation", ascending=False, ignore_index=True)


# ---------------------------------------------------------------- a geolocation head on any features
def h3_head_errors(train_X, train_ll: np.ndarray, test_X, test_ll: np.ndarray, res: int = 1, epochs: int = 300,
                   lr: float = 1e-2, weight_decay: float = 1e-4, seed: int = 0) -> np.ndarray:
    """A linear softmax classifier over the training set's H3 cells at ``res`` on (N, F) features (standardised
    on the training set), predicting the most probable cell's centre -> (N_test,) km errors. The same fixed
    recipe (full-batch AdamW) for every feature set, so that the comparison is of the features."""
    Xtr, Xte = (torch.as_tensor(np.asarray(x), dtype=torch.float32) for x in (train_X, test_X))
    mu, sd = Xtr.mean(0), Xtr.std(0).clamp_min(1e-6)
    Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    cells = h3_cells(train_ll[:, 0], train_ll[:, 1], res)
    classes, y = np.unique(cells, return_inverse=True)
    torch.manual_seed(seed)
    lin = nn.Linear(Xtr.shape[1], len(classes))
    opt = torch.optim.AdamW(lin.parameters(), lr=lr, weight_decay=weight_decay)
    yt = torch.as_tensor(y)
    for _ in range(epochs):
        loss = nn.functional.cross_entropy(lin(Xtr), yt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = h3_centers(classes[lin(Xte).argmax(1).numpy()])
    return haversine(pred[:, 0], pred[:, 1], test_ll[:, 0], test_ll[:, 1])


def atom_spectrograms(acts: torch.Tensor, offsets: torch.Tensor, images, spec_cfg, which, top: int = 10) -> np.ndarray:
    """Mean spectrogram window of each atom's ``top`` most activating windows -> (len(which), 128, 512) float.

    ``acts`` (W, M) window activations in the order of :func:`soundloc.zoo.window_embeddings` (recording
    r owns rows offsets[r]:offsets[r+1]), ``images`` the recordings' (128, T) uint8 spectrograms."""
    off = np.asarray(offsets)
    out = []
    for m in which:
        vals, idx = acts[:, m].topk(min(top, len(acts)))
        idx = idx[vals > 0].numpy()
        rec = np.searchsorted(off, idx, side="right") - 1
        wins = [spec.eval_windows(images[r], spec_cfg)[i - off[r]].astype(np.float32) for r, i in zip(rec, idx)]
        out.append(np.mean(wins, 0) if wins else np.zeros((spec_cfg.n_mels, spec_cfg.window_frames)))
    return np.stack(out)


def atoms_figure(mean_windows: np.ndarray, desc: pd.DataFrame, spec_cfg, title: str):
    """(A, 128, 512) mean spectrogram windows + their rows of :func:`describe_atoms` -> a figure, one panel per atom."""
    import matplotlib.pyplot as plt

    A = len(mean_windows)
    cols = min(4, A)
    rows = -(-A // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    top_hz = spec_cfg.fmax
    secs = spec_cfg.window_frames * spec_cfg.hop / spec_cfg.sr
    for k, ax in enumerate(axes.ravel()):
        if k >= A:
            ax.axis("off")
            continue
        r = desc.iloc[k]
        ax.imshow(mean_windows[k], origin="lower", aspect="auto", cmap="magma", extent=(0, secs, 0, 1))
        ticks = [500, 2000, 5000, 10000]  # mel axis: label a few frequencies at their mel positions
        mel0, mel1 = spec.hz_to_mel(spec_cfg.fmin), spec.hz_to_mel(top_hz)
        ax.set_yticks([(spec.hz_to_mel(f) - mel0) / (mel1 - mel0) for f in ticks], [f"{f / 1000:g}k" for f in ticks])
        ax.set_title(f"atom {int(r['atom'])}: {r['top species']} ({r['top species share %']:.0f} %)\n"
                     f"peak {r['peak Hz (median)']:.0f} Hz, active {r['active %']:.1f} %", fontsize=8)
        ax.set_xlabel("s", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- real recordings: BirdNET window embeddings
BAND_EDGES_HZ = np.geomspace(150.0, 15000.0, 41)  # 40 log-spaced bands, BirdNET's frequency range
BAND_HZ = np.sqrt(BAND_EDGES_HZ[:-1] * BAND_EDGES_HZ[1:])  # (40,) band centres
BAND_NFFT = 4096  # 11.7 Hz bins at 48 kHz: narrower than the narrowest band (17 Hz), so no band is empty


def band_excess(wave: np.ndarray, sr: int, starts: np.ndarray, window_s: float = WINDOW_S) -> np.ndarray:
    """(T,) waveform, (W,) window starts s -> (W, 40) float32 dB: each band's mean level over the window above
    that band's median over the whole clip (its floor; >= 0, so broadband noise favours no band)."""
    f, t, P = signal.spectrogram(np.asarray(wave, np.float32), fs=sr, nperseg=BAND_NFFT, noverlap=BAND_NFFT // 2)
    band = np.digitize(f, BAND_EDGES_HZ) - 1
    M = np.zeros((len(BAND_HZ), len(f)), np.float32)
    ok = (band >= 0) & (band < len(BAND_HZ))
    M[band[ok], np.flatnonzero(ok)] = 1.0
    M /= M.sum(1, keepdims=True).clip(1)
    db = 10 * np.log10(M @ P + 1e-12)  # (B, frames)
    ex = np.clip(db - np.median(db, axis=1, keepdims=True), 0, None)
    cs = np.concatenate([np.zeros((len(BAND_HZ), 1)), ex.cumsum(1)], 1)
    lo, hi = np.searchsorted(t, starts), np.searchsorted(t, np.asarray(starts) + window_s)
    return ((cs[:, hi] - cs[:, lo]) / np.maximum(hi - lo, 1)).T.astype(np.float32)


def clip_hour(name: str) -> float:
    """A file name's clock time ``..._YYYYMMDD_HHMMSS`` -> hour of day (float), NaN when it has none."""
    m = re.search(r"_(\d{8})_(\d{2})(\d{2})(\d{2})$", Path(name).stem)
    return float(m[2]) + float(m[3]) / 60 + float(m[4]) / 3600 if m else np.nan


@dataclass
class RealWindows:
    """BirdNET's windows of some real recordings: embeddings and what describes them."""

    emb: np.ndarray  # (N, 1024) float32 BirdNET embeddings
    clip: np.ndarray  # (N,) index into files
    start: np.ndarray  # (N,) window start within its clip, s
    band: np.ndarray  # (N, 40) float32 dB above the clip's floor per band (BAND_HZ)
    files: list  # (C,) file names

    @property
    def hour(self) -> np.ndarray:
        """(N,) hour of day of each window's start (NaN where the file name has no clock time)."""
        return (np.array([clip_hour(f) for f in self.files])[self.clip] + self.start / 3600) % 24

    @property
    def peak_hz(self) -> np.ndarray:
        """(N,) centre of each window's band standing highest above its floor, Hz."""
        return BAND_HZ[self.band.argmax(1)]


def real_windows(files: Sequence, overlap: float = 0.0, detector: BirdNETDetector | None = None) -> RealWindows:
    """Audio files -> RealWindows of all their BirdNET windows, cached on disk by (model, file contents, overlap)."""
    det = detector or get_detector()
    files = [Path(f) for f in files]
    hashes = [(f.name, pooch.file_hash(str(f), alg="sha1")) for f in files]
    key = digest({"model": f"{det.name}-{det._digest}", "overlap": float(overlap),
                  "bands": [BAND_EDGES_HZ.tolist(), BAND_NFFT], "files": hashes})
    cp = paths.cache_dir("birdnet_embed") / f"windows-{key}.npz"
    with file_lock(lock_path(cp)):
        if not cp.exists():
            det.prefetch(files, overlap)
            parts = []
            for i, f in enumerate(files):
                e, st = det.embed(f, overlap)
                parts.append((e, np.full(len(e), i), st, band_excess(load_audio(f, sr=SR), SR, st)))
            emb, clip, start, band = (np.concatenate(x) for x in zip(*parts))
            with atomic_path(cp) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, emb=emb, clip=clip, start=start, band=band, files=np.array([f.name for f in files]))
        z = np.load(cp)
        return RealWindows(z["emb"], z["clip"], z["start"], z["band"], [str(x) for x in z["files"]])


def linear_probe(train_X, train_y, test_X, test_y, seed: int = 0) -> dict:
    """A multinomial logistic regression (scikit-learn's L-BFGS, C = 1) on (N, F) features standardised on the
    training set -> {"accuracy %", "majority %"} on the test set (majority: always the training set's commonest
    label; a test label unseen in training is an error). scikit-learn rather than torch: for a few hundred
    rows, torch's per-step thread synchronisation would dominate on a busy machine."""
    ty, yr = np.asarray(test_y, str), np.asarray(train_y, str)
    labels, counts = np.unique(yr, return_counts=True)
    major = labels[counts.argmax()]
    if len(labels) < 2:
        pred = np.full(len(ty), major)
    else:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
        pred = clf.fit(np.asarray(train_X, np.float64), yr).predict(np.asarray(test_X, np.float64))
    return {"accuracy %": 100 * float(np.mean(pred == ty)), "majority %": 100 * float(np.mean(ty == major))}


def atoms_band_figure(band: np.ndarray, acts: torch.Tensor, desc: pd.DataFrame, title: str, top: int = 20):
    """(N, 40) band levels, (N, M) activations, rows of :func:`describe_atoms` -> a figure, one panel per atom:
    the mean band level of its ``top`` most activating windows beside the mean of all windows."""
    import matplotlib.pyplot as plt

    A = len(desc)
    cols = min(4, A)
    rows = -(-A // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False, sharey=True)
    for k, ax in enumerate(axes.ravel()):
        if k >= A:
            ax.axis("off")
            continue
        r = desc.iloc[k]
        vals, idx = acts[:, int(r["atom"])].topk(min(top, len(acts)))
        idx = idx[vals > 0].numpy()
        ax.semilogx(BAND_HZ, band.mean(0), color="0.6", label="all windows")
        ax.semilogx(BAND_HZ, band[idx].mean(0), color="C3", label=f"top {len(idx)} windows")
        hour = r.get("hour (median)", np.nan)
        when = f", {int(hour):02d}:{int(60 * (hour % 1)):02d}" if np.isfinite(hour) else ""
        ax.set_title(f"atom {int(r['atom'])}: {r['top species']} ({r['top species share %']:.0f} %)\n"
                     f"peak {r['peak Hz (median)']:.0f} Hz{when}, active {r['active %']:.1f} %", fontsize=8)
        ax.set_xlabel("Hz", fontsize=7)
    axes[0, 0].set_ylabel("dB above clip floor")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
