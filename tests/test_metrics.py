"""Metrics equal the benchmark's evaluate_geo.py formula; hand-checked cases; CLI behaviour."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from haversine import haversine as hv_pkg
from sklearn.metrics.pairwise import haversine_distances

from soundloc.cli import main
from soundloc.sphere import EARTH_RADIUS_KM, haversine, haversine_torch, pairwise_km
from soundloc.metrics import errors_km, evaluate, geo_metrics
from soundloc import metrics

KM_PER_DEG = EARTH_RADIUS_KM * math.pi / 180  # 111.19492664455873


def test_hand_computed_distances():
    assert haversine(0, 0, 0, 1) == pytest.approx(KM_PER_DEG, abs=1e-9)
    assert haversine(10, 20, 11, 20) == pytest.approx(KM_PER_DEG, abs=1e-9)  # along a meridian
    assert haversine(0, 0, 0, 180) == pytest.approx(math.pi * EARTH_RADIUS_KM, abs=1e-9)
    assert haversine(90, 0, -90, 0) == pytest.approx(math.pi * EARTH_RADIUS_KM, abs=1e-9)
    assert haversine(0, 179.5, 0, -179.5) == pytest.approx(KM_PER_DEG, abs=1e-9)  # across the antimeridian
    # 60N: a degree of longitude is cos(60) as long on a parallel; the great circle is slightly shorter
    d = haversine(60, 0, 60, 1)
    assert 0.5 * KM_PER_DEG * 0.99999 < d < 0.5 * KM_PER_DEG


def test_against_sklearn_and_haversine_package():
    rng = np.random.default_rng(0)
    a = np.c_[rng.uniform(-90, 90, 500), rng.uniform(-180, 180, 500)]
    b = np.c_[rng.uniform(-90, 90, 500), rng.uniform(-180, 180, 500)]
    ours = haversine(a[:, 0], a[:, 1], b[:, 0], b[:, 1])
    sk = np.array([haversine_distances(np.radians([x]), np.radians([y]))[0, 0] for x, y in zip(a, b)]) * EARTH_RADIUS_KM
    np.testing.assert_allclose(ours, sk, rtol=0, atol=1e-9)
    pkg = np.array([hv_pkg(tuple(x), tuple(y), unit="km") for x, y in zip(a, b)])  # R = 6371.0088 there
    np.testing.assert_allclose(ours, pkg * EARTH_RADIUS_KM / 6371.0088, rtol=1e-12, atol=1e-9)
    # torch (float64) and the all-pairs form agree too
    import torch
    t = haversine_torch(torch.tensor(a), torch.tensor(b)).numpy()
    np.testing.assert_allclose(t, ours, atol=1e-6)
    np.testing.assert_allclose(np.diag(pairwise_km(a, b)), ours, atol=1e-3)


def test_metrics_hand_case():
    d = np.array([0.5, 10, 150, 600, 2000, 9000.0])
    m = geo_metrics(d)
    assert m["median_error"] == pytest.approx((150 + 600) / 2)
    assert m["mean_error"] == pytest.approx(d.mean())
    assert [m[k] for k in ("street", "city", "region", "country", "continent")] == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6])
    assert geo_metrics([25.0])["city"] == 1.0  # thresholds are inclusive (<=), as evaluate_geo.py


def _write(df, path):
    df.rename(columns={"lat": "latitude", "lon": "longitude"}).to_csv(path, index=False)
    return path


def test_cli_eval_gold_and_shifted(tmp_path, mirror, capsys):
    gold_csv = mirror / "xcdc" / "xcdc_gold.csv"
    assert main(["eval", str(gold_csv), "--dataset", "xcdc", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m == {"median_error": 0.0, "mean_error": 0.0, "street": 1.0, "city": 1.0, "region": 1.0, "country": 1.0, "continent": 1.0}
    # shift four recordings north by 0.1, 1, 5 and 30 degrees of latitude: errors are exactly that many degrees
    g = pd.read_csv(gold_csv).rename(columns={"latitude": "lat", "longitude": "lon"})
    g = g[g.lat.abs() < 50].head(4).reset_index(drop=True)
    shift = np.array([0.1, 1, 5, 30])
    pred = g.assign(lat=g.lat + shift)
    assert main(["eval", str(_write(pred, tmp_path / "p.csv")), "--gold", str(_write(g, tmp_path / "g.csv")), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    km = shift * KM_PER_DEG
    assert m["median_error"] == pytest.approx((km[1] + km[2]) / 2, abs=1e-9)
    assert m["mean_error"] == pytest.approx(km.mean(), abs=1e-9)
    assert (m["street"], m["city"], m["region"], m["country"], m["continent"]) == (0.0, 0.25, 0.5, 0.75, 0.75)


def test_ids_must_match(tmp_path, capsys):
    g = pd.DataFrame({"audio_id": ["a", "b", "c"], "lat": [0, 1, 2.0], "lon": [0, 0, 0.0]})
    with pytest.raises(ValueError, match=r"1 gold ids without a prediction \(e.g. \[.c.\]\)"):
        errors_km(g.iloc[:2], g)
    with pytest.raises(ValueError, match="duplicate audio_id 'a'"):
        evaluate(pd.concat([g, g.iloc[:1]]), g)
    for lat, lon in ((95.0, 0.0), (0.0, 190.0), (np.nan, 0.0)):
        bad = g.assign(lat=[0.0, lat, 2.0], lon=[0.0, lon, 0.0])
        with pytest.raises(ValueError, match=r"predictions: 1 rows without valid coordinates, e.g. audio_id 'b'"):
            evaluate(bad, g)
        with pytest.raises(ValueError, match="gold: 1 rows without valid coordinates"):
            evaluate(g, bad)
    p = _write(pd.concat([g, g.iloc[:1]]), tmp_path / "dup.csv")
    assert main(["eval", str(p), "--gold", str(_write(g, tmp_path / "g.csv"))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "dup.csv" in err and "duplicate id" in err
    # rows named as every CSV reader names them (soundloc.data.validate.read_rows): the header is row 1
    assert err.endswith(f"{p}: row 5 (audio_id='a', lat=0.0, lon=0.0): duplicate id"), err
    assert main(["eval", str(tmp_path / "missing.csv"), "--dataset", "xcdc"]) == 2
    assert "missing.csv: no such file" in capsys.readouterr().err


# ---- bootstrap intervals and paired comparisons -----------------------------------------------
from soundloc.metrics import bootstrap_index, bootstrap_metrics, compare, summary_row_ci  # noqa: E402


def test_bootstrap_equals_a_plain_loop_over_the_same_index_matrix():
    d = np.random.default_rng(1).lognormal(6, 1.2, 137)
    idx = bootstrap_index(d.size, 300, seed=4)
    assert idx.shape == (300, 137)
    loop = np.array([[geo_metrics(d[i])[k] for k in ("median_error", "region", "continent")] for i in idx])
    bm = bootstrap_metrics(d, B=300, seed=4)
    for j, k in enumerate(("median_error", "region", "continent")):
        lo, hi = np.quantile(loop[:, j], [0.025, 0.975])
        assert bm.loc[k, "lo"] == pytest.approx(lo) and bm.loc[k, "hi"] == pytest.approx(hi)
        assert bm.loc[k, "estimate"] == pytest.approx(geo_metrics(d)[k])
    # seeded: the same call gives the same interval, another seed another one
    assert bm.equals(bootstrap_metrics(d, B=300, seed=4))
    assert not bm.equals(bootstrap_metrics(d, B=300, seed=5))


def test_bootstrap_agrees_with_scipy():
    from scipy.stats import bootstrap
    d = np.random.default_rng(2).lognormal(6, 1.0, 400)
    bm = bootstrap_metrics(d, B=4000, seed=0)
    ref = bootstrap((d,), np.median, n_resamples=4000, method="percentile", random_state=0).confidence_interval
    width = ref.high - ref.low
    assert abs(bm.loc["median_error", "lo"] - ref.low) < 0.1 * width
    assert abs(bm.loc["median_error", "hi"] - ref.high) < 0.1 * width
    acc = bootstrap(((d <= 750).astype(float),), np.mean, n_resamples=4000, method="percentile", random_state=0)
    assert bm.loc["country", "lo"] == pytest.approx(acc.confidence_interval.low, abs=0.01)
    assert bm.loc["country", "hi"] == pytest.approx(acc.confidence_interval.high, abs=0.01)


def test_compare_calls_better_worse_and_tie():
    rng = np.random.default_rng(3)
    base = rng.lognormal(7, 1.0, 300)
    assert compare(0.5 * base, base)["verdict"] == "better"  # halves every error
    assert compare(2.0 * base, base)["verdict"] == "worse"
    tiny = base * (1 + rng.normal(0, 0.01, base.size))  # noise well inside the interval
    assert compare(tiny, base)["verdict"] == "tie"
    # accuracies: higher is better, so halving errors is "better" there too
    assert compare(0.5 * base, base, metric="continent")["verdict"] == "better"
    r = compare(0.5 * base, base)
    assert r["diff"] == pytest.approx(np.median(0.5 * base) - np.median(base)) and r["lo"] <= r["diff"] <= r["hi"]
    with pytest.raises(ValueError, match="same recordings"):
        compare(base[:10], base)


def test_summary_row_ci_brackets_each_estimate():
    d = np.random.default_rng(5).lognormal(6.5, 1.0, 200)
    row = summary_row_ci("m", d)
    keys = list(row)
    assert keys.index("median_km 95% CI") == keys.index("median_km") + 1
    lo, hi = (float(x.replace(",", "")) for x in row["median_km 95% CI"].strip("[]").split(", "))
    assert lo <= row["median_km"] <= hi
    lo, hi = (float(x) for x in row["region_% 95% CI"].strip("[]").split(", "))
    assert lo <= row["region_%"] <= hi


def test_bootstrap_ci_of_a_proportion_matches_the_normal_approximation():
    from soundloc.metrics import bootstrap_ci
    x = np.r_[np.ones(30), np.zeros(70)]  # 30 % of 100 recordings flagged
    lo, hi = bootstrap_ci(x, B=4000, seed=1)
    se = np.sqrt(0.3 * 0.7 / 100)
    assert lo == pytest.approx(0.3 - 1.96 * se, abs=0.015) and hi == pytest.approx(0.3 + 1.96 * se, abs=0.015)


def test_cluster_bootstrap_equals_the_expanded_resample():
    """Each cluster resample's metrics are those of the sample with every row repeated as often as its cluster."""
    from soundloc.metrics import METRIC_KEYS, _weighted_stats, cluster_counts
    rng = np.random.default_rng(2)
    d, cl = rng.exponential(500, 41), rng.integers(0, 9, 41)
    idx, counts = cluster_counts(cl, B=60, seed=3)
    st = _weighted_stats([d], idx, counts)[0]
    for b in range(60):
        g = geo_metrics(np.repeat(d, counts[b][idx]))
        assert all(st[k][b] == pytest.approx(g[k]) for k in METRIC_KEYS)


def test_grouped_rows_get_the_interval_of_their_groups_not_of_their_members():
    """Ten identical copies of each of 300 errors (10 members sharing a group's prediction) are 300 pieces of
    evidence: resampled by cluster, the interval is that of the 300; resampled by row it is about sqrt(10) too narrow."""
    from soundloc.metrics import bootstrap_metrics
    base = np.random.default_rng(4).exponential(800, 300)
    dup, groups = np.repeat(base, 10), np.repeat(np.arange(300), 10)
    ref = bootstrap_metrics(base)
    by_group = bootstrap_metrics(dup, clusters=groups)
    by_row = bootstrap_metrics(dup)
    for m in ("median_error", "region"):
        w_ref, w_g, w_r = (t.loc[m, "hi"] - t.loc[m, "lo"] for t in (ref, by_group, by_row))
        assert w_g == pytest.approx(w_ref, rel=0.05) and w_r < 0.5 * w_ref
    row = summary_row_ci("m", dup, clusters=groups)
    assert row["median_km 95% CI"] == summary_row_ci("m", base)["median_km 95% CI"]
    with pytest.raises(ValueError, match="labels for"):
        bootstrap_metrics(dup, clusters=groups[:10])


def test_paired_compare_over_clusters_calls_a_duplicated_small_gain_a_tie():
    """A gain that is significant when 10 copies of each recording count as new evidence is a tie over the groups."""
    rng = np.random.default_rng(6)
    base = rng.lognormal(7, 1.0, 200)
    better = base * (1 - 0.06 * rng.random(200)) + rng.normal(0, 80, 200)
    a, b, g = np.repeat(better, 10), np.repeat(base, 10), np.repeat(np.arange(200), 10)
    assert compare(better, base)["verdict"] == "tie"
    assert compare(a, b)["verdict"] != "tie"  # copies counted as evidence
    r = compare(a, b, clusters=g)
    assert r["verdict"] == "tie" and r["diff"] == pytest.approx(np.median(a) - np.median(b))


def test_paired_better_needs_the_interval_not_the_point_estimate():
    """A lower median by noise is a tie (False); a clear paired gain is True; accuracies: higher is better."""
    from soundloc.metrics import paired_better

    rng = np.random.default_rng(0)
    b = rng.uniform(100, 5000, 300)
    noisy = b + rng.normal(0, 800, 300)  # same errors up to noise
    noisy = np.abs(noisy - (np.median(noisy) - np.median(b) + 1.0))  # point estimate just below b's median
    assert np.median(noisy) < np.median(b) and not paired_better(noisy, b)
    assert paired_better(0.5 * b, b) and not paired_better(b, 0.5 * b)
    assert paired_better(np.where(b < 2000, 50.0, b), b, "region")  # more recordings within 200 km
    assert not paired_better(b, np.where(b < 2000, 50.0, b), "region")


def test_holm_adjusts_as_worked_by_hand():
    from soundloc.metrics import holm

    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max -> 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1, order kept
    np.testing.assert_allclose(holm([0.02]), [0.02])  # one test: unadjusted
    with pytest.raises(ValueError, match="holm: p-values"):
        holm([0.2, 1.5])


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    from soundloc.metrics import holm

    p = np.random.default_rng(3).uniform(0, 0.2, 12) ** 2
    p[[2, 7]] = p[5]  # ties
    np.testing.assert_allclose(holm(p), multitest.multipletests(p, method="holm")[1])


def test_compare_holm_p_values_and_adjusted_verdicts():
    """p from the paired bootstrap's resamples; a gain that holds alone can be a tie once five are read together."""
    from soundloc.metrics import bootstrap_index, compare, compare_holm

    rng = np.random.default_rng(0)
    b = rng.uniform(100, 5000, 300)
    noise = rng.normal(0, 800, 300)
    a = [np.abs(b + noise - s) for s in (350, 0, 100, 1500, -1500)]
    r = compare_holm([(x, b) for x in a])
    idx = bootstrap_index(300, seed=0)
    for x, row in zip(a, r.itertuples()):
        d = np.median(x[idx], 1) - np.median(b[idx], 1)  # the same resamples, by hand
        assert row.p == pytest.approx(min(1, 2 * min((d <= 0).mean(), (d >= 0).mean())))
        alone = compare(x, b)  # the interval and its verdict are compare's, unadjusted
        assert (row.diff, row.lo, row.hi, row.verdict) == (alone["diff"], alone["lo"], alone["hi"], alone["verdict"])
    assert list(r.verdict) == ["better", "tie", "tie", "better", "worse"]
    assert 0.05 / 3 < r.p[0] < 0.05  # below 0.05 alone, above 0.05 once multiplied by 3 (third smallest of 5)
    np.testing.assert_allclose(r["p_holm"][0], 3 * r.p[0])
    assert list(r["verdict_holm"]) == ["tie", "tie", "tie", "better", "worse"]
    one = compare_holm([(a[0], b)])  # alone: the interval's verdict
    assert one["verdict_holm"][0] == one.verdict[0] == "better" and one["p_holm"][0] == one.p[0]
    acc = compare_holm([(np.where(b < 2000, 50.0, b), b)], "region")  # accuracies: higher is better
    assert acc["verdict_holm"][0] == "better" and acc.p[0] == 0


def test_relative_gain_and_its_cluster_bootstrap_by_hand():
    from soundloc.metrics import cluster_counts, relative_gain

    rng = np.random.default_rng(5)
    b = rng.uniform(100, 5000, 120)
    r = relative_gain(0.5 * b, b)  # a halves every error: the gain is 0.5 on every resample
    assert (r["gain"], r["lo"], r["hi"]) == pytest.approx((0.5, 0.5, 0.5))
    groups = np.repeat(np.arange(30), 4)  # 30 linked groups of 4 recordings that share their gain, as a group's
    a = b * rng.uniform(0.3, 1.1, 30)[groups]  # members share one prediction
    r = relative_gain(a, b, B=300, seed=2, clusters=groups)
    assert r["gain"] == pytest.approx(1 - np.median(a) / np.median(b))
    # by hand: each resample repeats every row as often as its group is drawn, then takes the medians' ratio
    cl, counts = cluster_counts(groups, 300, 2)
    g = [1 - np.median(np.repeat(a, c[cl])) / np.median(np.repeat(b, c[cl])) for c in counts]
    assert (r["lo"], r["hi"]) == pytest.approx(tuple(np.quantile(g, [0.025, 0.975])))
    # resampling groups whole gives a wider interval than treating the 4 members as independent
    r1 = relative_gain(a, b, B=300, seed=2)
    assert r["hi"] - r["lo"] > r1["hi"] - r1["lo"] and r["lo"] < r["gain"] < r["hi"]
    with pytest.raises(ValueError, match="relative_gain is for error metrics"):
        relative_gain(a, b, "region")


def test_p_text_names_the_bootstrap_floor():
    # 1,000 resamples resolve a two-sided p down to 0.002; Holm over 4 tests multiplies that floor by 4
    assert metrics.p_text(0.18) == "p = 0.180"
    assert metrics.p_text(0.0) == "p < 0.002"
    assert metrics.p_text(0.0, m=4) == "p < 0.008"
    assert metrics.p_text(0.008, m=4) == "p = 0.008"
