"""Geo-forensics: does a recording's sound match the place and week it claims?

Two independent lines of evidence, combined into a verdict:

(a) species: every confidently detected species (detection score >= ``min_score``) whose range
    probability at the claimed place and week is below ``range_threshold`` is out of range; for
    each we give that probability and the nearest gallery point where the species does occur
    (probability >= ``range_threshold`` that week) with its distance.
(b) posterior: the audio's location posterior over the gallery (species-range geolocation of
    the same detections); the claimed place is snapped to its nearest gallery point and we report
    ``hpd_mass`` = posterior mass of all points at least as dense as it (per km^2: the smallest
    credible region containing the claim: 0 = the best point, 1 = the least probable), its rank
    percentile, and the distance from the claim to the posterior's best (densest) point. The report
    carries that posterior, so a figure of it (:func:`plot_check`) shows what the numbers describe.

Verdict: ``inconsistent`` when at least ``min_out`` confident detections are out of range, or one
is and the claim lies outside the ``hpd_level`` credible region; ``suspicious`` when only one of
the two lines objects; otherwise ``consistent``. The posterior line objects only when the audio moved
the posterior from the location prior by at least ``WEAK_KL_NATS`` (soundloc.locator: below it
``locate`` warns ``weak_evidence``): a posterior that is mostly the photo-density prior puts remote places
outside its credible region because few photos are taken there, not because of what was heard.

The defaults are conventions fixed in advance, not tuned on the recordings the book reports:
``range_threshold=0.03`` is BirdNET's own location-filter threshold (birdnetlib
``LOCATION_FILTER_THRESHOLD``), ``min_score=0.5`` the usual "confident
detection" cut for BirdNET scores, ``hpd_level=0.95`` a 95 % credible region. They are BirdNET
conventions: for another detector (the SimSounds classifier) choose them on validation recordings with
:func:`calibrate_species_line` and :func:`calibrate_hpd_level` (chapter 07 does), and evaluate with the
batched :func:`check_scores`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .audio import load_audio
from .data.sim import splice
from .detect import get_detector
from .evidence import kl_nats
from .locator import (WEAK_KL_NATS, LocateOptions, calibrated_posterior, locate_species, plot_posterior,
                      range_geolocator, week_from_date)
from .sphere import haversine

VERDICTS = ("consistent", "suspicious", "inconsistent")


@dataclass(frozen=True)
class CheckConfig:
    """Named thresholds of :func:`check` (see the module docstring for where the defaults come from)."""

    range_threshold: float = 0.03  # range probability below which a species is out of range there and then
    min_score: float = 0.5  # detection score for a species to count as evidence
    hpd_level: float = 0.95  # claim outside this credible region of the audio posterior objects
    min_out: int = 2  # this many confident out-of-range species suffice for "inconsistent"

    def __post_init__(self):
        bad = [f"{k} {getattr(self, k)!r} must lie in (0, 1)" for k in ("range_threshold", "min_score", "hpd_level")
               if not 0 < getattr(self, k) < 1] + ([f"min_out {self.min_out!r} must be >= 1"] if self.min_out < 1 else [])
        if bad:
            raise ValueError("; ".join(bad))


@dataclass
class CheckReport:
    """The evidence and verdict for one (recording, claimed place, week)."""

    path: str
    claim: tuple  # (lat, lon) degrees
    week: int | None
    species: pd.DataFrame  # per confident species: scientific_name, score, p_claim, out_of_range, nearest_lat/lon/km
    hpd_mass: float  # posterior mass of gallery points at least as dense as the claim's (0-1)
    percentile: float  # % of gallery points with a lower posterior density than the claim's point
    best: tuple  # (lat, lon) of the posterior's best (densest) point
    distance_km: float  # claim -> best point
    verdict: str
    evidence: list = field(default_factory=list)  # one line per argument
    config: CheckConfig = CheckConfig()
    points: np.ndarray | None = None  # (N, 2) gallery lat/lon of the posterior below
    posterior: np.ndarray | None = None  # (N,) the posterior mass that hpd_mass, percentile, best, distance come from
    areas: np.ndarray | None = None  # (N,) gallery cell areas km^2 (None: equal weights)
    posterior_of: str = "all detected species, weighted by their scores"  # which evidence the posterior holds
    info_gain_nats: float = float("nan")  # KL(posterior || prior): below WEAK_KL_NATS the posterior line cannot object

    @property
    def density(self) -> np.ndarray:
        """(N,) the posterior per km^2 (per point when the gallery has equal weights), summing to 1 over points x areas."""
        return self.posterior if self.areas is None else self.posterior / self.areas

    @property
    def out_of_range(self) -> pd.DataFrame:
        """The confident detections that are out of range at the claim."""
        return self.species[self.species.out_of_range]

    def to_dict(self) -> dict:
        """JSON-ready report."""
        return {"path": self.path, "claim": {"lat": self.claim[0], "lon": self.claim[1], "week": self.week},
                "verdict": self.verdict, "evidence": self.evidence, "hpd_mass": self.hpd_mass,
                "percentile": self.percentile, "best": {"lat": self.best[0], "lon": self.best[1]},
                "distance_km": self.distance_km, "info_gain_nats": self.info_gain_nats, "species": json.loads(self.species.to_json(orient="records")),
                "config": vars(self.config)}

    def text(self) -> str:
        """Human-readable multi-line report."""
        lines = [f"{self.path}: claimed {self.claim[0]:.4f}, {self.claim[1]:.4f}"
                 + (f" (week {self.week} of 48)" if self.week else " (no date: year-round ranges)"),
                 f"verdict: {self.verdict.upper()}"] + [f"  - {e}" for e in self.evidence]
        return "\n".join(lines)


def verdicts(n_out: np.ndarray, outside: np.ndarray, min_out: int = 2) -> np.ndarray:
    """(R,) confident out-of-range counts + (R,) claim-outside-credible-region flags -> (R,) verdict strings."""
    n_out, outside = np.asarray(n_out), np.asarray(outside, bool)
    bad = (n_out >= min_out) | ((n_out >= 1) & outside)
    return np.where(bad, "inconsistent", np.where((n_out >= 1) | outside, "suspicious", "consistent"))


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
    # (b) the audio posterior (all detections, weighted by score), calibrated as `soundloc locate` calibrates it, vs the claim
    o = locate_species([list(species.scientific_name)], [list(species.max_score)], [week], opts)[0]
    post = calibrated_posterior(o)
    hpd, pct = (float(v[0]) for v in claim_credibility(post, pts, lat, lon, loc.areas))
    dist = float(haversine(o.lat, o.lon, lat, lon))
    # (c) verdict
    n_out = int(rows.out_of_range.sum())
    gain = kl_nats(post, o.prior) if o.evidence else 0.0  # no covered species: the posterior is the prior
    outside = hpd > config.hpd_level and gain >= WEAK_KL_NATS  # weak evidence: the prior's region, not a test
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
    if o.evidence:
        line = (f"the claim lies {'outside' if hpd > config.hpd_level else 'inside'} the {100 * config.hpd_level:g} % "
                f"credible region of the audio posterior (mass at least as probable: {hpd:.3f}; percentile {pct:.1f}); "
                f"{dist:,.0f} km from its best point ({o.lat:.1f}, {o.lon:.1f})")
        weak = f"information gain {gain:.2f} nats < {WEAK_KL_NATS:g}"
        if gain < WEAK_KL_NATS and hpd > config.hpd_level:
            line += (f"; but the evidence is weak ({weak}): that region is mostly the location prior (photo density), "
                     "so it does not count against the claim")
        elif gain < WEAK_KL_NATS:
            line += f" (weak evidence: {weak})"
        ev.append(line)
    else:
        ev.append("no species detected that the range model covers: the audio posterior is the location prior "
                  "(photo density) alone, which says nothing for or against the claim")
    verdict = str(verdicts(np.array([n_out]), np.array([outside]), config.min_out)[0])
    return CheckReport(path, (lat, lon), week, rows, hpd, pct, (o.lat, o.lon), dist, verdict, ev, config,
                       pts, post, loc.areas, info_gain_nats=gain)


def plot_check(report: CheckReport, title: str | None = None, ax=None, true=None, top: int = 4000):
    """CheckReport -> matplotlib axis: the report's own posterior (per km^2, the ``top`` densest points), its
    best point (red x, ``report.best``) and the claim (orange diamond); ``true``: (lat, lon) green star."""
    if report.posterior is None:
        raise ValueError("plot_check: the report carries no posterior (made by an older check_species)")
    d = report.density
    ax = plot_posterior(report.points, d / d.sum(), title or f"{report.path}: posterior of {report.posterior_of}",
                        true, report.best, ax=ax, top=top, label="posterior density (relative, per km²)"
                        if report.areas is not None else "posterior probability")
    ax.plot(report.claim[1], report.claim[0], "D", color="orange", mec="k", ms=10, zorder=3, label="claim")
    ax.legend(loc="lower left")
    return ax


def check(audio, lat: float, lon: float, date=None, config: CheckConfig = CheckConfig(),
          opts: LocateOptions = LocateOptions()) -> CheckReport:
    """Audio file + claimed lat/lon [+ date 'YYYY-MM-DD'] -> CheckReport (BirdNET detections).

    AudioError (a ValueError naming the file) for unusable audio; ValueError for a bad claim/date.
    """
    lat, lon = _validate_claim(lat, lon)
    week = week_from_date(date)
    det = get_detector().detect(audio, opts.overlap, opts.sensitivity)
    return check_species(det.summary(opts.min_conf), lat, lon, week, str(audio), config, opts)


# ---------------------------------------------------------------- other detectors and sides
def classifier_scores(model, waves, spec_cfg, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """SimSounds species classifier (a GeoModel with a SpeciesHead) on R (T_r,) waveforms at ``spec_cfg.sr``
    -> ((R, K) max over a clip's stride-256 windows, (R, K) mean over them) of the per-window softmax.

    The max is the reading for short events (a planted call in one window); the mean dilutes it by the
    number of windows. All windows of all clips run in batches of ``batch_size``.
    """
    import torch

    from . import spectrogram as spec
    from .devices import torch_threads

    net = getattr(model, "module", model)
    dev = next(net.parameters()).device
    imgs = spec.compute_spectrograms([np.asarray(w, np.float32).reshape(-1) for w in waves], spec_cfg)
    wins = [spec.eval_windows(im, spec_cfg) for im in imgs]
    counts = np.array([len(w) for w in wins])
    allw = np.concatenate(wins) if wins else np.zeros((0, 128, spec_cfg.window_frames), np.uint8)
    out = []
    was = net.training
    net.eval()
    try:
        with torch.no_grad(), torch_threads(dev):
            for s in range(0, len(allw), batch_size):
                x = spec.to_model_input(allw[s:s + batch_size], size=net.encoder.cfg.input_size, cfg=spec_cfg, device=dev)
                out.append(net.head.scores(net(x).float()).cpu().numpy())
    finally:
        net.train(was)
    k = len(net.head.species) if getattr(net.head, "species", None) else (out[0].shape[1] if out else 0)
    sc = np.concatenate(out) if out else np.zeros((0, k), np.float32)  # (sum W, K)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    if not len(waves):
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.float32)
    return np.maximum.reduceat(sc, starts, axis=0), np.add.reduceat(sc, starts, axis=0) / counts[:, None]


def species_frame(names, max_score: np.ndarray, mean_score: np.ndarray | None = None,
                  min_score: float = 0.0) -> pd.DataFrame:
    """K species names + (K,) scores -> scientific_name, max_score[, mean_score] rows with max_score >= min_score,
    sorted by max_score (the ``species`` input of :func:`check_species`)."""
    df = pd.DataFrame({"scientific_name": list(names), "max_score": np.asarray(max_score, float)})
    if mean_score is not None:
        df["mean_score"] = np.asarray(mean_score, float)
    return df[df.max_score >= min_score].sort_values("max_score", ascending=False, ignore_index=True)


def classifier_species(model, wave: np.ndarray, spec_cfg, species_names, min_score: float = 0.0) -> pd.DataFrame:
    """SimSounds species classifier on one (T,) waveform at ``spec_cfg.sr`` -> per species: scientific_name,
    max_score (max over stride-256 windows of the softmax), mean_score; sorted by max_score."""
    mx, mean = classifier_scores(model, [wave], spec_cfg)
    return species_frame(species_names, mx[0], mean[0], min_score)


def claim_credibility(posterior: np.ndarray, points: np.ndarray, lat, lon,
                      areas: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(R, N) posterior masses over (N, 2) gallery points + (R,) claimed lat/lon [+ (N,) cell areas km^2]
    -> ((R,) hpd_mass, (R,) percentile).

    The claim is snapped to its nearest gallery point; hpd_mass = posterior mass of all points at least as
    dense (mass / area; mass when ``areas`` is None) as it: the highest-density region that just contains the
    claim (0 = the best point, 1 = the least probable); percentile = % of points less dense.
    """
    post = np.atleast_2d(np.asarray(posterior, np.float64))
    dens = post if areas is None else post / np.asarray(areas, np.float64)[None]
    lat, lon = np.atleast_1d(np.asarray(lat, float)), np.atleast_1d(np.asarray(lon, float))
    c = haversine(points[None, :, 0], points[None, :, 1], lat[:, None], lon[:, None]).argmin(1)  # (R,)
    dc = dens[np.arange(len(dens)), c][:, None]
    return (post * (dens >= dc)).sum(1), 100.0 * (dens < dc).mean(1)


def calibrate_species_line(clean: np.ndarray, spliced: np.ndarray, p_true: np.ndarray, planted: np.ndarray,
                           score_grid, range_grid, max_false_rate: float = 0.05) -> tuple[dict, pd.DataFrame]:
    """Choose the species line's (min_score, range_threshold) on validation recordings.

    clean, spliced: (R, K) detection scores of R recordings unspliced / spliced with out-of-range calls;
    p_true: (R, K) range probabilities of the K species at each recording's true place and week;
    planted: (R, K) bool, the species spliced into each. A species is flagged when score >= min_score and
    p < range_threshold. Criterion: the largest planted-species recall among the grid points whose
    false-flag rate (share of clean recordings at their true place with any flag) is <= ``max_false_rate``;
    ties go to the lower false-flag rate, then the higher min_score. -> (chosen row as dict, the whole grid).
    """
    s = np.asarray(score_grid, float)[:, None, None, None]  # (S, 1, 1, 1)
    r = np.asarray(range_grid, float)[None, :, None, None]  # (1, G, 1, 1)
    low = p_true[None, None] < r  # (1, G, R, K)
    fc = (clean[None, None] >= s) & low  # (S, G, R, K)
    fs = (spliced[None, None] >= s) & low
    planted = np.asarray(planted, bool)
    grid = pd.DataFrame({
        "min_score": np.repeat(np.asarray(score_grid, float), len(range_grid)),
        "range_threshold": np.tile(np.asarray(range_grid, float), len(score_grid)),
        "false_flag_rate": fc.any(-1).mean(-1).ravel(),
        "planted_recall": ((fs & planted).sum((-1, -2)) / max(1, planted.sum())).ravel(),
        "other_flags_per_spliced": (fs & ~planted).sum((-1, -2)).ravel() / max(1, len(clean)),
    })
    ok = grid[grid.false_flag_rate <= max_false_rate]
    if ok.empty:
        raise ValueError(f"no grid point keeps the false-flag rate <= {max_false_rate:g}; extend score_grid upwards")
    best = ok.sort_values(["planted_recall", "false_flag_rate", "min_score"], ascending=[False, True, False]).iloc[0]
    return best.to_dict(), grid


def calibrate_hpd_level(hpd_clean: np.ndarray, max_false_rate: float = 0.05) -> float:
    """(R,) hpd_mass of clean validation recordings at their true place -> the credible level that the claim
    falls outside of on at most ``max_false_rate`` of them (their (1 - rate) quantile, kept inside (0, 1))."""
    q = float(np.quantile(np.asarray(hpd_clean, float), 1.0 - max_false_rate, method="higher"))
    return float(np.clip(q, 1e-6, np.nextafter(1.0, 0.0)))


def range_probs(names, lat, lon, weeks, opts: LocateOptions = LocateOptions()) -> np.ndarray:
    """K species names + (R,) lat/lon degrees and weeks 1-48 -> (R, K) range probabilities (ValueError if not covered)."""
    model = range_geolocator(opts.gallery, opts.preset, opts.device).model
    idx, unknown = model.match(list(names))
    if unknown:
        raise ValueError(f"the range model does not cover {unknown[:5]}")
    return model.prob(np.asarray(lat, float), np.asarray(lon, float), np.asarray(weeks).astype(int), species_idx=idx)


@dataclass
class SimCases:
    """R SimSounds recordings read by the classifier unspliced and spliced with out-of-range calls (simulated)."""

    recs: pd.DataFrame  # the R recordings (audio_id, species, lat, lon, week, ...)
    clean: dict  # reading ("max" | "mean") -> (R, K) scores of the unspliced recordings
    spliced: dict  # reading -> (R, K) scores of the spliced recordings
    p_true: np.ndarray  # (R, K) range probabilities at the true place and week
    planted: np.ndarray  # (R, K) bool, the species spliced in
    claims: np.ndarray  # (R, 2) false claims >= 5,000 km from the true place


def sim_cases(sim, model, recs: pd.DataFrame, n_splice: int, rng: np.random.Generator,
              opts: LocateOptions = LocateOptions(), min_far_km: float = 5000.0,
              places: np.ndarray | None = None) -> SimCases:
    """AudioSplits + its species classifier + R recordings of a split -> SimCases: ``n_splice`` out-of-range species
    (p < 0.03 at the true place/week) spliced into each (``soundloc.data.sim.splice``), both versions scored
    (max and mean over windows), and a false claim per recording among ``places`` ((M, 2) lat/lon; default the
    recordings' own) >= ``min_far_km`` away."""
    recs = recs.reset_index(drop=True)
    names = np.asarray(sim.species, object)
    p_true = range_probs(names, recs.lat, recs.lon, recs.week, opts)
    planted = plant_out_of_range(p_true, n_splice, rng)
    waves = [load_audio(f, sr=sim.sim_cfg.sr) for f in recs.filepath]
    spl = [splice(w, list(names[m]), sim.sim_cfg, rng=rng) for w, m in zip(waves, planted)]
    cmax, cmean = classifier_scores(model, waves, sim.spec_cfg)
    smax, smean = classifier_scores(model, spl, sim.spec_cfg)
    split_ll = np.asarray(places, float) if places is not None else np.column_stack([recs.lat, recs.lon]).astype(float)
    claims = far_claims(split_ll, recs.lat.to_numpy(float), recs.lon.to_numpy(float), rng, min_far_km)
    return SimCases(recs, {"max": cmax, "mean": cmean}, {"max": smax, "mean": smean}, p_true, planted, claims)


def check_scores(scores: np.ndarray, names, lat, lon, weeks, config: CheckConfig = CheckConfig(),
                 opts: LocateOptions = LocateOptions(), planted: np.ndarray | None = None) -> pd.DataFrame:
    """Batched :func:`check_species` without the nearest-occurrence search, for evaluation.

    scores: (R, K) detection scores of the K species ``names`` in R recordings; lat, lon, weeks: (R,) claims.
    -> one row per recording: n_flagged, flagged (names), [n_planted, planted_caught, other_flags], hpd_mass,
    percentile, km_to_best, verdict. The posterior uses every species with its score as weight, as check_species.
    """
    scores = np.asarray(scores, float)
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    weeks = np.asarray(weeks).astype(int)
    p = range_probs(names, lat, lon, weeks, opts)  # (R, K)
    flag = (scores >= config.min_score) & (p < config.range_threshold)
    outs = locate_species([list(names)] * len(scores), list(scores), list(weeks), opts)
    post = np.stack([calibrated_posterior(o) for o in outs])  # calibrated as `soundloc locate` (opts.calibrate)
    areas = range_geolocator(opts.gallery, opts.preset, opts.device).areas
    hpd, pct = claim_credibility(post, outs[0].points, lat, lon, areas) if len(outs) else (np.zeros(0), np.zeros(0))
    best = np.array([(o.lat, o.lon) for o in outs]).reshape(-1, 2)
    nm = np.asarray(list(names), object)
    df = pd.DataFrame({"n_flagged": flag.sum(1), "flagged": ["; ".join(nm[f]) for f in flag]})
    if planted is not None:
        planted = np.asarray(planted, bool)
        df["n_planted"] = planted.sum(1)
        df["planted_caught"] = (flag & planted).sum(1)
        df["other_flags"] = (flag & ~planted).sum(1)
    df["hpd_mass"], df["percentile"] = hpd, pct
    df["km_to_best"] = haversine(best[:, 0], best[:, 1], lat, lon)
    prior = np.stack([o.prior for o in outs]) if len(outs) else np.zeros((0, 0))
    strong = (kl_nats(post, prior) >= WEAK_KL_NATS) & np.array([o.evidence for o in outs], bool)
    df["verdict"] = verdicts(df.n_flagged.to_numpy(), (hpd > config.hpd_level) & strong,
                             config.min_out)  # weak or no evidence: the posterior is (mostly) the prior, not a test
    return df


def confusion_table(per: dict, label: str) -> pd.DataFrame:
    """{case name: check_scores frame} -> one row per case: recordings, flagged_% (verdict not consistent),
    species_line_% (any species flagged), planted caught / recall (frames with planted columns), false OOR flags
    (flags of non-planted species; empty for cases whose name says "false place", where they are correct), verdicts."""
    rows = []
    for case, d in per.items():
        pl = "n_planted" in d
        rows.append({"case": case, "data": label, "recordings": len(d), "flagged_%": 100 * (d.verdict != "consistent").mean(),
                     "species_line_%": 100 * (d.n_flagged > 0).mean(),
                     "planted caught": f"{int(d.planted_caught.sum())} / {int(d.n_planted.sum())}" if pl else "",
                     "planted recall_%": 100 * d.planted_caught.sum() / max(1, d.n_planted.sum()) if pl else np.nan,
                     "false OOR flags": np.nan if "false place" in case else int(d.other_flags.sum() if pl else d.n_flagged.sum()),
                     **{v: int((d.verdict == v).sum()) for v in VERDICTS}})
    return pd.DataFrame(rows)


def plant_out_of_range(p_true: np.ndarray, n: int, rng: np.random.Generator, threshold: float = 0.03) -> np.ndarray:
    """(R, K) range probabilities at each recording's true place/week -> (R, K) bool: ``n`` species drawn per
    recording among those with p < ``threshold`` there (the ground truth "out of range", BirdNET's cut)."""
    out = np.zeros(p_true.shape, bool)
    for i, row in enumerate(p_true):
        cand = np.flatnonzero(row < threshold)
        out[i, rng.choice(cand, min(n, len(cand)), replace=False)] = True
    return out


def far_claims(latlon: np.ndarray, lat, lon, rng: np.random.Generator, min_km: float = 5000.0) -> np.ndarray:
    """(M, 2) candidate places + (R,) true lat/lon -> (R, 2) claims drawn among candidates >= ``min_km`` away."""
    lat, lon = np.atleast_1d(lat), np.atleast_1d(lon)
    d = haversine(latlon[None, :, 0], latlon[None, :, 1], np.asarray(lat, float)[:, None], np.asarray(lon, float)[:, None])
    pick = [rng.choice(np.flatnonzero(row >= min_km)) for row in d]
    return latlon[pick]


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
