"""Robust species evidence: a false-positive rate per detection, disagreeing species, and how much the
evidence moved the posterior from the prior.

:class:`soundloc.range_geolocation.RangeGeolocator` multiplies one likelihood per heard species, so a single
spurious detection whose range misses the true place vetoes it. Here each detection a is true with
probability 1 - eps and spurious with probability eps; a spurious detection says nothing about the place:

    post(n) ∝ exp(base(n)) prod_a [(1 - eps) exp(t_a(n)) + eps Lbar_a],   Lbar_a = sum_m prior(m) exp(t_a(m))

with t_a(n) = w_a [log max(p_na, floor) - gam log R(n)] and base(n) = lam T(n) + beta log prior(n) the
geolocator's own terms (eps = 0 gives its posterior exactly), and prior = softmax(base), the posterior
of a recording with no species. The posterior probability that detection a is spurious,
sum_n post(n) eps Lbar_a / [(1 - eps) exp(t_a(n)) + eps Lbar_a], names the species that disagree.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from .sphere import pairwise_km


@dataclass
class Evidence:
    """One recording's robust posterior over the gallery and what each species contributed."""

    posterior: np.ndarray  # (N,) masses
    prior: np.ndarray  # (N,) masses: the posterior with no species (location prior and absence terms)
    species: list  # names the range model covers, in input order
    p_spurious: np.ndarray  # (K,) posterior probability that each detection is a false positive
    info_gain_nats: float  # KL(posterior || prior), nats
    unknown: list  # names the range model does not cover


def kl_nats(post: np.ndarray, prior: np.ndarray):
    """(..., N) masses, (..., N) masses -> KL(post || prior) in nats over the last axis (0 when the evidence moved
    nothing): a float for (N,) inputs, an (R,) array for (R, N)."""
    p = np.asarray(post, np.float64)
    q = np.maximum(np.asarray(prior, np.float64), 1e-300)
    nz = p > 0
    kl = np.sum(np.where(nz, p * (np.log(np.where(nz, p, 1.0)) - np.log(q)), 0.0), axis=-1)
    return float(kl) if kl.ndim == 0 else kl


def species_terms(loc, idx: np.ndarray, weights: np.ndarray, week) -> np.ndarray:
    """Geolocator, (K,) species indices, (K,) weights, week -> (K, N) log-likelihood terms t_a(n)."""
    c = loc.config
    if not len(idx):
        return np.zeros((0, len(loc.points)))
    order = np.argsort(idx, kind="stable")
    uniq, inv = np.unique(idx[order], return_inverse=True)
    p = loc.species_maps(uniq, week)[inv][np.argsort(order)]  # (K, N), back in input order
    t = np.log(np.maximum(p, c.presence_floor)).astype(np.float64)
    if c.absence_weight > 0:
        t -= c.absence_weight * np.log1p(-np.minimum(c.detectability * p, c.absence_cap))
    if c.richness_weight > 0:
        t -= c.richness_weight * _week_terms(loc, week)[1][None]
    return np.asarray(weights, np.float64)[:, None] * t


def _week_terms(loc, week) -> tuple[np.ndarray, np.ndarray]:
    """(N,) normalised log prior mass per gallery point (base terms + log cell area) and (N,) log richness of a week,
    memoised on the geolocator."""
    memo = loc.__dict__.setdefault("_evidence_week_terms", {})
    if week not in memo:
        # the prior as a mass per cell: its density (base terms) times the cell's area on grid galleries
        base = loc._base(week).cpu().numpy().astype(np.float64) + loc.log_area.cpu().numpy().astype(np.float64)
        rich = np.log(np.maximum(loc.richness(week), 1e-3)) if loc.config.richness_weight > 0 else None
        memo[week] = (base - logsumexp(base), rich)
    return memo[week]


def robust_evidence(loc, names, weights, week, fp_rate: float) -> Evidence:
    """Geolocator, species names, (K,) weights, week 1-48 | None, eps in [0, 1) -> Evidence (robust posterior)."""
    if not 0 <= fp_rate < 1:
        raise ValueError(f"fp_rate must lie in [0, 1), got {fp_rate!r}")
    week = None if week is None or not loc.config.use_week or (isinstance(week, float) and np.isnan(week)) else int(week)
    names, weights = list(names), np.asarray(weights, np.float64)
    idx, unknown = loc.model.match(names)
    unk = set(unknown)
    known = [n for n in names if n not in unk]
    w = np.array([x for n, x in zip(names, weights) if n not in unk], np.float64)
    log_prior = _week_terms(loc, week)[0]
    t = species_terms(loc, idx, w, week)  # (K, N)
    if fp_rate > 0 and len(t):
        log_true = np.log1p(-fp_rate) + t
        log_false = np.log(fp_rate) + logsumexp(t + log_prior[None], axis=1, keepdims=True)  # eps Lbar_a
        mix = np.logaddexp(log_true, log_false)
    else:
        mix, log_false = t, None
    score = log_prior + mix.sum(0)
    post = np.exp(score - logsumexp(score))
    p_false = (np.zeros(len(t)) if log_false is None else np.exp(log_false - mix) @ post)
    prior = np.exp(log_prior)
    return Evidence(post, prior, known, p_false, kl_nats(post, prior), list(unknown))


def posteriors(loc, species, weights, weeks, fp_rate: float) -> tuple[np.ndarray, list]:
    """R species lists, R weight lists | None, (R,) weeks, eps -> ((R, N) float32 robust posteriors, R Evidence
    without their (N,) arrays)."""
    if weights is None:
        weights = [[1.0] * len(s) for s in species]
    P = np.zeros((len(species), len(loc.points)), np.float32)
    out = []
    for r, (s, w, wk) in enumerate(zip(species, weights, weeks)):
        ev = robust_evidence(loc, list(s), list(w), wk, fp_rate)
        P[r] = ev.posterior
        ev.posterior = ev.prior = None  # keep the (R, N) matrix only
        out.append(ev)
    return P, out


def inject_far_species(species, lat, lon, min_km: float = 5000.0, seed: int = 0) -> list[str]:
    """R species lists with (R,) places -> (R,) one species per list, drawn from another list at least ``min_km``
    away and absent from this one (a spurious detection from another continent)."""
    rng = np.random.default_rng(seed)
    ll = np.column_stack([lat, lon]).astype(float)
    far = pairwise_km(ll, ll) >= min_km
    out = []
    for r, s in enumerate(species):
        cand = np.flatnonzero(far[r])
        if not len(cand):
            raise ValueError(f"list {r}: no other list is {min_km:g} km away")
        pool = [x for x in species[int(rng.choice(cand))] if x not in set(s)]
        out.append(str(rng.choice(pool)) if pool else str(species[int(rng.choice(cand))][0]))
    return out
