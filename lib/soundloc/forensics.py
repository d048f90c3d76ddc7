"""Geo-forensics: does a recording's sound match the place and week it claims?

Two independent lines of evidence, combined into a verdict:

(a) species: every confidently detected species (detection score >= ``min_score``) whose range
    probability at the claimed place and week is below ``range_threshold`` is out of range; for
    each we give that probability and the nearest gallery point where the species does occur
    (probability >= ``range_threshold`` that week) with its distance.
(b) posterior: the audio's location posterior over the gallery (species-range geolocation of
    the same detections); the claimed place is snapped to its nearest gallery point and we report
    ``hpd_mass`` = posterior mass of all points at least as probable as it (the smallest credible
    region containing the claim: 0 = the best point, 1 = the least probable), its rank percentile,
    and the distance from the claim to the posterior's best point.

Verdict: ``inconsistent`` when at least ``min_out`` confident detections are out of range, or one
is and the claim lies outside the ``hpd_level`` credible region; ``suspicious`` when only one of
the two lines objects; otherwise ``consistent``. The defaults are conventions fixed in advance, not
tuned on the recordings the book reports: ``range_threshold=0.03`` is BirdNET's own location-filter
threshold (birdnetlib ``LOCATION_FILTER_THRESHOLD``), ``min_score=0.5`` the usual "confident
detection" cut for BirdNET scores, ``hpd_level=0.95`` a 95 % credible region.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .geo import haversine
from .locate import LocateOptions, locate_species, range_geolocator, week_from_date

VERDICTS = ("consistent", "suspicious", "inconsistent")


@dataclass(frozen=True)
class CheckConfig:
    """Named thresholds of :func:`check` (see the module docstring for where the defaults come from)."""

    range_threshold: float = 0.03  # range probability below which a species is out of range there and then
    min_score: float = 0.5  # detection score for a species to count as evidence
    hpd_level: float = 0.95  # claim outside this credible region of the audio posterior objects
    min_out: int = 2  # this many confident out-of-range species suffice for "inconsistent"

    def __post_init__(self):
        if not (0 < self.range_threshold < 1 and 0 < self.min_score < 1 and 0 < self.hpd_level < 1 and self.min_out >= 1):
            raise ValueError("range_threshold, min_score and hpd_level must lie in (0, 1), min_out >= 1")


@dataclass
class CheckReport:
    """The evidence and verdict for one (recording, claimed place, week)."""

    path: str
    claim: tuple  # (lat, lon) degrees
    week: int | None
    species: pd.DataFrame  # per confident species: scientific_name, score, p_claim, out_of_range, nearest_lat/lon/km
    hpd_mass: float  # posterior mass of gallery points at least as probable as the claim (0-1)
    percentile: float  # % of gallery points with a lower posterior than the claim's point
    best: tuple  # (lat, lon) of the posterior's best point
    distance_km: float  # claim -> best point
    verdict: str
    evidence: list = field(default_factory=list)  # one line per argument
    config: CheckConfig = CheckConfig()

    @property
    def out_of_range(self) -> pd.DataFrame:
        """The confident detections that are out of range at the claim."""
        return self.species[self.species.out_of_range]

    def to_dict(self) -> dict:
        """JSON-ready report."""
        return {"path": self.path, "claim": {"lat": self.claim[0], "lon": self.claim[1], "week": self.week},
                "verdict": self.verdict, "evidence": self.evidence, "hpd_mass": self.hpd_mass,
                "percentile": self.percentile, "best": {"lat": self.best[0], "lon": self.best[1]},
                "distance_km": self.distance_km, "species": json.loads(self.species.to_json(orient="records")),
                "config": vars(self.config)}

    def text(self) -> str:
        """Human-readable multi-line report."""
        lines = [f"{self.path}: claimed {self.claim[0]:.4f}, {self.claim[1]:.4f}"
                 + (f" (week {self.week} of 48)" if self.week else " (no date: year-round ranges)"),
                 f"verdict: {self.verdict.upper()}"] + [f"  - {e}" for e in self.evidence]
        return "\n".join(lines)


def _validate_claim(lat, lon) -> tuple[float, float]:
    lat, lon = float(lat), float(lon)
    if not (np.isfinite(lat) and np.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"claimed location ({lat}, {lon}) is not a latitude in [-90, 90] and longitude in [-180, 180]")
    return lat, lon


def check_species(species: pd.DataFrame, lat: float, lon: float, week: int | None = None, path: str = "",
                  config: CheckConfig = CheckConfig(), opts: LocateOptions = LocateOptions()) -> CheckReport:
    """Detected species (scientific_name, max_score) + a claimed place/week -> CheckReport.

    Works for any detector (BirdNET on real audio, the SimSounds classifier on simulated audio).
    """
    lat, lon = _validate_claim(lat, lon)
    loc = range_geolocator(opts.gallery, opts.preset, opts.device)
    model, pts = loc.model, loc.points
    conf = species[species.max_score >= config.min_score].reset_index(drop=True)
    idx, unknown = model.match(list(conf.scientific_name))
    conf = conf[~conf.scientific_name.isin(unknown)].reset_index(drop=True)
    # (a) ranges at the claim, and the nearest gallery point where each species occurs that week
    p_claim = model.prob(np.array([lat]), np.array([lon]), week, species_idx=idx)[0] if len(idx) else np.zeros(0)
    d_all = haversine(pts[:, 0], pts[:, 1], lat, lon)  # (N,)
    near = np.full((len(idx), 3), np.nan)
    if len(idx):
        P = loc.species_maps(np.sort(idx), week)[np.argsort(np.argsort(idx))]  # (K, N) in idx order
        occ = P >= config.range_threshold
        dm = np.where(occ, d_all[None], np.inf)
        j = dm.argmin(1)
        ok = np.isfinite(dm[np.arange(len(j)), j])
        near[ok] = np.column_stack([pts[j[ok], 0], pts[j[ok], 1], dm[np.arange(len(j)), j][ok]])
    rows = pd.DataFrame({"scientific_name": conf.scientific_name,
                         "common_name": conf.get("common_name", pd.Series([""] * len(conf))),
                         "score": conf.max_score.astype(float), "p_claim": p_claim.astype(float),
                         "out_of_range": p_claim < config.range_threshold,
                         "nearest_lat": near[:, 0], "nearest_lon": near[:, 1], "nearest_km": near[:, 2]})
    # (b) the audio posterior (all detections, weighted by score) vs the claim
    o = locate_species([list(species.scientific_name)], [list(species.max_score)], [week], opts)[0]
    post = o.posterior
    c = int(d_all.argmin())
    hpd = float(post[post >= post[c]].sum())
    pct = float(100.0 * (post < post[c]).mean())
    dist = float(haversine(o.lat, o.lon, lat, lon))
    # (c) verdict
    n_out = int(rows.out_of_range.sum())
    outside = hpd > config.hpd_level
    ev = []
    if len(rows) == 0:
        ev.append(f"no species detected with score >= {config.min_score:g}: the species line has no evidence")
    for r in rows[rows.out_of_range].itertuples():
        where = (f"nearest occurrence that week {r.nearest_km:,.0f} km away ({r.nearest_lat:.1f}, {r.nearest_lon:.1f})"
                 if np.isfinite(r.nearest_km) else "occurs nowhere on the gallery that week")
        ev.append(f"{r.scientific_name} (score {r.score:.2f}) is out of range here: p = {r.p_claim:.3f} < "
                  f"{config.range_threshold:g}; {where}")
    n_in = len(rows) - n_out
    if n_in:
        ev.append(f"{n_in} of {len(rows)} confident species are in range here")
    ev.append(f"the claim lies {'outside' if outside else 'inside'} the {100 * config.hpd_level:g} % credible region "
              f"of the audio posterior (mass at least as probable: {hpd:.3f}; percentile {pct:.1f}); "
              f"{dist:,.0f} km from its best point ({o.lat:.1f}, {o.lon:.1f})")
    if n_out >= config.min_out or (n_out >= 1 and outside):
        verdict = "inconsistent"
    elif n_out >= 1 or outside:
        verdict = "suspicious"
    else:
        verdict = "consistent"
    return CheckReport(path, (lat, lon), week, rows, hpd, pct, (o.lat, o.lon), dist, verdict, ev, config)


def check(audio, lat: float, lon: float, date=None, config: CheckConfig = CheckConfig(),
          opts: LocateOptions = LocateOptions()) -> CheckReport:
    """Audio file + claimed lat/lon [+ date 'YYYY-MM-DD'] -> CheckReport (BirdNET detections).

    AudioError (a ValueError naming the file) for unusable audio; ValueError for a bad claim/date.
    """
    from .detect import get_detector

    lat, lon = _validate_claim(lat, lon)
    week = week_from_date(date)
    det = get_detector().detect(audio, opts.overlap, opts.sensitivity)
    return check_species(det.summary(opts.min_conf), lat, lon, week, str(audio), config, opts)


# ---------------------------------------------------------------- other detectors and sides
def classifier_species(model, wave: np.ndarray, spec_cfg, species_names, min_score: float = 0.0) -> pd.DataFrame:
    """SimSounds species classifier (a GeoModel with a SpeciesHead) on one (T,) waveform at ``spec_cfg.sr`` ->
    per species: scientific_name, max_score (max over stride-256 windows of the softmax), mean_score; sorted."""
    import torch

    from . import spectrogram as spec

    net = getattr(model, "module", model)
    dev = next(net.parameters()).device
    w = spec.eval_windows(spec.compute_spectrogram(np.asarray(wave, np.float32), spec_cfg), spec_cfg)
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            s = net.head.scores(net(spec.to_model_input(w, size=net.encoder.cfg.input_size, cfg=spec_cfg,
                                                        device=dev)).float()).cpu().numpy()  # (W, K)
    finally:
        net.train(was)
    df = pd.DataFrame({"scientific_name": list(species_names), "max_score": s.max(0), "mean_score": s.mean(0)})
    return df[df.max_score >= min_score].sort_values("max_score", ascending=False, ignore_index=True)


def out_of_range_candidates(names, lat: float, lon: float, week: int | None, threshold: float = 0.03,
                            opts: LocateOptions = LocateOptions()) -> pd.DataFrame:
    """Species names -> those the range model covers with p < threshold at (lat, lon, week): name, p (ascending)."""
    model = range_geolocator(opts.gallery, opts.preset, opts.device).model
    idx, unknown = model.match(list(names))
    known = [n for n in names if n not in set(unknown)]
    p = model.prob(np.array([lat]), np.array([lon]), week, species_idx=idx)[0]
    df = pd.DataFrame({"scientific_name": known, "p": p})
    return df[df.p < threshold].sort_values("p", ignore_index=True)


CLIP_REPO = "openai/clip-vit-large-patch14"


def find_clip_weights(path=None):
    """A local CLIP ViT-L/14 folder (argument, $SOUNDLOC_CLIP, or the Hugging Face cache) -> Path | None. No network."""
    import os
    from pathlib import Path

    cands = [path, os.environ.get("SOUNDLOC_CLIP")]
    hub = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    snaps = hub / f"models--{CLIP_REPO.replace('/', '--')}" / "snapshots"
    if snaps.is_dir():
        cands += sorted(snaps.iterdir())
    for c in cands:
        if c and (Path(c) / "config.json").is_file():
            return Path(c)
    return None


def image_geolocate(image, clip_path, top_k: int = 5) -> pd.DataFrame:
    """Image file + local CLIP weights -> GeoCLIP's top-k locations: rank, lat, lon, prob (the image side)."""
    from geoclip import GeoCLIP

    model = GeoCLIP(clip_path=str(clip_path)).eval()
    gps, prob = model.predict(str(image), top_k=top_k)
    gps, prob = np.asarray(gps), np.asarray(prob)
    return pd.DataFrame({"rank": np.arange(1, len(prob) + 1), "lat": gps[:, 0], "lon": gps[:, 1], "prob": prob})
