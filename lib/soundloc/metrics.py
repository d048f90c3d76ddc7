"""Geolocation metrics, one implementation everywhere (the benchmark's ``evaluate_geo.py``)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .data.validate import DataError
from .sphere import haversine

THRESHOLDS_KM = {"street": 1, "city": 25, "region": 200, "country": 750, "continent": 2500}
METRIC_KEYS = ("median_error", "mean_error", *THRESHOLDS_KM)


def geo_metrics(dist_km) -> dict[str, float]:
    """(N,) errors km -> median/mean error (km) and accuracy at each threshold (fraction, ``<=``)."""
    d = np.asarray(dist_km, float)
    if d.size == 0:
        raise ValueError("no distances to summarise")
    if not np.isfinite(d).all():
        raise ValueError(f"{(~np.isfinite(d)).sum()} non-finite distances")
    out = {"median_error": float(np.median(d)), "mean_error": float(np.mean(d))}
    out.update({k: float(np.mean(d <= t)) for k, t in THRESHOLDS_KM.items()})
    return out


def errors_km(pred: pd.DataFrame, true: pd.DataFrame) -> pd.Series:
    """Align two (audio_id, lat, lon) frames by id -> Series of errors (km) indexed by audio_id.

    Ids must match exactly (as the benchmark asserts) and be unique in each frame; coordinates must be finite
    degrees within [-90, 90] x [-180, 180] (the benchmark's script rejects others too).
    """
    for name, df in (("predictions", pred), ("gold", true)):
        dup = df["audio_id"].duplicated()
        if dup.any():
            raise DataError(f"{name}: duplicate audio_id {df.loc[dup, 'audio_id'].iloc[0]!r} "
                            f"({int(dup.sum())} duplicates)")
        lat, lon = (pd.to_numeric(df[c], errors="coerce").to_numpy(float) for c in ("lat", "lon"))
        bad = ~(np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{name}: {int(bad.sum())} rows without valid coordinates, e.g. audio_id "
                            f"{df['audio_id'].iloc[i]!r} at ({df['lat'].iloc[i]}, {df['lon'].iloc[i]}): need finite "
                            "degrees, lat in [-90, 90], lon in [-180, 180]")
    p, t = pred.set_index(pred["audio_id"].astype(str)), true.set_index(true["audio_id"].astype(str))
    missing, extra = t.index.difference(p.index), p.index.difference(t.index)
    if len(missing) or len(extra):
        parts = [f"{len(ids)} {what} (e.g. {list(ids[:3])})" for ids, what in
                 ((missing, "gold ids without a prediction"), (extra, "predicted ids not in the gold set")) if len(ids)]
        raise DataError(f"audio ids do not match the gold set: {', '.join(parts)}")
    p = p.loc[t.index]
    return pd.Series(haversine(p["lat"].to_numpy(float), p["lon"].to_numpy(float),
                               t["lat"].to_numpy(float), t["lon"].to_numpy(float)), index=t.index, name="error_km")


def evaluate(pred: pd.DataFrame, true: pd.DataFrame) -> dict[str, float]:
    """Benchmark evaluation of predictions against gold -> metric dict (accuracies as fractions)."""
    return geo_metrics(errors_km(pred, true))


def summary_row(name: str, dist_km, **extra) -> dict:
    """One table row: name, median/mean km, accuracies in percent (the paper's columns)."""
    m = geo_metrics(dist_km)
    row = {"method": name, **extra, "n": int(np.size(dist_km)), "median_km": m["median_error"], "mean_km": m["mean_error"]}
    row.update({f"{k}_%": 100 * m[k] for k in THRESHOLDS_KM})
    return row


def summary_table(results: dict[str, np.ndarray], ci: bool = False, seed: int = 0) -> pd.DataFrame:
    """{method: (N,) errors km} -> DataFrame with one ``summary_row`` per method (``summary_row_ci`` if ``ci``)."""
    if ci:
        return pd.DataFrame([summary_row_ci(k, v, seed=seed) for k, v in results.items()])
    return pd.DataFrame([summary_row(k, v) for k, v in results.items()])


# ---- intervals: percentile bootstrap over recordings (or clusters of them) ------------------------------------------
BOOTSTRAP_B = 1000  # resamples: the 2.5/97.5 percentiles of 1,000 draws move by < 1 % of the CI width


def bootstrap_index(n: int, B: int = BOOTSTRAP_B, seed: int = 0) -> np.ndarray:
    """One seeded (B, n) matrix of resampled row indices; reuse it to pair two methods' errors."""
    if n < 1:
        raise ValueError("bootstrap needs at least one recording")
    return np.random.default_rng(seed).integers(0, n, size=(B, n))


def _stats(D: np.ndarray) -> dict[str, np.ndarray]:
    """(B, n) errors km -> {metric: (B,)}: median/mean km, accuracies as fractions (vectorised)."""
    out = {"median_error": np.median(D, axis=1), "mean_error": D.mean(axis=1)}
    out.update({k: (D <= t).mean(axis=1) for k, t in THRESHOLDS_KM.items()})
    return out


def cluster_counts(clusters, B: int = BOOTSTRAP_B, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n,) cluster labels -> ((n,) cluster index 0..G-1 of each row, (B, G) int32 times each cluster is drawn).

    One seeded cluster bootstrap: G clusters drawn with replacement per resample; a row counts as often as its
    cluster is drawn. Rows that are not independent (members of one aggregation group share its prediction)
    must be resampled together, or the interval is as narrow as if every row were new evidence.
    """
    cl = pd.factorize(np.asarray(clusters).ravel())[0]
    if cl.size < 1:
        raise ValueError("bootstrap needs at least one recording")
    G = int(cl.max()) + 1
    draws = np.random.default_rng(seed).integers(0, G, size=(B, G))
    counts = np.zeros((B, G), np.int32)
    np.add.at(counts, (np.repeat(np.arange(B), G), draws.ravel()), 1)
    return cl, counts


def _weighted_stats(ds: list[np.ndarray], cl: np.ndarray, counts: np.ndarray) -> list[dict[str, np.ndarray]]:
    """K (n,) error arrays on the same rows, (n,) cluster index, (B, G) draw counts -> K {metric: (B,)}.

    Each resample's statistics are those of the expanded sample (row i repeated counts[b, cl[i]] times); its
    median is numpy's (the mean of the two middle values when the total is even). Resamples are processed in
    blocks of about 20 M numbers.
    """
    n, B = cl.size, counts.shape[0]
    out = [{k: np.empty(B) for k in METRIC_KEYS} for _ in ds]
    step = max(1, int(2e7 // max(n, 1)))
    for s in range(0, B, step):
        W = counts[s:s + step][:, cl].astype(np.float64)  # (b, n) weights
        tot = W.sum(1)
        mid = np.stack([(tot - 1) // 2, tot // 2], 1)  # 0-based positions of the middle value(s) in the expansion
        for d, o in zip(ds, out):
            order = np.argsort(d, kind="stable")
            cum = np.cumsum(W[:, order], axis=1)
            pos = np.stack([(cum <= mid[:, [j]]).sum(1) for j in (0, 1)], 1)  # sorted index holding each position
            o["median_error"][s:s + step] = d[order][pos].mean(1)
            o["mean_error"][s:s + step] = W @ d / tot
            for k, t in THRESHOLDS_KM.items():
                o[k][s:s + step] = W @ (d <= t).astype(np.float64) / tot
    return out


def _check_clusters(clusters, n: int) -> np.ndarray:
    """(n,) cluster labels, checked against the number of rows."""
    c = np.asarray(clusters).ravel()
    if c.size != n:
        raise ValueError(f"clusters: {c.size} labels for {n} recordings")
    return c


def bootstrap_metrics(dist_km, B: int = BOOTSTRAP_B, seed: int = 0, level: float = 0.95,
                      index: np.ndarray | None = None, clusters=None) -> pd.DataFrame:
    """(n,) errors km -> DataFrame indexed by metric with estimate, lo, hi (percentile bootstrap CI).

    Recordings are resampled with replacement by one (B, n) index matrix (``bootstrap_index``); with
    ``clusters`` ((n,) labels) whole clusters are resampled instead (``cluster_counts``). Accuracies are
    fractions, as in ``geo_metrics``.
    """
    d = np.asarray(dist_km, float)
    point = geo_metrics(d)
    a = (1 - level) / 2
    if clusters is not None:
        if index is not None:
            raise ValueError("bootstrap_metrics: give index or clusters, not both")
        stats = _weighted_stats([d], *cluster_counts(_check_clusters(clusters, d.size), B, seed))[0]
    else:
        stats = _stats(d[bootstrap_index(d.size, B, seed) if index is None else index])
    rows = {k: (point[k], *np.quantile(v, [a, 1 - a])) for k, v in stats.items()}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["estimate", "lo", "hi"])


def bootstrap_ci(values, stat: str = "mean", B: int = BOOTSTRAP_B, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """(n,) values (e.g. 0/1 outcomes of a verdict) -> percentile bootstrap CI of their mean or median."""
    x = np.asarray(values, float)
    fn = {"mean": np.mean, "median": np.median}[stat]
    a = (1 - level) / 2
    lo, hi = np.quantile(fn(x[bootstrap_index(x.size, B, seed)], axis=1), [a, 1 - a])
    return float(lo), float(hi)


def _paired_stats(dist_a, dist_b, metric: str, B: int, seed: int, clusters) -> tuple[np.ndarray, np.ndarray]:
    """(n,) errors km of a and b on the same recordings -> (B,) ``metric`` of a and (B,) of b, both on the same
    bootstrap resamples (of recordings, or of whole ``clusters``)."""
    a, b = np.asarray(dist_a, float), np.asarray(dist_b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same recordings: {a.shape} vs {b.shape}")
    if metric not in METRIC_KEYS:
        raise ValueError(f"unknown metric {metric!r}; one of {METRIC_KEYS}")
    if clusters is not None:
        sa, sb = _weighted_stats([a, b], *cluster_counts(_check_clusters(clusters, a.size), B, seed))
    else:
        idx = bootstrap_index(a.size, B, seed)
        sa, sb = _stats(a[idx]), _stats(b[idx])
    return sa[metric], sb[metric]


def _paired_diffs(dist_a, dist_b, metric: str, B: int, seed: int, clusters) -> tuple[np.ndarray, float]:
    """(n,) errors km of a and b on the same recordings -> ((B,) paired bootstrap draws of a - b on ``metric``,
    the point estimate a - b)."""
    sa, sb = _paired_stats(dist_a, dist_b, metric, B, seed, clusters)
    return sa - sb, geo_metrics(dist_a)[metric] - geo_metrics(dist_b)[metric]


def relative_gain(dist_a, dist_b, metric: str = "median_error", B: int = BOOTSTRAP_B, seed: int = 0,
                  level: float = 0.95, clusters=None) -> dict:
    """(n,) errors km of a and b on the same recordings -> {"gain", "lo", "hi"}: the share of b's median (or
    mean) error that a removes, 1 - metric(a) / metric(b), with its paired percentile bootstrap interval.

    ``clusters`` ((n,) labels) resamples whole clusters, as in :func:`compare`; a gain of 0.3 is "30 % lower".
    """
    if not metric.endswith("_error"):
        raise ValueError(f"relative_gain is for error metrics (median_error, mean_error), not {metric!r}")
    sa, sb = _paired_stats(dist_a, dist_b, metric, B, seed, clusters)
    q = (1 - level) / 2
    lo, hi = np.quantile(1 - sa / sb, [q, 1 - q])
    return {"metric": metric, "gain": float(1 - geo_metrics(dist_a)[metric] / geo_metrics(dist_b)[metric]),
            "lo": float(lo), "hi": float(hi)}


def _verdict(a_smaller: bool | None, metric: str) -> str:
    """Which way a differs from b (None: no difference shown) -> "better" / "worse" / "tie" for a."""
    if a_smaller is None:
        return "tie"
    return "better" if a_smaller == metric.endswith("_error") else "worse"


def _ci_row(diff: np.ndarray, est: float, metric: str, level: float) -> dict:
    """(B,) bootstrap draws of a - b, its point estimate -> compare's dict (the verdict from the interval)."""
    q = (1 - level) / 2
    lo, hi = np.quantile(diff, [q, 1 - q])
    verdict = _verdict(bool(hi < 0) if (lo > 0 or hi < 0) else None, metric)
    return {"metric": metric, "diff": float(est), "lo": float(lo), "hi": float(hi), "verdict": verdict}


def compare(dist_a, dist_b, metric: str = "median_error", B: int = BOOTSTRAP_B, seed: int = 0,
            level: float = 0.95, clusters=None) -> dict:
    """Paired bootstrap of a - b on one metric over the same recordings -> diff, lo, hi, verdict.

    ``clusters`` ((n,) labels): whole clusters are resampled (``cluster_counts``), for rows that are not independent.
    ``verdict`` is "better"/"worse" for a when the CI of the difference excludes 0 (lower is better for
    km, higher for accuracies), else "tie": a difference inside the interval is not a gain.
    """
    return _ci_row(*_paired_diffs(dist_a, dist_b, metric, B, seed, clusters), metric, level)


def paired_better(dist_a, dist_b, metric: str = "median_error", B: int = BOOTSTRAP_B, seed: int = 0,
                  clusters=None) -> bool:
    """(n,) errors km of a and b on the same recordings -> True only when a is better on ``metric`` by the
    paired bootstrap (:func:`compare`: the 95 % interval of a - b excludes 0 on a's side).

    For a reading's "a beats b": a lower median (or higher accuracy) inside the interval is a tie, not a gain.
    Several such statements read together need :func:`compare_holm`.
    """
    return compare(dist_a, dist_b, metric, B=B, seed=seed, clusters=clusters)["verdict"] == "better"


def holm(pvalues) -> np.ndarray:
    """(m,) p-values of m tests read together -> (m,) Holm-Bonferroni adjusted p-values (reject where <= alpha).

    Sorted ascending, the i-th smallest (i = 1..m) is multiplied by m - i + 1, kept non-decreasing in that
    order (running maximum) and capped at 1; this controls the family-wise error rate for any dependence
    between the tests (as ``statsmodels.stats.multitest.multipletests(method="holm")``).
    """
    p = np.asarray(pvalues, float)
    if p.ndim != 1 or not ((p >= 0) & (p <= 1)).all():
        raise ValueError(f"holm: p-values must be a 1-D array in [0, 1], got {p!r}")
    order = np.argsort(p, kind="stable")
    adj = np.empty_like(p)
    adj[order] = np.minimum(1.0, np.maximum.accumulate((p.size - np.arange(p.size)) * p[order]))
    return adj


def compare_holm(pairs, metric: str = "median_error", B: int = BOOTSTRAP_B, seed: int = 0, level: float = 0.95,
                 clusters=None) -> pd.DataFrame:
    """[(a, b) (n,) errors km on the same recordings, one per comparison read together] -> one row per pair:
    :func:`compare`'s metric, diff, lo, hi, verdict (each alone), then "p" and "p_holm" and "verdict_holm".

    p is the paired bootstrap's two-sided p-value for a - b = 0, 2 * min(P*(diff <= 0), P*(diff >= 0)) over
    the B resamples (capped at 1; 0 means below 2/B, :func:`p_text`); "p_holm" is its Holm-Bonferroni adjustment over
    the pairs (:func:`holm`), and "verdict_holm" is better / worse for a only where "p_holm" < 1 - ``level``
    (the family-wise error rate over all pairs stays below it), else "tie". lo, hi stay the unadjusted
    intervals. All pairs use the same seed (the same resamples when they share the recordings).
    """
    pairs = list(pairs)
    if not pairs:
        raise ValueError("compare_holm needs at least one (a, b) pair")
    rows, below, above = [], [], []
    for a, b in pairs:  # a handful of comparisons; each one is vectorised over its resamples
        diff, est = _paired_diffs(a, b, metric, B, seed, clusters)
        rows.append(_ci_row(diff, est, metric, level))
        below.append(np.mean(diff <= 0))
        above.append(np.mean(diff >= 0))
    below, above = np.array(below), np.array(above)
    out = pd.DataFrame(rows)
    out["p"] = np.minimum(1.0, 2 * np.minimum(below, above))
    out["p_holm"] = holm(out["p"].to_numpy())
    # a is smaller where the resamples at or above 0 are the rarer side
    out["verdict_holm"] = [_verdict(bool(ab < be) if ph < 1 - level else None, metric)
                            for ab, be, ph in zip(above, below, out["p_holm"])]
    return out


def p_text(p: float, B: int = BOOTSTRAP_B, m: int = 1) -> str:
    """A bootstrap p-value as text, "p = 0.180", or "p < 0.008" where no resample crossed 0: the two-sided
    bootstrap p cannot resolve below 2 / ``B``, Holm's adjustment over ``m`` tests below 2 m / B."""
    floor = min(1.0, 2 * m / B)
    return f"p < {floor:.3g}" if p < floor else f"p = {p:.3f}"


def ci_text(lo: float, hi: float, digits: int) -> str:
    """A CI as table text, e.g. ``[912, 1,043]``."""
    return f"[{lo:,.{digits}f}, {hi:,.{digits}f}]"


def summary_row_ci(name: str, dist_km, B: int = BOOTSTRAP_B, seed: int = 0, clusters=None, **extra) -> dict:
    """``summary_row`` with a 95 % bootstrap CI after the median and each accuracy (over recordings, or over
    ``clusters`` ((n,) labels) when rows are not independent)."""
    row = summary_row(name, dist_km, **extra)
    bm = bootstrap_metrics(dist_km, B=B, seed=seed, clusters=clusters)
    ci = {"median_km": ci_text(bm.lo["median_error"], bm.hi["median_error"], 0)}
    ci.update({f"{k}_%": ci_text(100 * bm.lo[k], 100 * bm.hi[k], 1) for k in THRESHOLDS_KM})
    out = {}
    for k, v in row.items():
        out[k] = v
        if k in ci:
            out[f"{k} 95% CI"] = ci[k]
    return out


# ---- training seeds: spread over seeds beside the bootstrap over recordings ------------------------

def seed_summary(per_seed: dict[int, dict[str, np.ndarray]], B: int = BOOTSTRAP_B, seed: int = 0) -> pd.DataFrame:
    """{training seed: {method: (N,) errors km}} -> one row per method: each ``summary_row`` column's mean over
    the training seeds, its sd over them ("<col> seed sd", NaN with one seed) and the per-seed 95 % bootstrap
    CIs over recordings ("<col> 95% CI", one interval per seed in seed order, joined by "; ")."""
    seeds = list(per_seed)
    if not seeds:
        raise ValueError("seed_summary needs at least one training seed")
    rows = []
    for m in per_seed[seeds[0]]:
        missing = [s for s in seeds if m not in per_seed[s]]
        if missing:
            raise ValueError(f"seed_summary: method {m!r} has no errors for training seed(s) {missing}")
        df = pd.DataFrame([summary_row_ci(m, per_seed[s][m], B=B, seed=seed) for s in seeds])
        if df["n"].nunique() != 1:
            raise ValueError(f"seed_summary: method {m!r} was evaluated on different test sizes {sorted(df['n'])}")
        row = {"method": m, "n": int(df["n"].iloc[0])}
        for c in df.columns.drop(["method", "n"]):
            if c.endswith("95% CI"):
                row[c] = "; ".join(df[c])
            else:
                row[c] = float(df[c].mean())
                row[f"{c} seed sd"] = float(df[c].std(ddof=1)) if len(seeds) > 1 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def seed_compare(pairs, metric: str = "median_error", B: int = BOOTSTRAP_B, seed: int = 0,
                 level: float = 0.95) -> dict:
    """[(a, b) (N,) errors km, one pair per training seed] -> paired ``compare`` per seed, pooled.

    ``diff``: mean over seeds of a - b; ``seed_sd``: sd of the per-seed differences (0 with one seed);
    ``lo``/``hi``: the envelope of the per-seed bootstrap intervals. A gain ("better"/"worse") needs both:
    the envelope excludes 0 (every seed's interval on the same side) and |diff| > ``seed_sd``; anything
    inside the seed spread or a bootstrap interval is a "tie".
    """
    per = [compare(a, b, metric, B, seed, level) for a, b in pairs]
    if not per:
        raise ValueError("seed_compare needs at least one (a, b) pair")
    d = np.array([r["diff"] for r in per])
    sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    lo, hi = min(r["lo"] for r in per), max(r["hi"] for r in per)
    verdict = "tie"
    if (lo > 0 or hi < 0) and abs(d.mean()) > sd:
        verdict = "better" if (hi < 0) == metric.endswith("_error") else "worse"
    return {"metric": metric, "seeds": len(per), "diff": float(d.mean()), "seed_sd": sd, "lo": float(lo),
            "hi": float(hi), "verdict": verdict, "seed_verdicts": ", ".join(r["verdict"] for r in per)}
