"""Geolocation metrics, one implementation everywhere (the benchmark's ``evaluate_geo.py``)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .data.validate import DataError
from .geo import haversine

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

    Ids must match exactly (as the benchmark asserts) and be unique in each frame.
    """
    for name, df in (("predictions", pred), ("gold", true)):
        dup = df["audio_id"].duplicated()
        if dup.any():
            raise DataError(f"{name}: duplicate audio_id {df.loc[dup, 'audio_id'].iloc[0]!r} "
                            f"({int(dup.sum())} duplicates)")
    p, t = pred.set_index(pred["audio_id"].astype(str)), true.set_index(true["audio_id"].astype(str))
    missing, extra = t.index.difference(p.index), p.index.difference(t.index)
    if len(missing) or len(extra):
        raise DataError(f"audio ids do not match the gold set: {len(missing)} missing "
                        f"(e.g. {list(missing[:3])}), {len(extra)} unknown (e.g. {list(extra[:3])})")
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


def summary_table(results: dict[str, np.ndarray]) -> pd.DataFrame:
    """{method: (N,) errors km} -> DataFrame with one ``summary_row`` per method."""
    return pd.DataFrame([summary_row(k, v) for k, v in results.items()])
