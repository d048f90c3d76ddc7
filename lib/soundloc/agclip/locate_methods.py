"""``soundloc locate --method agclip|fused``: AG-CLIP checkpoints as methods of the locate registry
(registered there by path, ``soundloc.locator.LAZY_METHODS``: this module is imported on first use)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from .. import spectrogram as spec
from ..audio import load_audio
from ..range_geolocation import gallery, gallery_areas, location_prior
from ..locator import MethodOutput, get_method
from ..location_encoders import gallery_embeddings
from ..models import load_model
from .model import AGCLIPHead, load_location_encoder

__all__ = ["recording_features", "agclip_logits", "locate_agclip", "locate_fused"]


def recording_features(model, paths: Sequence[str], device="cpu") -> torch.Tensor:
    """Audio files -> (R, E) normalised AG-CLIP recording features (window features averaged)."""
    dev = torch.device(device)
    model = model.to(dev).eval()
    cfg = spec.SpecConfig()
    out = []
    with torch.no_grad():
        for p in paths:
            win = spec.eval_windows(spec.compute_spectrogram(load_audio(p, sr=cfg.sr), cfg, dev), cfg)
            x = spec.to_model_input(win, size=model.encoder.cfg.input_size, cfg=cfg, device=dev)
            f = model.head.scores(model.head(model.encoder(x)))
            out.append(F.normalize(f.mean(0, keepdim=True), dim=1).cpu())
    return torch.cat(out)


def _load_agclip(path: str):
    model = load_model(path)
    if not isinstance(model.head, AGCLIPHead) or not model.head.E:
        raise ValueError(f"{path}: not an AG-CLIP checkpoint with a location decoder (head {type(model.head).__name__})")
    return model


def agclip_logits(paths, opts) -> tuple[np.ndarray, torch.Tensor]:
    """Audio files -> gallery points (N, 2) and (R, N) AG-CLIP logits (scale x cosine, no prior)."""
    model = _load_agclip(opts.model)
    head = model.head
    pts = gallery(opts.gallery)
    g = (gallery_embeddings(pts, opts.gallery, encoder=load_location_encoder()) if head.loc_enc is None
         else head.gallery_embeddings(pts))
    q = recording_features(model, paths, opts.device)
    return pts, (q @ F.normalize(g.float(), dim=1).T) / head.temperature


def _outputs(pts: np.ndarray, logits: torch.Tensor, notes: list[str], areas: np.ndarray | None = None):
    """(N, 2) gallery, (R, N) log densities, (N,) cell areas km^2 | None -> R MethodOutputs: the posterior
    mass of every point (softmax(logit + log area)) and the densest point."""
    la = 0.0 if areas is None else torch.as_tensor(np.log(areas), dtype=torch.float64)[None]
    post = torch.softmax(logits.double() + la, dim=1).numpy()
    best = logits.argmax(1).numpy()
    return [MethodOutput(pts, post[r], float(pts[best[r], 0]), float(pts[best[r], 1]), None, list(notes), areas)
            for r in range(len(post))]


def locate_agclip(paths, weeks, opts):
    """AG-CLIP retrieval over the gallery x a GeoCLIP photo-density location prior (weight opts.prior_weight)."""
    pts, logits = agclip_logits(paths, opts)
    if opts.prior_weight > 0:
        logits = logits + opts.prior_weight * torch.as_tensor(location_prior(pts, 200.0, cache_key=opts.gallery),
                                                              dtype=logits.dtype)[None]
    return _outputs(pts, logits, [f"AG-CLIP model {opts.model}; location prior weight {opts.prior_weight:g}"],
                    gallery_areas(pts, opts.gallery))


def locate_fused(paths, weeks, opts):
    """Product of experts: AG-CLIP posterior x (BirdNET detections -> species-range posterior)^w."""
    pts, logits = agclip_logits(paths, opts)
    ranges = get_method("ranges")(paths, weeks, opts)
    if ranges and not np.array_equal(ranges[0].points, pts):
        raise ValueError("fused: the AG-CLIP and range posteriors are on different galleries")
    areas = gallery_areas(pts, opts.gallery)
    lr = np.log(np.maximum(np.stack([r.posterior for r in ranges]), 1e-30))  # log masses of the range posterior
    lr = torch.as_tensor(lr if areas is None else lr - np.log(areas), dtype=logits.dtype)  # -> log densities
    outs = _outputs(pts, logits + opts.fusion_weight * lr,
                    [f"AG-CLIP model {opts.model} x species ranges^{opts.fusion_weight:g}"], areas)
    for o, r in zip(outs, ranges):
        o.species, o.notes = r.species, o.notes + r.notes
    return outs
