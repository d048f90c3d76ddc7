"""Species-range geolocation: which places are consistent with the species heard, and when?

For a recording with heard species A (weights w_a, e.g. classifier scores) in week t, every
gallery point n gets the log score

    s(n) = sum_a w_a [log max(p_na, floor) - gam log R_t(n) - lam log(1 - d p_na)] + lam T_t(n) + beta log prior(n)

where p_na is the range model's occurrence probability, ``T_t(n) = sum_s log(1 - d p_ns)`` over
all species the model knows (so ``lam`` weighs the absence of every species not heard: a
species common at n but not heard lowers n; ``d`` is a detectability, the chance that a species
present is also heard, so that P(not heard) = 1 - d p), ``R_t(n) = sum_s p_ns`` is the expected
species richness at n (with ``gam = 1`` each heard species counts as a draw from the local
community p_ns / R(n): a multinomial observation model that is immune to range models which
over-predict everywhere in data-poor regions), and ``prior`` is a density of where recordings
are made from an independent source (by default a von Mises-Fisher smoothing of GeoCLIP's
bundled photo coordinates). s is a log density per km^2; on a lat/lon grid gallery each point
stands for a cell whose area shrinks towards the poles (a 1 deg cell at 80 deg holds 0.17 of an
equatorial one), so the posterior mass of a cell is softmax(s + log area) (:func:`soundloc.sphere.log_masses`).
A named decoder turns it into one point: ``argmax`` (the densest point; the paper's), ``geomedian``
(the point minimising the expected great-circle distance, Weiszfeld on the sphere over the densest
points, weighted by mass) or ``mass_within`` (among the densest points, the one with the most
posterior mass within ``radius_km``).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import paths
from .sphere import EARTH_RADIUS_KM, cell_areas, h3_cells, haversine, kappa_for_bandwidth, land_grid, to_latlon, to_xyz, uniform_grid
from .io import bytes_digest, cached, npy_loader, npy_save
from .metrics import summary_row
from .range_model import RangeModel
from .ranges import range_map
from .reference import geoclip_coordinates

DECODERS = ("argmax", "geomedian", "mass_within")


@dataclass(frozen=True)
class RangeLocConfig:
    presence_floor: float = 1e-3  # floor on p inside log p for heard species (range maps are imperfect)
    absence_weight: float = 0.0  # lam: weight of log(1 - p) of every species not heard (0 = presences only)
    absence_cap: float = 0.99  # d p capped here before log(1 - d p)
    detectability: float = 1.0  # d: chance that a species present is heard (absence term uses 1 - d p)
    richness_weight: float = 0.0  # gam: 1 = heard species are draws from p / sum(p) (multinomial), 0 = raw p
    prior_weight: float = 1.0  # beta: exponent of the location prior (0 = flat prior)
    prior_bandwidth_km: float = 200.0  # vMF kernel bandwidth of the prior density
    decoder: str = "argmax"  # one of DECODERS
    radius_km: float = 200.0  # radius of the mass_within decoder
    top_m: int = 1024  # posterior points kept for the decoders and top-k
    use_week: bool = True  # use the recording's week (False: year-round ranges)
    genus_proxy: bool = False  # a species the model lacks counts as the mean range of its covered congeners

    def __post_init__(self):
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, not {self.decoder!r}")
        if not (0 < self.presence_floor < 1 and 0 < self.absence_cap < 1 and 0 < self.detectability <= 1):
            raise ValueError("presence_floor and absence_cap must lie in (0, 1), detectability in (0, 1]")
        if self.absence_weight < 0 or self.prior_weight < 0 or self.prior_bandwidth_km <= 0:
            raise ValueError("absence_weight and prior_weight must be >= 0, prior_bandwidth_km > 0")


# ---------------------------------------------------------------- galleries and the prior
def gallery(name: str) -> np.ndarray:
    """Named gallery -> (N, 2) lat/lon degrees: 'land1', 'land0.5', 'uniform1', 'uniform0.5'."""
    kind, step = name.rstrip("0123456789."), name[len(name.rstrip("0123456789.")):]
    if kind not in ("land", "uniform") or not step:
        raise ValueError(f"unknown gallery {name!r}; use land1, land0.5, uniform1, uniform0.5")
    g = land_grid(float(step)) if kind == "land" else uniform_grid(float(step))
    if len(g) == 0:
        raise ValueError(f"gallery {name!r} has no points")
    return g


def grid_step(name: str | None) -> float | None:
    """Named grid gallery ('land1', 'uniform0.5', ...) -> its step in degrees; None for any other name."""
    if not name:
        return None
    kind = name.rstrip("0123456789.")
    try:
        return float(name[len(kind):]) if kind in ("land", "uniform") else None
    except ValueError:
        return None


def gallery_areas(points: np.ndarray, name: str | None) -> np.ndarray | None:
    """(N, 2) points of the named gallery -> (N,) cell areas km^2, or None (equal weights) for a sampled gallery.

    Grid galleries ('land1', 'uniform0.5', ...) are cells of a lat/lon grid: a point's posterior mass is its
    density times its cell's area. Any other gallery (GeoCLIP photo coordinates, training locations, an ad-hoc
    point set) is a sample of places, not a partition of the sphere: each point already stands for an equal
    share of where recordings are made, so its points keep equal weights. ValueError when a grid name is
    given for points off that grid (the areas would be wrong).
    """
    step = grid_step(name)
    if step is None:
        return None
    pts = np.asarray(points, np.float64)
    frac = (pts + [90 - step / 2, 180 - step / 2]) / step
    if not np.allclose(frac, np.rint(frac), atol=1e-6):
        raise ValueError(f"gallery_areas: points named {name!r} are not on the cell-centred {step:g} deg grid")
    return cell_areas(pts, step)


def vmf_log_density(points: np.ndarray, centers: np.ndarray, bandwidth_km: float, bin_deg: float = 0.1,
                    device: str | torch.device = "cpu", chunk: int = 8192) -> np.ndarray:
    """log vMF kernel density of ``centers`` at ``points``: (N, 2), (M, 2) degrees -> (N,) log prob, sums to 1.

    Centres are first binned to ``bin_deg`` (weights = counts), far below any useful bandwidth. The
    kernel sums run in float32 (2.4x faster than float64 on CPU; the exponent kappa (x.c - 1) is off by
    at most kappa x 1e-7, about 1e-4 at 200 km, tested against float64), the normalisation in float64.
    """
    if len(centers) == 0:
        raise ValueError("no centres for the prior density")
    binned, counts = np.unique(np.round(np.asarray(centers) / bin_deg) * bin_deg, axis=0, return_counts=True)
    kappa = kappa_for_bandwidth(bandwidth_km)
    P = torch.as_tensor(to_xyz(points[:, 0], points[:, 1]), dtype=torch.float32, device=device)
    C = torch.as_tensor(to_xyz(binned[:, 0], binned[:, 1]), dtype=torch.float32, device=device)
    bias = torch.log(torch.as_tensor(counts, dtype=torch.float32, device=device)) - kappa  # log w - kappa
    out = torch.empty(len(P), dtype=torch.float64, device=device)
    for s in range(0, len(P), chunk):  # kappa x.c + log w - kappa in one addmm, (chunk, M) at a time
        out[s:s + chunk] = torch.logsumexp(torch.addmm(bias, P[s:s + chunk], C.T, alpha=kappa), dim=1)
    out = out - torch.logsumexp(out, 0)
    return out.cpu().numpy()


def location_prior(points: np.ndarray, bandwidth_km: float = 200.0, source: str = "geoclip",
                   cache_key: str | None = None) -> np.ndarray:
    """Log prior over gallery points from an independent reference set -> (N,) log prob (cached)."""
    if source != "geoclip":
        raise ValueError(f"unknown prior source {source!r}; 'geoclip' (GeoCLIP's 100K photo coordinates)")

    key = bytes_digest(np.asarray(points, np.float64))
    path = paths.cache_dir("priors") / f"{source}__{cache_key or 'pts'}-{key}__h{bandwidth_km:g}.npy"
    return cached(path, lambda: vmf_log_density(points, geoclip_coordinates(land_only=True), bandwidth_km),
                  npy_loader((len(points),)), npy_save)[0]


# ---------------------------------------------------------------- results
@dataclass
class LocateResult:
    pred: pd.DataFrame  # one row per query: lat, lon, n_species, n_known, fallback (no known species)
    unknown: Counter  # species names the range model does not cover -> occurrences
    topk: np.ndarray | None = None  # (R, K, 3) lat, lon, posterior mass of the K densest points
    posterior: np.ndarray | None = None  # (R, N) posterior mass per gallery point (sums to 1; only when asked for)
    notes: list = field(default_factory=list)  # human-readable remarks (fallbacks, coverage)

    def summary(self) -> str:
        p = self.pred
        s = f"{len(p)} queries: {int((~p.fallback).sum())} located from species, {int(p.fallback.sum())} fell back to the prior"
        if self.unknown:
            s += f"; {len(self.unknown)} species not covered by the range model ({sum(self.unknown.values())} mentions)"
        return s


# ---------------------------------------------------------------- the locator
class RangeGeolocator:
    """Species sets (+ weeks) -> posteriors over a gallery and decoded point estimates.

    ``areas``: (N,) cell areas km^2 of the gallery points; "auto" takes them from a grid ``gallery_name``
    (:func:`gallery_areas`; equal weights for any other gallery), None forces equal weights.
    """

    def __init__(self, model: RangeModel, points: np.ndarray, config: RangeLocConfig = RangeLocConfig(),
                 gallery_name: str | None = None, log_prior: np.ndarray | None = None, device="cpu",
                 areas: np.ndarray | str | None = "auto"):
        self.model, self.points, self.config = model, np.asarray(points, np.float64), config
        self.gallery_name = gallery_name or f"pts{len(points)}"
        self.device = torch.device(device)
        if isinstance(areas, str):
            areas = gallery_areas(self.points, gallery_name)
        self.areas = None if areas is None else np.asarray(areas, np.float64)
        if self.areas is not None and self.areas.shape != (len(self.points),):
            raise ValueError(f"RangeGeolocator: {len(self.areas)} areas for {len(self.points)} points")
        self.log_area = torch.as_tensor(np.zeros(len(self.points)) if self.areas is None else np.log(self.areas),
                                        dtype=torch.float32, device=self.device)  # (N,) log km^2 (0: equal weights)
        if log_prior is None and config.prior_weight > 0:
            log_prior = location_prior(self.points, config.prior_bandwidth_km, cache_key=self.gallery_name)
        self.log_prior = None if log_prior is None else np.asarray(log_prior, np.float64)
        self.xyz = torch.as_tensor(to_xyz(self.points[:, 0], self.points[:, 1]), dtype=torch.float32, device=self.device)
        self._totals: dict = {}  # (kind, week, tag) -> (N,) per-week total over all species (absence, richness)
        self._pcache: dict = {}  # week -> (sorted species idx, (K, N) float16 probabilities)
        self._genera: dict | None = None  # genus -> (virtual index, (M,) covered member indices)

    def with_config(self, **kw) -> "RangeGeolocator":
        """A copy with some config fields changed, sharing caches (prior recomputed if its bandwidth changed)."""
        cfg = replace(self.config, **kw)
        lp = self.log_prior if cfg.prior_bandwidth_km == self.config.prior_bandwidth_km else None
        g = RangeGeolocator(self.model, self.points, cfg, self.gallery_name, lp, self.device, self.areas)
        g._totals, g._pcache, g._genera = self._totals, self._pcache, self._genera
        return g

    def genus_proxies(self, names) -> tuple[np.ndarray, list[str]]:
        """Names the model lacks -> ((K,) virtual indices >= S of their genera's proxies, names without one)."""
        if self._genera is None:
            members: dict[str, list[int]] = {}
            for i, s in enumerate(self.model.species):
                members.setdefault(s.split()[0].lower(), []).append(i)
            S = len(self.model.species)
            self._genera = {g: (S + k, np.asarray(m, np.int64)) for k, (g, m) in enumerate(sorted(members.items()))}
        idx, rest = [], []
        for n in names:
            g = self._genera.get(str(n).split()[0].lower()) if str(n).split() else None
            (rest.append(n) if g is None else idx.append(g[0]))
        return np.asarray(idx, np.int64), rest

    # -- per-week pieces
    def _total_path(self, kind: str, week, tag: str) -> Path:
        wtag = "yr" if week is None else f"w{int(week):02d}"
        return paths.cache_dir(kind) / f"{self.model.name}__{self.gallery_name}-{bytes_digest(self.points)}__{wtag}{tag}.npy"

    def _pass(self, week, reducers: dict) -> dict:
        """One pass of the range model over the gallery for ``week``: {key: reducer of the (n, S) probabilities ->
        (n,)} -> {key: (N,) total}."""
        out = {k: np.zeros(len(self.points)) for k in reducers}
        for i in range(0, len(self.points), 4096):
            p = self.model.prob(self.points[i:i + 4096, 0], self.points[i:i + 4096, 1], week)
            for k, f in reducers.items():
                out[k][i:i + 4096] = f(p)
        return out

    def _weekly(self, week, kind: str, tag: str, per_chunk, value: np.ndarray | None = None) -> np.ndarray:
        """A (N,) per-point total over all species for one week, memoised and cached on disk (atomic); ``value``: the
        total already computed (by :meth:`prepare_weeks`), else one pass builds it."""
        key = (kind, week, tag)
        if key not in self._totals:
            build = (lambda: value) if value is not None else (lambda: self._pass(week, {key: per_chunk})[key])
            self._totals[key] = cached(self._total_path(kind, week, tag), build, npy_loader((len(self.points),)),
                                       npy_save)[0]
        return self._totals[key]

    @staticmethod
    def _absence_spec(c: RangeLocConfig) -> tuple[str, str, Callable[[np.ndarray], np.ndarray]]:
        """(kind, cache tag, per-chunk reducer) of the absence total of config ``c``."""
        def absence(p: np.ndarray) -> np.ndarray:  # log1p(-min(d p, cap)).sum(1), one temporary instead of four
            t = np.multiply(p, c.detectability, dtype=p.dtype)
            np.minimum(t, c.absence_cap, out=t)
            np.negative(t, out=t)
            return np.log1p(t, out=t).sum(1)

        return "absence", f"__c{c.absence_cap:g}_d{c.detectability:g}", absence

    _RICHNESS_SPEC = ("richness", "", lambda p: p.sum(1))

    def absence_total(self, week) -> np.ndarray:
        """T_week(n) = sum over all species of log(1 - min(d p, cap)) -> (N,) (cached on disk)."""
        return self._weekly(week, *self._absence_spec(self.config))

    def richness(self, week) -> np.ndarray:
        """R_week(n) = sum over all species of p -> (N,) expected species richness (cached on disk)."""
        return self._weekly(week, *self._RICHNESS_SPEC)

    def prepare_weeks(self, weeks, configs: Sequence[dict]) -> int:
        """Build the per-week totals (absence, richness) that the variants ``configs`` (``with_config`` keyword dicts)
        need for ``weeks`` (1-48 | None) and that no cache holds yet, all totals of a week in one pass over the range
        model -> number of passes made. Without it each total costs its own pass over the (N, S) probabilities, the
        bulk of a cold sweep."""
        specs: dict = {}
        wks: set = set()
        for kw in configs:
            c = replace(self.config, **kw)
            for spec in ([self._absence_spec(c)] if c.absence_weight > 0 else []) + (
                    [self._RICHNESS_SPEC] if c.richness_weight > 0 else []):
                specs[spec[:2]] = spec  # (kind, tag) -> (kind, tag, reducer)
            wks |= {None} if not c.use_week else {None if w is None or pd.isna(w) else int(w) for w in weeks}
        passes = 0
        for week in sorted(wks, key=lambda w: -1 if w is None else w):
            todo = {kt: spec for kt, spec in specs.items() if (kt[0], week, kt[1]) not in self._totals
                    and not self._total_path(kt[0], week, kt[1]).exists()}
            if len(todo) < 2:  # one total: the lazy path builds it in one pass just the same
                continue
            vals = self._pass(week, {kt: spec[2] for kt, spec in todo.items()})
            passes += 1
            for kt, spec in todo.items():
                self._weekly(week, *spec, value=vals[kt])
        return passes

    def _base(self, week) -> torch.Tensor:
        """Terms shared by every query of a week: lam T(n) + beta log prior(n) -> (N,)."""
        c = self.config
        base = np.zeros(len(self.points))
        if c.absence_weight > 0:
            base += c.absence_weight * self.absence_total(week)
        if c.prior_weight > 0 and self.log_prior is not None:
            base += c.prior_weight * self.log_prior
        return torch.as_tensor(base, dtype=torch.float32, device=self.device)

    # -- main entry
    def locate(self, species, weights=None, weeks=None, top_k: int = 0, return_posterior: bool = False,
               batch: int = 1024, progress: bool = True) -> LocateResult:
        """Locate R queries: species (R lists of names), weights (R lists) | None, weeks (R,) 1-48|None.

        -> LocateResult with (R,) lat/lon predictions decoded by ``config.decoder``.
        """
        R = len(species)
        species = [[s] if isinstance(s, str) else list(s) for s in species]
        if weights is None:
            weights = [[1.0] * len(s) for s in species]
        if len(weights) != R or any(len(w) != len(s) for w, s in zip(weights, species)):
            raise ValueError("weights must give one number per species name")
        wk = np.full(R, -1) if weeks is None or not self.config.use_week else np.asarray(
            [-1 if w is None or pd.isna(w) else int(w) for w in weeks])
        unknown: Counter = Counter()
        proxied: Counter = Counter()
        idx_lists, w_lists, n_proxy = [], [], []
        for names, ws in zip(species, weights):
            idx, unk = self.model.match(names)
            unknown.update(unk)
            known = [w for n, w in zip(names, ws) if n not in set(unk)]
            pidx = np.zeros(0, np.int64)
            if self.config.genus_proxy and unk:
                pidx, rest = self.genus_proxies(unk)
                proxied.update(n for n in unk if n not in set(rest))
                known += [w for n, w in zip(names, ws) if n in set(unk) and n not in set(rest)]
            idx_lists.append(np.concatenate([np.asarray(idx, np.int64), pidx]))
            w_lists.append(np.asarray(known, np.float32))
            n_proxy.append(len(pidx))
        lat = np.full(R, np.nan)
        lon = np.full(R, np.nan)
        topk = np.zeros((R, top_k, 3)) if top_k else None
        post_all = np.zeros((R, len(self.points)), np.float32) if return_posterior else None
        bar = tqdm(total=R, desc="species-range geolocation", disable=not progress, leave=False)
        for week in np.unique(wk):
            rows = np.flatnonzero(wk == week)
            wk_arg = None if week == -1 else int(week)
            used = np.unique(np.concatenate([idx_lists[r] for r in rows] + [np.zeros(0, np.int64)]))
            lp = self._species_logterms(used, wk_arg)  # (K, N)
            col = {int(s): j for j, s in enumerate(used)}
            base = self._base(wk_arg)
            if self.config.richness_weight > 0:
                log_rich = torch.as_tensor(np.log(np.maximum(self.richness(wk_arg), 1e-3)), dtype=torch.float32,
                                           device=self.device)
            for s in range(0, len(rows), batch):
                rb = rows[s:s + batch]
                scores = base.expand(len(rb), -1).clone()
                ii = [(k, col[int(x)], float(w)) for k, r in enumerate(rb) for x, w in zip(idx_lists[r], w_lists[r])]
                if ii:
                    r_i, c_i, vals = map(list, zip(*ii))
                    W = torch.sparse_coo_tensor(torch.tensor(np.array([r_i, c_i])), torch.tensor(vals, dtype=torch.float32),
                                                (len(rb), len(used)), device=self.device, check_invariants=False)
                    scores += torch.sparse.mm(W, lp)
                    if self.config.richness_weight > 0:
                        wsum = torch.zeros(len(rb), device=self.device).index_add_(
                            0, torch.tensor(r_i, device=self.device), torch.tensor(vals, device=self.device))
                        scores -= self.config.richness_weight * wsum[:, None] * log_rich[None]
                la, lo, tk = self.decode(scores, top_k)  # scores: (r, N) log density per km^2
                lat[rb], lon[rb] = la, lo
                if top_k:
                    topk[rb] = tk
                if return_posterior:
                    post_all[rb] = torch.softmax(scores + self.log_area, dim=1).cpu().numpy()
                bar.update(len(rb))
        bar.close()
        n_known = np.array([len(i) for i in idx_lists])
        pred = pd.DataFrame({"lat": lat, "lon": lon, "n_species": [len(s) for s in species], "n_known": n_known,
                             "n_proxy": n_proxy, "fallback": n_known == 0, "week": wk})
        res = LocateResult(pred, unknown, topk, post_all)
        if proxied:
            res.notes.append(f"{sum(proxied.values())} mentions of {len(proxied)} species the range model lacks were "
                             "located through the mean range of their covered congeners (genus proxy)")
        if pred.fallback.any():
            what = ("their prediction is the location prior alone (GeoCLIP photo density)"
                    if self.log_prior is not None and self.config.prior_weight > 0 else "their posterior is flat over the gallery")
            res.notes.append(f"{int(pred.fallback.sum())} queries had no species the range model covers: {what}")
        return res

    def _species_logterms(self, used: np.ndarray, week) -> torch.Tensor:
        """(K,) species indices, week -> (K, N) log max(p, floor) - lam log(1 - min(p, cap))."""
        c = self.config
        if len(used) == 0:
            return torch.zeros((0, len(self.points)), device=self.device)
        S = len(self.model.species)
        real = used < S
        p = np.empty((len(used), len(self.points)), np.float32)
        if real.any():
            p[real] = self.species_maps(used[real], week)  # (K, N) float32
        if (~real).any():  # genus proxies: the mean map of the genus's covered species
            by_id = {v[0]: v[1] for v in self._genera.values()}
            members = [by_id[int(v)] for v in used[~real]]
            allm = np.unique(np.concatenate(members))
            pm = self.species_maps(allm, week)
            p[~real] = np.stack([pm[np.searchsorted(allm, m)].mean(0) for m in members])
        lt = np.log(np.maximum(p, c.presence_floor))
        if c.absence_weight > 0:
            lt -= c.absence_weight * np.log1p(-np.minimum(c.detectability * p, c.absence_cap))
        return torch.as_tensor(lt, dtype=torch.float32, device=self.device)

    def clear_maps(self) -> None:
        """Forget the memoised range maps: the next ones are computed for exactly the species then asked for, so an
        answer does not depend on what was asked before (float32 sums differ with the set computed together)."""
        self._pcache.clear()

    def species_maps(self, used: np.ndarray, week, budget_bytes: float = 4e9) -> np.ndarray:
        """(K,) sorted species indices, week -> (K, N) float32 probabilities, memoised per week."""
        have = self._pcache.get(week)
        if have is None or not np.isin(used, have[0]).all():
            idx = used if have is None else np.union1d(used, have[0])
            if sum(v[1].nbytes for v in self._pcache.values()) > budget_bytes:
                self._pcache.clear()
            have = (idx, range_map(self.model, self.points, week, species_idx=idx).astype(np.float16))
            self._pcache[week] = have
        return have[1][np.searchsorted(have[0], used)].astype(np.float32)

    def prewarm(self, species, weeks, progress: bool = True, disk_cache: bool = False) -> None:
        """Compute each week's range maps once for every species its queries name (R lists, (R,) weeks 1-48).

        Later ``locate`` calls on any subset (cross-fitting folds, chunks, passes) then reuse them instead
        of recomputing a growing union of species week by week. ``disk_cache``: also keep each week's
        (K, N) float16 maps on disk (``ranges.range_map``'s species-subset cache, keyed by model, gallery,
        week and species set), so that a rerun on the same recordings skips the range model (its trunk runs
        once per point and week, whatever the number of species).
        """
        per_week = pd.DataFrame({"w": np.asarray(weeks), "s": list(species)}).explode("s").dropna().groupby("w")["s"].unique()
        for w, names in tqdm(per_week.items(), total=len(per_week), desc="range maps per week", disable=not progress, leave=False):
            idx = np.unique(self.model.match(sorted(names))[0])
            if not len(idx):
                continue
            wk = int(w) if self.config.use_week and int(w) > 0 else None
            if not disk_cache or wk in self._pcache:
                self.species_maps(idx, wk)
                continue
            maps = range_map(self.model, self.points, wk, species_idx=idx, cache_key=self.gallery_name, subset_cache=True)
            self._pcache[wk] = (idx, np.array(maps))

    # -- decoders
    def decode(self, scores: torch.Tensor, top_k: int = 0):
        """(R, N) log density per km^2 (unnormalised) -> (R,) lat, (R,) lon by ``config.decoder``, and (R, K, 3)
        top-k (lat, lon, mass) of the K densest points. Candidates are ranked by density (ranking by mass would
        favour the large equatorial cells); sums over them use mass = softmax(scores + log area)."""
        c = self.config
        m = min(c.top_m, scores.shape[1])
        _, idx = torch.topk(scores, m, dim=1)  # (R, M), densest first
        p = torch.log_softmax(scores + self.log_area, dim=1).gather(1, idx).exp()  # their masses
        tk = None
        if top_k:
            ll = self.points[idx[:, :top_k].cpu().numpy()]
            tk = np.concatenate([ll, p[:, :top_k, None].cpu().numpy()], axis=2)
        if c.decoder == "argmax":
            ll = self.points[idx[:, 0].cpu().numpy()]
            return ll[:, 0], ll[:, 1], tk
        X = self.xyz[idx]  # (R, M, 3)
        w = p / p.sum(1, keepdim=True)
        if c.decoder == "geomedian":
            X, w = X[:, :256], w[:, :256] / w[:, :256].sum(1, keepdim=True)  # the 256 densest points
            mean = (w[..., None] * X).sum(1)
            y = torch.where(mean.norm(dim=1, keepdim=True) > 1e-3, torch.nn.functional.normalize(mean, dim=1), X[:, 0])
            for _ in range(30):  # Weiszfeld on the sphere: reweight by 1 / angular distance
                ang = torch.arccos(torch.clamp(torch.bmm(X, y[:, :, None])[..., 0], -1.0, 1.0))
                y_new = torch.nn.functional.normalize(torch.bmm((w / ang.clamp_min(1e-4))[:, None], X)[:, 0], dim=1)
                if torch.allclose(y_new, y, atol=1e-6):
                    break
                y = y_new
            ll = to_latlon(y.cpu().double().numpy())
            return ll[:, 0], ll[:, 1], tk
        # mass_within: among the top candidates, the one with most posterior mass within the radius
        cos_r = float(np.cos(c.radius_km / EARTH_RADIUS_KM))
        n_cand = min(256, m)
        best = torch.empty(len(scores), dtype=torch.long, device=scores.device)
        for s in range(0, len(scores), 64):
            Xc = X[s:s + 64, :n_cand]  # (r, C, 3)
            near = (torch.bmm(Xc, X[s:s + 64].transpose(1, 2)) >= cos_r).float()  # (r, C, M)
            mass = torch.bmm(near, w[s:s + 64, :, None])[..., 0]  # (r, C)
            best[s:s + 64] = idx[s:s + 64].gather(1, mass.argmax(1, keepdim=True))[:, 0]
        ll = self.points[best.cpu().numpy()]
        return ll[:, 0], ll[:, 1], tk


# ---------------------------------------------------------------- parameter choice
def sweep(loc: RangeGeolocator, queries: pd.DataFrame, grid: list[dict], progress: bool = True) -> pd.DataFrame:
    """Evaluate config variants on queries (species, week, lat, lon) -> one metrics row per variant.

    Used to choose free parameters on a validation set that is not the one reported.
    """
    loc.prepare_weeks(queries["week"], grid)
    rows = []
    for kw in tqdm(grid, desc="sweep", disable=not progress):
        r = loc.with_config(**kw).locate(list(queries["species"]), weeks=queries["week"], progress=False)
        d = haversine(r.pred.lat.to_numpy(), r.pred.lon.to_numpy(), queries["lat"].to_numpy(), queries["lon"].to_numpy())
        rows.append({**kw, **summary_row("", d)})
    return pd.DataFrame(rows).drop(columns="method")


def pick_best(table: pd.DataFrame, keys: list[str], by: str = "median_km") -> dict:
    """Row of a sweep table with the lowest ``by`` (ties: highest region accuracy) -> its config dict."""
    best = table.sort_values([by, "region_%"], ascending=[True, False]).iloc[0]
    return {k: (best[k].item() if hasattr(best[k], "item") else best[k]) for k in keys}


def spatial_folds(lat, lon, k: int = 2, res: int = 1, seed: int = 0) -> np.ndarray:
    """(N,) lat/lon -> (N,) fold ids 0..k-1, whole H3 cells at ``res`` assigned at random (spatial blocking)."""
    cells = pd.Series(h3_cells(lat, lon, res))
    uniq = cells.unique()
    assign = dict(zip(uniq, np.random.default_rng(seed).integers(0, k, len(uniq))))
    return cells.map(assign).to_numpy()


def cross_fit(loc: RangeGeolocator, queries: pd.DataFrame, grid: list[dict], folds: np.ndarray, keys: list[str],
              by: str = "median_km", progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Choose a config on the other folds, predict each fold with it -> (predictions, chosen configs).

    Every reported prediction comes from parameters chosen without its own fold.
    """
    loc.prepare_weeks(queries["week"], grid)
    preds, chosen = [], []
    for f in np.unique(folds):
        train, test = queries[folds != f], queries[folds == f]
        best = pick_best(sweep(loc, train, grid, progress=progress), keys, by)
        r = loc.with_config(**best).locate(list(test["species"]), weeks=test["week"], progress=False)
        preds.append(r.pred.set_index(test.index))
        chosen.append({"fold": int(f), "n_choose": len(train), "n_report": len(test), **best})
    return pd.concat(preds).loc[queries.index], pd.DataFrame(chosen)


def predict_folds(loc: RangeGeolocator, queries: pd.DataFrame, folds: np.ndarray, choice: pd.DataFrame,
                  keys: list[str], **overrides) -> pd.DataFrame:
    """Predict each fold with the config :func:`cross_fit` chose for it (``choice``), some fields overridden."""
    preds = []
    for c in choice.to_dict("records"):
        part = queries[folds == c["fold"]]
        r = loc.with_config(**{k: c[k] for k in keys}, **overrides).locate(list(part["species"]), weeks=part["week"],
                                                                         progress=False)
        preds.append(r.pred.set_index(part.index))
    return pd.concat(preds).loc[queries.index]


# Presets used by the CLI (``species-locate --preset``) and :class:`~soundloc.locator.LocateOptions`. Where each was
# chosen (PRESET_CHOSEN_ON) and where the book reports it:
# "lists" (the default everywhere): richness and absence weights chosen by chapter 05's sweep over multi-species lists
#   built from iNatSounds test recordings (res-4 cell x month, >= 8 bird species), prior bandwidth 200 km from the design's
#   probe on 3,000 iNatSounds test recordings. Reported on XCDC (05), on real soundscapes (07, 08) and on iNatSounds test
#   recordings and lists in chapter 12, which says so: its likelihood is in-sample there (about a quarter of the
#   iNatSounds test recordings lie in such lists), only what chapter 12 cross-fits on top of it is held out.
# "single": chosen by 2-fold spatially blocked cross-fitting on all 49,527 iNatSounds test recordings, land 1 deg (both
#   folds chose bandwidth 400 km and the genus proxy: 985 km median vs 988 without the proxy, and 1,068 / 1,073 km at
#   200 km; measured before posteriors were weighted by cell area, which leaves these argmax presets' points unchanged
#   but can change which settings cross-fitting picks). Every iNatSounds test number with it would be in-sample, so no
#   chapter reports it: chapter 02 reports the per-fold cross-fitted choices instead (each fold located with the
#   settings the other fold chose), tests/test_range_geolocation.py keeps chapters off it.
PRESET_CHOSEN_ON = {"lists": "iNatSounds test lists (chapter 05's sweep)", "single": "all iNatSounds test recordings"}
PRESETS = {
    "lists": RangeLocConfig(richness_weight=1.0, absence_weight=0.0, prior_weight=1.0, prior_bandwidth_km=200.0),
    "single": RangeLocConfig(richness_weight=1.0, absence_weight=0.0, prior_weight=1.0, prior_bandwidth_km=400.0,
                             genus_proxy=True),
}
