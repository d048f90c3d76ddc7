"""Location encoders: GeoCLIP's (frozen, weights shipped in the geoclip wheel) and cached gallery embeddings."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from . import paths
from .io import atomic_path, file_lock
from .reference import geoclip_file

GEOCLIP_DIM = 512


def geoclip_weights_path() -> Path:
    """Path of ``location_encoder_weights.pth`` inside the installed geoclip wheel."""
    return geoclip_file("model", "weights", "location_encoder_weights.pth")


def build_geoclip_encoder() -> torch.nn.Module:
    """GeoCLIP's LocationEncoder architecture with random weights (no I/O)."""
    from geoclip import LocationEncoder

    return LocationEncoder(from_pretrained=False)


def load_geoclip_encoder(device="cpu") -> torch.nn.Module:
    """GeoCLIP LocationEncoder with its released weights (weights_only load), frozen, in eval mode."""
    enc = build_geoclip_encoder()
    enc.load_state_dict(torch.load(geoclip_weights_path(), map_location="cpu", weights_only=True))
    enc.requires_grad_(False)
    return enc.to(device).eval()


@torch.inference_mode()
def embed_locations(encoder: torch.nn.Module, points: np.ndarray, batch: int = 8192, normalize: bool = True) -> torch.Tensor:
    """(N, 2) lat/lon degrees -> (N, 512) float32 location embeddings (L2-normalised by default)."""
    dev = next(encoder.parameters()).device
    pts = torch.as_tensor(np.asarray(points, np.float32))
    out = torch.empty((len(pts), GEOCLIP_DIM), dtype=torch.float32)
    for i in range(0, len(pts), batch):
        e = encoder(pts[i:i + batch].to(dev)).float()
        out[i:i + batch] = (torch.nn.functional.normalize(e, dim=1) if normalize else e).cpu()
    return out


def gallery_embeddings(points: np.ndarray, name: str, device="cpu", encoder=None) -> torch.Tensor:
    """Cached GeoCLIP embeddings of a gallery -> (N, 512) float32, normalised (data/cache/embeddings)."""
    digest = hashlib.sha1(np.ascontiguousarray(points, np.float64).tobytes()).hexdigest()[:12]
    path = paths.cache_dir("embeddings") / f"geoclip__{name}-{digest}.npy"
    with file_lock(path.with_name(path.name + ".lock")):  # a second process embedding it waits, then loads it
        if path.exists():
            arr = np.load(path, mmap_mode="r")
            if arr.shape == (len(points), GEOCLIP_DIM):
                return torch.from_numpy(np.ascontiguousarray(arr))
        emb = embed_locations(encoder or load_geoclip_encoder(device), points)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, emb.numpy())
    return emb


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
