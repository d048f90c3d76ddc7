"""Location encoders: GeoCLIP's (frozen, weights shipped in the geoclip wheel) and cached gallery embeddings."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from . import paths
from .reference import geoclip_file

GEOCLIP_DIM = 512


def geoclip_weights_path() -> Path:
    """Path of ``location_encoder_weights.pth`` inside the installed geoclip wheel."""
    return geoclip_file("model", "weights", "location_encoder_weights.pth")


# GeoCLIP's location encoder, written out here with the same modules, parameter names and operations as
# ``geoclip.LocationEncoder`` (its released state dict loads as is, and tests check that the outputs are
# bit-identical): ``import geoclip`` also imports its CLIP image encoder and transformers, about 4 s per
# process, which every chapter and test worker would otherwise pay for a 27-tensor MLP.
_EE = (1.340264, -0.081106, 0.000893, 0.003796, 66.50336)  # Equal Earth coefficients A1..A4 and scale SF


def equal_earth_projection(latlon: torch.Tensor) -> torch.Tensor:
    """(B, 2) lat/lon degrees -> (B, 2) Equal Earth x, y, scaled as GeoCLIP does (SF / 180)."""
    a1, a2, a3, a4, sf = _EE
    lat, lon = torch.deg2rad(latlon[:, 0]), torch.deg2rad(latlon[:, 1])
    theta = torch.asin((torch.sqrt(torch.tensor(3.0)) / 2) * torch.sin(lat))
    den = 3 * (9 * a4 * theta**8 + 7 * a3 * theta**6 + 3 * a2 * theta**2 + a1)
    x = (2 * torch.sqrt(torch.tensor(3.0)) * lon * torch.cos(theta)) / den
    y = a4 * theta**9 + a3 * theta**7 + a2 * theta**3 + a1 * theta
    return (torch.stack((x, y), dim=1) * sf) / 180


class _GaussianEncoding(torch.nn.Module):
    """Random Fourier features: (B, 2) -> (B, 2 * 256) [cos 2 pi v b^T, sin 2 pi v b^T] (b: fixed (256, 2))."""

    def __init__(self, encoded_size: int = 256, input_size: int = 2):
        super().__init__()
        self.b = torch.nn.Parameter(torch.zeros(encoded_size, input_size), requires_grad=False)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        with torch.autocast(v.device.type, enabled=False):  # phases up to ~2^8 cycles: always float32
            vp = 2 * np.pi * v.float() @ self.b.T
            return torch.cat((torch.cos(vp), torch.sin(vp)), dim=-1)


class _Capsule(torch.nn.Module):
    """One GeoCLIP scale: RFF (512) -> 3 x (Linear 1024 + ReLU) -> Linear 512."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.capsule = nn.Sequential(_GaussianEncoding(), nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 1024),
                                     nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(1024, GEOCLIP_DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.capsule(x))


class GeoCLIPLocationEncoder(torch.nn.Module):
    """GeoCLIP's location encoder (sigmas 2^0, 2^4, 2^8 live in the weights' b): (B, 2) lat/lon degrees -> (B, 512)."""

    def __init__(self, n_scales: int = 3):
        super().__init__()
        self.n = n_scales
        for i in range(n_scales):
            self.add_module(f"LocEnc{i}", _Capsule())

    def forward(self, location: torch.Tensor) -> torch.Tensor:
        location = equal_earth_projection(location)
        features = torch.zeros(location.shape[0], GEOCLIP_DIM).to(location.device)
        for i in range(self.n):
            features += self._modules[f"LocEnc{i}"](location)
        return features


def build_geoclip_encoder() -> torch.nn.Module:
    """GeoCLIP's location-encoder architecture with zero RFF matrices and random weights (no I/O)."""
    return GeoCLIPLocationEncoder()


def load_geoclip_encoder(device="cpu") -> torch.nn.Module:
    """GeoCLIP LocationEncoder with its released weights (weights_only load), frozen, in eval mode."""
    enc = build_geoclip_encoder()
    enc.load_state_dict(torch.load(geoclip_weights_path(), map_location="cpu", weights_only=True))
    enc.requires_grad_(False)
    return enc.to(device).eval()


PRECISIONS = ("auto", "fp32", "bf16")


def embedding_precision(precision: str = "auto", device=None) -> str:
    """"auto" | "fp32" | "bf16" -> the precision GeoCLIP embeddings are computed in on ``device``.

    "auto" is "bf16" where bf16 matrix products run in hardware (:func:`soundloc.devices.native_bf16`),
    else "fp32". bf16 runs the MLP layers in bfloat16 (the random Fourier features stay float32):
    2.2-2.6x faster on an AVX512-BF16 CPU (bench/bench_bf16.py), cosine >= 0.9999 to the float32 embeddings (tested).
    """
    from .devices import native_bf16

    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {PRECISIONS}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


@torch.inference_mode()
def embed_locations(encoder: torch.nn.Module, points: np.ndarray, batch: int = 8192, normalize: bool = True,
                    precision: str = "auto") -> torch.Tensor:
    """(N, 2) lat/lon degrees -> (N, 512) float32 location embeddings (L2-normalised by default).

    ``precision``: see :func:`embedding_precision` (the output is float32 either way).
    """
    dev = next(encoder.parameters()).device
    bf16 = embedding_precision(precision, dev) == "bf16"
    pts = torch.as_tensor(np.asarray(points, np.float32))
    out = torch.empty((len(pts), GEOCLIP_DIM), dtype=torch.float32)
    for i in range(0, len(pts), batch):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            e = encoder(pts[i:i + batch].to(dev)).float()
        out[i:i + batch] = (torch.nn.functional.normalize(e, dim=1) if normalize else e).cpu()
    return out


GALLERY_PART = 16384  # points per cached part of a gallery's embeddings (a multiple of embed_locations' batch)


def gallery_embeddings(points: np.ndarray, name: str, device="cpu", encoder=None, precision: str = "auto") -> torch.Tensor:
    """Cached GeoCLIP embeddings of a gallery -> (N, 512) float32, normalised (data/cache/embeddings).

    Cached in parts of ``GALLERY_PART`` points (:func:`soundloc.io.build_parts`): processes embedding
    the same gallery at once share the parts instead of one waiting for the other. The folder names
    the precision they were computed in (bf16 folders carry ``-bf16``).
    """
    from .io import build_parts

    points = np.asarray(points, np.float64).reshape(-1, 2)
    digest = hashlib.sha1(np.ascontiguousarray(points).tobytes()).hexdigest()[:12]
    dev = next(encoder.parameters()).device if encoder is not None else device
    prec = embedding_precision(precision, dev)
    tag = "geoclip" if prec == "fp32" else f"geoclip-{prec}"
    folder = paths.cache_dir("embeddings", f"{tag}__{name}-{digest}")
    starts = range(0, len(points), GALLERY_PART)
    parts = [folder / f"part-{k:04d}.npy" for k in range(len(starts))]
    rows = [min(GALLERY_PART, len(points) - s) for s in starts]

    def done(k, path):
        try:
            return np.load(path, mmap_mode="r").shape == (rows[k], GEOCLIP_DIM)
        except (OSError, ValueError):
            return False

    def build(k, tmp):
        nonlocal encoder
        if encoder is None:  # loaded only when a part is missing
            encoder = load_geoclip_encoder(device)
        emb = embed_locations(encoder, points[starts[k]:starts[k] + rows[k]], precision=prec)
        with open(tmp, "wb") as f:
            np.save(f, emb.numpy())

    build_parts(parts, build, done)
    if not parts:
        return torch.empty((0, GEOCLIP_DIM), dtype=torch.float32)
    return torch.from_numpy(np.concatenate([np.load(p) for p in parts]))


@torch.inference_mode()
def retrieve(queries: torch.Tensor, gallery: torch.Tensor, k: int = 1, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q, D) queries x (N, D) gallery -> top-k (Q, k) cosine similarities and indices, chunked over queries."""
    q = torch.nn.functional.normalize(queries.float(), dim=1)
    g = gallery.to(q.device)
    vals, idx = [], []
    for i in range(0, len(q), chunk):
        v, j = (q[i:i + chunk] @ g.T).topk(k, dim=1)
        vals.append(v)
        idx.append(j)
    return torch.cat(vals), torch.cat(idx)
