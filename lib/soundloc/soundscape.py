"""Soundscapes: what will be heard at a place and week (ranked species), how well a ranking recovers
the species real recordings contain (recall@k, average precision), and a "heard here" model.

The "heard here" model multiplies BirdNET's occurrence by nothing species-global: it shrinks the
local *composition of real recordings* (iNatSounds: which species people recorded within a few
hundred km) towards the range model's normalised occurrence, a Dirichlet posterior mean

    score_s = occ_s * (K_s + alpha * q_s) / (sum_t K_t + alpha),   q_s = occ_s / sum_t occ_t,

with K_s a Gaussian-kernel count of recordings of species s near the place. The debiased variant divides K_s
by a species-level factor first (``debias``: :class:`SpeciesFactor`'s recorded-per-expected ratio). alpha (prior strength)
and the kernel bandwidth are chosen on iNatSounds-derived lists by cross-fitting (spatial blocks of
recordings, buffered by :func:`buffered_leave_out`: no list is scored with its own block's recordings or any
recording within the buffer of its fold's lists); XCDC is never used to fit.

:class:`SpeciesFactor` is the place-free alternative: occurrence times one factor per species, its
recordings over the recordings expected from occurrence at the recording places ((O + a) / (E + a)) ** beta.

Two choice criteria for their free parameters, both out-of-fold on iNatSounds lists: mAP (:func:`sweep`,
:func:`factor_sweep`) and the predictive log-likelihood of the lists' species under the normalised scores
(:func:`list_loglik`, :func:`loglik_sweep`): empirical Bayes for the prior strength.
"""
from __future__ import annotations

import calendar
import difflib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sps

from .data.validate import read_rows, week_from_date
from .maps import _title
from .metrics import cluster_counts
from .sphere import h3_cells, h3_parents

EARTH_KM = 6371.0088


# ---------------------------------------------------------------- ranking metrics
def ranks(scores: np.ndarray) -> np.ndarray:
    """(N, S) scores -> (N, S) int 1-based rank of each species in its row (ties broken by index)."""
    order = np.argsort(-np.asarray(scores), axis=1, kind="stable")
    out = np.empty_like(order)
    np.put_along_axis(out, order, np.arange(1, order.shape[1] + 1)[None].repeat(len(order), 0), axis=1)
    return out


def ranking_metrics(scores: np.ndarray, truth: list, ks=(10, 25, 50)) -> pd.DataFrame:
    """(N, S) scores, N arrays of true species indices -> DataFrame per row: n_true, ap, recall@k.

    AP = mean over true species of precision at its rank (sklearn's average_precision_score without
    ties); recall@k = share of true species in the top k. Rows with no true species get NaN.
    """
    scores = np.asarray(scores)
    col = np.arange(scores.shape[1])
    rows = []
    for i, t in enumerate(truth):
        t = np.unique(np.asarray(t, np.int64))
        # rank as :func:`ranks` gives it, for the true species only (no sort of all S): 1 + higher scores + equal
        # scores at a lower index
        s, st = scores[i][None], scores[i, t][:, None]
        rk = np.sort(1 + (s > st).sum(1) + ((s == st) & (col[None] < t[:, None])).sum(1)).astype(float)
        row = {"n_true": len(t), "ap": float(np.mean(np.arange(1, len(rk) + 1) / rk)) if len(rk) else np.nan}
        row.update({f"recall@{k}": float(np.mean(rk <= k)) if len(rk) else np.nan for k in ks})
        rows.append(row)
    return pd.DataFrame(rows)


def boot_means(x: np.ndarray, n_boot: int, seed: int = 0, clusters=None) -> np.ndarray:
    """(N,) per-list values -> (n_boot,) bootstrap means: lists resampled one by one, or whole ``clusters`` ((N,)
    labels: lists of one recordist, site or cell are near-duplicates and must be drawn together)."""
    x = np.asarray(x, float)
    if clusters is None:
        return x[np.random.default_rng(seed).integers(0, len(x), (n_boot, len(x)))].mean(1)
    cl = np.asarray(clusters).ravel()
    if cl.size != x.size:
        raise ValueError(f"clusters: {cl.size} labels for {x.size} lists")
    idx, counts = cluster_counts(cl, n_boot, seed)
    W = counts[:, idx].astype(np.float64)
    return W @ x / W.sum(1)


def summarize(per_row: pd.DataFrame, method: str, data: str, n_boot: int = 0, seed: int = 0, clusters=None) -> dict:
    """Per-row ranking metrics -> one table row: mean recall@k (%) and mAP [+ bootstrap 95 % interval of mAP, over
    rows or over ``clusters`` ((N,) labels, see :func:`boot_means`)]."""
    keep = per_row.notna().all(axis=1).to_numpy()
    d = per_row[keep]
    out = {"method": method, "data": data, "lists": len(d)}
    out.update({c.replace("recall@", "R@") + " %": 100 * d[c].mean() for c in d if c.startswith("recall@")})
    out["mAP"] = d["ap"].mean()
    if n_boot:
        cl = None if clusters is None else np.asarray(clusters)[keep]
        lo, hi = np.percentile(boot_means(d["ap"].to_numpy(), n_boot, seed, cl), [2.5, 97.5])
        out["mAP 95% CI"] = f"{lo:.3f}-{hi:.3f}"
    return out


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0,
                     clusters=None) -> tuple[float, float, float]:
    """(N,) per-list scores of two methods -> (mean difference a - b, 2.5 %, 97.5 % bootstrap bounds), lists
    resampled one by one or by ``clusters`` ((N,) labels)."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    lo, hi = np.percentile(boot_means(diff, n_boot, seed, clusters), [2.5, 97.5])
    return float(diff.mean()), float(lo), float(hi)


def versus_occurrence(ap, occurrence_ap, method: str, data: str, n_boot: int, seed: int, clusters=None) -> dict:
    """(N,) per-list AP of a method and of week occurrence on the same lists -> one row: :func:`summarize`'s columns,
    occurrence's mAP, the mean AP difference and its paired bootstrap 95 % interval (over ``clusters`` if given)."""
    ap, ref = np.asarray(ap, float), np.asarray(occurrence_ap, float)
    d, lo, hi = paired_bootstrap(ap, ref, n_boot, seed, clusters)
    return {**summarize(pd.DataFrame({"ap": ap}), method, data, n_boot, seed, clusters), "week occurrence mAP": ref.mean(),
            "mAP method - week occurrence": d, "2.5 %": lo, "97.5 %": hi}


def gain_by_evidence(local: np.ndarray, gain: np.ndarray, edges=(0.0, 1.0, 10.0, 100.0, np.inf)) -> pd.DataFrame:
    """(N,) kernel-weighted count of the recordings a list's score may use near it, (N,) per-list AP gain (method -
    occurrence) -> one row per count bin [lo, hi): lists, their median count, mean gain and share of lists
    improved; whether local evidence helps where there is more of it."""
    local, gain = np.asarray(local, float), np.asarray(gain, float)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (local >= lo) & (local < hi) & np.isfinite(gain)
        rows.append({"local recordings (kernel-weighted)": f"{lo:g} to {hi:g}", "lists": int(m.sum()),
                     "median count": float(np.median(local[m])) if m.any() else np.nan,
                     "mean AP gain": float(gain[m].mean()) if m.any() else np.nan,
                     "lists improved %": 100 * float((gain[m] > 0).mean()) if m.any() else np.nan})
    return pd.DataFrame(rows)


def beats_label(lo, hi) -> np.ndarray:
    """(R,) lower and upper ends of a difference's interval -> (R,) "yes" (above 0), "no (worse)" (below 0) or
    "not shown" (it contains 0)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return np.where(lo > 0, "yes", np.where(hi < 0, "no (worse)", "not shown"))


# ---------------------------------------------------------------- predictive likelihood
def list_loglik(scores: np.ndarray, truth: list) -> np.ndarray:
    """(N, S) non-negative scores, N arrays of listed species indices -> (N,) log-likelihood (nats) of each list.

    The scores normalised over species are a per-place distribution p; a list's log-likelihood is the sum of
    log p_s over its entries (a multinomial predictive likelihood; a repeated index counts again, an empty list
    scores 0). A zero score gives the smallest positive float's log rather than -inf.
    """
    scores = np.asarray(scores, float)
    t = [np.asarray(x, np.int64).ravel() for x in truth]
    if len(t) != len(scores):
        raise ValueError(f"{len(t)} lists for {len(scores)} rows of scores")
    rows = np.repeat(np.arange(len(t)), [len(x) for x in t])
    cols = np.concatenate(t) if len(t) else np.zeros(0, np.int64)
    logz = np.log(np.maximum(scores.sum(1), np.finfo(float).tiny))
    lp = np.log(np.maximum(scores[rows, cols], np.finfo(float).tiny)) - logz[rows]
    return np.bincount(rows, lp, minlength=len(t))


def loglik_sweep(score, grid: list, truth: list) -> pd.DataFrame:
    """Choice by predictive likelihood: ``score`` (config -> (N, S) out-of-fold scores), C dataclass configs, N lists
    -> one row per config: its fields, log-likelihood per listed species (nats; the criterion) and mAP, R@10 % (shown)."""
    n = max(sum(len(np.ravel(x)) for x in truth), 1)
    rows = []
    for cfg in grid:
        s = score(cfg)
        m = ranking_metrics(s, truth)
        rows.append({**asdict(cfg), "log-likelihood per species": list_loglik(s, truth).sum() / n,
                     "mAP": m.ap.mean(), "R@10 %": 100 * m["recall@10"].mean()})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- "heard here"
@dataclass(frozen=True)
class HeardConfig:
    bandwidth_km: float = 100.0  # Gaussian kernel sd over distance to real recordings (km)
    prior_strength: float = 10.0  # alpha: recordings-worth of weight on the range model's composition
    cutoff_sd: float = 3.0  # recordings beyond cutoff_sd * bandwidth are ignored (kernel < 1.1 %)


class HeardHere:
    """Occurrence x local composition of real recordings, shrunk towards occurrence (see module doc)."""

    def __init__(self, rec_lat, rec_lon, rec_species: np.ndarray, n_species: int, folds: np.ndarray | None = None,
                 config: HeardConfig = HeardConfig()):
        """(R,) recording lat/lon degrees, (R,) species index (-1 = unknown, ignored), S, (R,) fold ids or (R, K) bool
        leave-out sets (:func:`buffered_leave_out`: column k marks the recordings not used when fold k is scored)."""
        from sklearn.neighbors import BallTree

        ok = np.asarray(rec_species) >= 0
        self.lat, self.lon = np.asarray(rec_lat, float)[ok], np.asarray(rec_lon, float)[ok]
        self.sp = np.asarray(rec_species)[ok]
        self.folds = None if folds is None else np.asarray(folds)[ok]
        if self.folds is not None and self.folds.ndim == 2 and self.folds.dtype != bool:
            raise ValueError(f"2-D folds must be a bool (R, K) leave-out matrix, got {self.folds.dtype}")
        self.n_species, self.config = n_species, config
        self.tree = BallTree(np.radians(np.c_[self.lat, self.lon]), metric="haversine")

    def counts(self, lat, lon, exclude_fold=None, bandwidth_km: float | None = None) -> sps.csr_matrix:
        """(N,) places [, (N,) fold to leave out] -> (N, S) sparse kernel-weighted recording counts K."""
        h = bandwidth_km or self.config.bandwidth_km
        q = np.radians(np.c_[np.asarray(lat, float), np.asarray(lon, float)])
        ind, dist = self.tree.query_radius(q, r=self.config.cutoff_sd * h / EARTH_KM, return_distance=True)
        row = np.repeat(np.arange(len(q)), [len(i) for i in ind])
        col = np.concatenate(ind).astype(np.int64) if len(ind) else np.zeros(0, np.int64)
        w = np.exp(-0.5 * (np.concatenate(dist) * EARTH_KM / h) ** 2) if len(ind) else np.zeros(0)
        if exclude_fold is not None and self.folds is not None:
            ex = np.asarray(exclude_fold)[row]
            keep = ~self.folds[col, ex] if self.folds.ndim == 2 else self.folds[col] != ex
            row, col, w = row[keep], col[keep], w[keep]
        return sps.csr_matrix((w, (row, self.sp[col])), shape=(len(q), self.n_species))

    def score(self, occ: np.ndarray, lat, lon, exclude_fold=None, config: HeardConfig | None = None,
              debias: np.ndarray | None = None) -> np.ndarray:
        """(N, S) occurrence at (N,) places -> (N, S) heard-here scores (occurrence x shrunk local share).

        ``debias``: (N | 1, S) positive species factor f (e.g. :meth:`SpeciesFactor.factor`, the recorded-per-expected
        ratio) dividing the local counts first, K'_s = K_s / f_s, so that the share keeps where a species is locally
        commoner than its global ratio and drops every species-level factor (recordist preference and detectability
        alike): score = occ x (K' + alpha q) / (sum_t K'_t + alpha).
        """
        cfg = config or self.config
        K = self.counts(lat, lon, exclude_fold, cfg.bandwidth_km).toarray()
        if debias is not None:
            f = np.asarray(debias, float)
            if f.ndim != 2 or f.shape[1] != K.shape[1] or f.shape[0] not in (1, K.shape[0]) or not (f > 0).all():
                raise ValueError(f"debias must be positive with shape (1 or {K.shape[0]}, {K.shape[1]}), got {f.shape}")
            K = K / f
        q = occ / np.maximum(occ.sum(1, keepdims=True), 1e-12)
        share = (K + cfg.prior_strength * q) / (K.sum(1, keepdims=True) + cfg.prior_strength)
        return occ * share


    def frequency(self, exclude_fold=None) -> np.ndarray:
        """Global-frequency baseline: (N,) folds to leave out | None -> (N | 1, S) recording counts per species."""
        full = np.bincount(self.sp, minlength=self.n_species).astype(float)
        if exclude_fold is None or self.folds is None:
            return full[None]
        if self.folds.ndim == 2:  # leave-out sets: column f is what fold f's lists may not use
            per_fold = {f: np.bincount(self.sp[self.folds[:, f]], minlength=self.n_species) for f in range(self.folds.shape[1])}
        else:
            per_fold = {f: np.bincount(self.sp[self.folds == f], minlength=self.n_species) for f in np.unique(self.folds)}
        return np.stack([full - per_fold.get(f, 0) for f in np.asarray(exclude_fold)])


def sweep(heard: HeardHere, occ: np.ndarray, lat, lon, truth: list, folds, grid: list[HeardConfig],
          per_list: list | None = None, debias: np.ndarray | None = None) -> pd.DataFrame:
    """Cross-fitted choice: each config's out-of-fold mAP and recall@10 on the given lists (one row per config).

    ``per_list``: a list to receive each config's per-list metrics (for :func:`nested_choice`); ``debias``: (N | 1, S)
    species factor dividing the local counts (see :meth:`HeardHere.score`), out-of-fold like the counts.
    """
    return _metric_rows(lambda cfg: heard.score(occ, lat, lon, folds, cfg, debias), grid, truth,
                        ("bandwidth_km", "prior_strength"), per_list)


def _metric_rows(score, grid: list, truth: list, fields: tuple[str, ...], per_list: list | None) -> pd.DataFrame:
    """``score`` (config -> (N, S) scores), C configs -> one row per config: its ``fields``, mAP and R@10 % (each
    config's per-list metrics appended to ``per_list`` when given)."""
    rows = []
    for cfg in grid:
        m = ranking_metrics(score(cfg), truth)
        if per_list is not None:
            per_list.append(m)
        rows.append({**{f: getattr(cfg, f) for f in fields}, "mAP": m.ap.mean(), "R@10 %": 100 * m["recall@10"].mean()})
    return pd.DataFrame(rows)


def nested_choice(per_config: list[pd.DataFrame], folds: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """C configs' per-list metrics (N rows each), (N,) folds -> (per-list metrics with each fold's config chosen
    by mAP on the *other* folds' lists, (K,) chosen config per fold): a choice that never saw the list it scores."""
    folds = np.asarray(folds)
    ap = np.stack([m["ap"].to_numpy() for m in per_config])  # (C, N)
    out = per_config[0].copy()
    chosen = []
    for k in np.unique(folds):
        c = int(np.nanargmax(np.nanmean(ap[:, folds != k], axis=1)))
        out.loc[folds == k] = per_config[c].loc[folds == k].to_numpy()
        chosen.append(c)
    return out, np.asarray(chosen)


@dataclass(frozen=True)
class FactorConfig:
    prior: float = 1.0  # a: pseudo-recordings added to observed and expected counts (shrinks the ratio to 1)
    power: float = 1.0  # beta: exponent of the ratio (1: the Poisson observed/expected model, 0: occurrence)


class SpeciesFactor:
    """A per-species, place-free "recorded per expected" factor: occurrence x ((O_s + a) / (E_s + a)) ** beta.

    O_s counts the real recordings of species s; E_s = sum over recordings r of occ_rs / sum_t occ_rt is
    how many it would have if people recorded the species present in proportion to their occurrence.
    The ratio mixes how audible a species is with how much recordists want it; having no place factor,
    it cannot copy where recordists live. Per fold, so a list is scored without its own fold's recordings.
    """

    def __init__(self, rec_species: np.ndarray, n_species: int, occ_sample: np.ndarray, sample_rows: np.ndarray,
                 folds: np.ndarray | None = None):
        """(R,) species index of every recording (-1 ignored), S, (M, S) occurrence at M sampled recordings
        (rows ``sample_rows`` (M,) of the R; its own week), (R,) fold ids | None."""
        sp = np.asarray(rec_species)
        f = np.zeros(len(sp), np.int64) if folds is None else np.asarray(folds)
        rows = np.asarray(sample_rows)
        if occ_sample.shape != (len(rows), n_species):
            raise ValueError(f"occ_sample {occ_sample.shape} does not fit {len(rows)} sampled rows x {n_species} species")
        if (sp[rows] < 0).any():
            raise ValueError("sample_rows must be recordings of known species (index >= 0)")
        self.fold_ids = np.unique(f[sp >= 0])
        p = occ_sample / np.maximum(occ_sample.sum(1, keepdims=True), 1e-12)
        self.O = np.stack([np.bincount(sp[(f == k) & (sp >= 0)], minlength=n_species) for k in self.fold_ids]).astype(float)
        # each fold's expected counts from its sampled recordings, scaled to all its recordings
        self.E = np.stack([p[f[rows] == k].sum(0) * (self.O[i].sum() / max((f[rows] == k).sum(), 1))
                           for i, k in enumerate(self.fold_ids)])

    def factor(self, config: FactorConfig = FactorConfig(), exclude_fold=None) -> np.ndarray:
        """(N,) folds to leave out | None -> (N | 1, S) factor ((O + a) / (E + a)) ** beta."""
        O, E = self.O.sum(0), self.E.sum(0)
        if exclude_fold is None:
            return (((O + config.prior) / (E + config.prior)) ** config.power)[None]
        pos = {k: i for i, k in enumerate(self.fold_ids.tolist())}
        i = np.array([pos.get(k, -1) for k in np.asarray(exclude_fold).tolist()], np.int64)  # -1: the zero row below
        zero = np.zeros((1, self.O.shape[1]))
        Oo, Eo = O - np.vstack([self.O, zero])[i], E - np.vstack([self.E, zero])[i]
        return ((Oo + config.prior) / (np.maximum(Eo, 0.0) + config.prior)) ** config.power

    def score(self, occ: np.ndarray, config: FactorConfig = FactorConfig(), exclude_fold=None) -> np.ndarray:
        """(N, S) occurrence -> (N, S) occurrence x species factor."""
        return occ * self.factor(config, exclude_fold)


def factor_sweep(factor: SpeciesFactor, occ: np.ndarray, truth: list, folds, grid: list[FactorConfig],
                 per_list: list | None = None) -> pd.DataFrame:
    """Each config's (out-of-fold when ``folds``) mAP and recall@10 on the given lists (one row per config)."""
    return _metric_rows(lambda cfg: factor.score(occ, cfg, folds), grid, truth, ("prior", "power"), per_list)


def species_indices(model, names) -> np.ndarray:
    """(R,) scientific names -> (R,) model species index, -1 where the model lacks the name."""
    uniq = pd.unique(pd.Series(list(names)))
    look = {n: (int(i[0]) if len(i) else -1) for n in uniq for i in [model.match([n])[0]]}
    return np.array([look[n] for n in names], np.int64)


def group_folds(groups: np.ndarray, k: int = 5, seed: int = 0) -> np.ndarray:
    """(R,) group ids -> (R,) fold 0..k-1, one random fold per group (cross-fitting by list)."""
    g = np.asarray(groups)
    return np.random.default_rng(seed).integers(0, k, g.max() + 1)[g]


def list_block_folds(rec_lat, rec_lon, list_lat, list_lon, list_res: int = 4, block_res: int = 3, k: int = 5,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(R,) recordings' and (L,) lists' lat/lon degrees -> ((R,), (L,)) folds 0..k-1 of spatial blocks.

    Lists are the species of one H3 res-``list_res`` cell (and period); a block is the res-``block_res`` *parent of
    that cell*, not the res-``block_res`` cell of each point. H3 cells do not nest: a point's own coarser cell can
    differ from its fine cell's parent, and a list's member recordings near a block edge would land in another fold
    than the list and be counted in its out-of-fold score. With parents every member shares its list's fold.
    """
    rec = h3_cells(np.asarray(rec_lat, float), np.asarray(rec_lon, float), list_res)
    lst = h3_cells(np.asarray(list_lat, float), np.asarray(list_lon, float), list_res)
    blocks = pd.factorize(np.r_[h3_parents(rec, block_res), h3_parents(lst, block_res)])[0]
    folds = group_folds(blocks, k, seed)
    return folds[:len(rec)], folds[len(rec):]


def buffered_leave_out(rec_lat, rec_lon, rec_fold, list_lat, list_lon, list_fold, buffer_km: float) -> np.ndarray:
    """(R,) recordings' lat/lon degrees and folds, (L,) lists' lat/lon and folds 0..K-1, km -> (R, K) bool: recording r
    is left out of the training set when fold k is scored (it is in fold k, or within ``buffer_km`` of a fold-k list).

    Buffered leave-block-out cross-validation (Roberts et al. 2017, Ecography 40:913): a kernel model smooths over
    its bandwidth, so recordings just across a block's border would inform a held-out list near that border; with
    the buffer no recording within ``buffer_km`` of a held-out list's place is used to score it.
    """
    from sklearn.neighbors import BallTree

    rec_fold, list_fold = np.asarray(rec_fold, np.int64), np.asarray(list_fold, np.int64)
    if min(rec_fold.min(initial=0), list_fold.min(initial=0)) < 0:
        raise ValueError("folds must be 0..K-1")
    k = int(max(rec_fold.max(initial=-1), list_fold.max(initial=-1))) + 1
    out = np.zeros((len(rec_fold), k), bool)
    out[np.arange(len(rec_fold)), rec_fold] = True
    if len(list_fold) and len(rec_fold):
        tree = BallTree(np.radians(np.c_[np.asarray(list_lat, float), np.asarray(list_lon, float)]), metric="haversine")
        ind = tree.query_radius(np.radians(np.c_[np.asarray(rec_lat, float), np.asarray(rec_lon, float)]),
                                r=buffer_km / EARTH_KM)
        row = np.repeat(np.arange(len(ind)), [len(i) for i in ind])
        out[row, list_fold[np.concatenate(ind).astype(np.int64)]] = True
    return out


# ---------------------------------------------------------------- place -> ranked species
def rank_species(model, lat: float, lon: float, week: int | None = None, top_k: int = 20,
                 scores: np.ndarray | None = None) -> tuple[pd.DataFrame, float]:
    """One place (+ week) -> (top_k DataFrame rank, species, common_name, probability, expected richness).

    probability is the range model's occurrence (or the given (S,) ``scores``); expected richness is
    the sum of occurrence probabilities over all species (expected number of species present).
    """
    occ = model.prob(np.array([lat]), np.array([lon]), week)[0]
    s = occ if scores is None else np.asarray(scores)
    top = np.argsort(-s, kind="stable")[:top_k]
    df = pd.DataFrame({"rank": np.arange(1, len(top) + 1), "species": [model.species[i] for i in top],
                       "common_name": [model.common_names[i] for i in top], "probability": s[top].astype(float)})
    return df, float(occ.sum())


def read_sites(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """sites CSV (id, latitude, longitude[, date]) -> (good rows with week, ["FILE: row N: problem", ...]).

    Rows as :func:`~soundloc.data.validate.read_rows` numbers them (the header is row 1); a date may carry a
    time after its YYYY-MM-DD ("2020-05-15 06:00"). DataError for a missing column.
    """
    good, errors = read_rows(path, ("id", "latitude", "longitude"), ("date",),
                             {"latitude": "lat", "longitude": "lon", "date": "datetime"}, unique="id")
    good["latitude"], good["longitude"] = good.latitude.astype(float), good.longitude.astype(float)
    good["week"] = pd.Series([week_from_date(v[:10]) for v in (good["date"] if "date" in good else [""] * len(good))],
                             dtype=object)  # None = year-round
    return good, errors


def rank_sites(model, sites: pd.DataFrame, top_k: int = 20) -> pd.DataFrame:
    """Sites (id, latitude, longitude, week) -> long DataFrame id, rank, species, probability (vectorised per week)."""
    out = []
    for wk, g in sites.groupby(sites["week"].fillna(-1).astype(int), sort=False):
        occ = model.prob(g.latitude.to_numpy(), g.longitude.to_numpy(), None if wk == -1 else wk)
        top = np.argsort(-occ, axis=1, kind="stable")[:, :top_k]
        k = top.shape[1]
        out.append(pd.DataFrame({"id": np.repeat(g["id"].to_numpy(), k), "rank": np.tile(np.arange(1, k + 1), len(g)),
                                 "species": np.asarray(model.species)[top.ravel()],
                                 "probability": np.take_along_axis(occ, top, 1).ravel().astype(float),
                                 "_order": np.repeat(g.index.to_numpy(), k)}))
    if not out:
        return pd.DataFrame(columns=["id", "rank", "species", "probability"])
    return pd.concat(out).sort_values(["_order", "rank"]).drop(columns="_order").reset_index(drop=True)


# ---------------------------------------------------------------- name query
def find_species(model, name: str, n_close: int = 5) -> int:
    """Scientific or common name (case-insensitive) -> species index; unknown -> KeyError with closest names."""
    idx, _ = model.match([name])
    if len(idx):
        return int(idx[0])
    key = " ".join(str(name).casefold().split())
    commons = {" ".join(c.casefold().split()): i for i, c in enumerate(model.common_names)}
    if key in commons:
        return commons[key]
    labels = [f"{c} ({s})" for s, c in zip(model.species, model.common_names)]
    pool = {c.casefold(): l for c, l in zip(model.common_names, labels)} | {s.casefold(): l for s, l in zip(model.species, labels)}
    close = difflib.get_close_matches(key, list(pool), n=n_close * 2, cutoff=0.6)
    hint = list(dict.fromkeys(pool[c] for c in close))[:n_close]
    raise KeyError(f"unknown species {name!r}" + (f"; closest: {', '.join(hint)}" if hint else "; no close match"))


# ---------------------------------------------------------------- maps
MONTH_WEEKS = {m: 4 * (m - 1) + 2 for m in range(1, 13)}  # one BirdNET week per month (its 2nd week)


def species_weeks(model, idx: int, points: np.ndarray, weeks=None) -> np.ndarray:
    """Species index, (P, 2) lat/lon points -> (W, P) occurrence for each week (default: one per month)."""
    weeks = list(MONTH_WEEKS.values()) if weeks is None else list(weeks)
    return np.stack([model.prob(points[:, 0], points[:, 1], w, species_idx=[idx])[:, 0] for w in weeks])


def richness_weeks(model, points: np.ndarray, weeks=None) -> np.ndarray:
    """(P, 2) points -> (W, P) expected richness (sum of occurrence over species) per week (default: monthly)."""
    weeks = list(MONTH_WEEKS.values()) if weeks is None else list(weeks)
    return np.stack([model.prob(points[:, 0], points[:, 1], w).sum(1) for w in weeks])


def sound_affinity(model, species_idx, weights, points: np.ndarray, week=None) -> np.ndarray:
    """Detected species (K,) + (K,) weights (e.g. BirdNET max scores), (P, 2) points -> (P,) weighted mean occurrence.

    Where a recording's sound "belongs": high where most of what was heard is expected (GeoCLAP's
    audio -> map, with BirdNET's species as the audio embedding and ranges as the place embedding).
    """
    w = np.asarray(weights, float)
    occ = model.prob(points[:, 0], points[:, 1], week, species_idx=np.asarray(species_idx, np.int64))
    return occ @ (w / w.sum())


def month_layer_map(points: np.ndarray, values: np.ndarray, title: str, step_deg: float, threshold: float = 0.25,
                    cmap: str = "YlOrRd_09"):
    """(P, 2) grid points, (12, P) values -> folium map with one toggleable layer per month (cells >= threshold).

    Kept small: cells are rectangles of the coarse grid with coordinates rounded to 0.01 degrees.
    """
    import branca.colormap as cm
    import folium

    m = folium.Map(location=(20, 0), zoom_start=2, tiles="OpenStreetMap", world_copy_jump=True)
    vmax = float(np.max(values)) or 1.0
    scale = getattr(cm.linear, cmap).scale(0, vmax)
    scale.caption = title
    h = step_deg / 2
    for mo in range(values.shape[0]):
        v = values[mo]
        keep = np.flatnonzero(v >= threshold * vmax)
        feats = [{"type": "Feature", "properties": {"v": round(float(v[i]), 3)},
                  "geometry": {"type": "Polygon", "coordinates": [[[round(x, 2), round(y, 2)] for x, y in (
                      (points[i, 1] - h, points[i, 0] - h), (points[i, 1] + h, points[i, 0] - h),
                      (points[i, 1] + h, points[i, 0] + h), (points[i, 1] - h, points[i, 0] + h),
                      (points[i, 1] - h, points[i, 0] - h))]]}} for i in keep]
        folium.GeoJson({"type": "FeatureCollection", "features": feats}, name=calendar.month_name[mo + 1],
                       show=mo == 0, style_function=lambda f, s=scale: {
                           "fillColor": s(f["properties"]["v"]), "color": None, "weight": 0, "fillOpacity": 0.7}).add_to(m)
    scale.add_to(m)
    folium.LayerControl(collapsed=False).add_to(m)
    _title(m, title)
    return m
