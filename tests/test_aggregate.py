"""Spatiotemporal grouping (soundloc.aggregate): keys, group-mean posteriors, streaming sums, species per group."""
import numpy as np
import pandas as pd
import pytest
import torch

from soundloc import aggregate as agg
from soundloc.sphere import h3_cells
from soundloc.heads import H3Classes, h3_hierarchy, hierarchical_decode

PTS = np.array([[0.0, 0.0], [10.0, 10.0], [20.0, 20.0]])  # three gallery points (lat, lon)


def _frame(dates, lat=(48.85,), lon=(2.35,), species=None):
    n = len(dates)
    lat = list(lat) * n if len(lat) == 1 else list(lat)
    lon = list(lon) * n if len(lon) == 1 else list(lon)
    return pd.DataFrame({"lat": lat, "lon": lon, "date": dates, "week": 1,
                         "species": species or ["a"] * n})


def test_two_recordings_in_one_group_get_the_averaged_argmax():
    # alone, recording 0 says point 0 (0.5 > 0.4) and recording 1 says point 2; their mean says point 1
    post = np.array([[0.5, 0.4, 0.1], [0.0, 0.45, 0.55]], np.float32)
    src = agg.PosteriorSource.from_matrix(post, PTS)
    preds = agg.grouped_predictions(src, {"none": np.array([0, 1]), "both": np.array([0, 0])}, progress=False)
    np.testing.assert_array_equal(preds["none"], PTS[[0, 2]])
    np.testing.assert_array_equal(preds["both"], PTS[[1, 1]])


def test_streaming_sums_equal_in_memory_average_in_any_chunking_and_budget():
    rng = np.random.default_rng(0)
    post = rng.dirichlet(np.ones(50), size=203).astype(np.float32)
    groups = rng.integers(0, 40, 203)
    groups = pd.factorize(groups)[0]
    want = agg.average_posteriors(post, groups)
    src = agg.PosteriorSource.from_matrix(post, rng.uniform(-60, 60, (50, 2)))
    src.order = rng.permutation(203)  # chunks in a shuffled order
    means = agg.group_means(src, groups, chunk=17)
    np.testing.assert_allclose(means[groups], want, rtol=1e-5, atol=1e-7)
    # whole pipeline with a tiny budget (several passes) == argmax of the in-memory averages
    grp = {"g": groups, "none": np.arange(203)}
    for budget in (1e9, 8 * 50 * 3):  # one pass; three groups per pass
        preds = agg.grouped_predictions(src, grp, chunk=17, budget_bytes=budget, progress=False)
        pts = src.decode(torch.as_tensor(want))
        np.testing.assert_array_equal(preds["g"], pts)
        np.testing.assert_array_equal(preds["none"], src.decode(torch.as_tensor(post)))


def test_group_keys_by_period_on_hand_made_dates():
    # 2023-01-01 is a Sunday: ISO week 52 of 2022; 2023-01-02 opens ISO week 1 of 2023
    df = _frame(["2023-01-01", "2023-01-02", "2023-01-08", "2023-01-09", "2023-02-01", "2024-02-01"])
    ids = {p: agg.group_ids(df, 5, p) for p in agg.PERIODS}
    assert ids["all"].tolist() == [0, 0, 0, 0, 0, 0]
    assert ids["year"].tolist() == [0, 0, 0, 0, 0, 1]
    assert ids["month"].tolist() == [0, 0, 0, 0, 1, 2]
    assert ids["week"].tolist() == [0, 1, 1, 2, 3, 4]
    assert agg.period_key(df, "week").tolist()[:2] == ["2022-W52", "2023-W01"]
    assert agg.group_ids(df, None).tolist() == list(range(6))
    with pytest.raises(ValueError, match="period"):
        agg.group_ids(df, 5, "day")
    with pytest.raises(ValueError, match="valid date"):
        agg.group_ids(_frame(["2023-01-01", "not a date"]), 5, "week")


def test_res5_vs_res6_cells():
    # two points 3 km apart, chosen to lie in one res-5 cell but two res-6 cells
    lat, lon = 48.85, 2.35
    c5, c6 = h3_cells([lat], [lon], 5)[0], h3_cells([lat], [lon], 6)[0]
    grid = np.array([[lat + dy, lon + dx] for dy in np.linspace(-0.05, 0.05, 11) for dx in np.linspace(-0.05, 0.05, 11)])
    same5 = h3_cells(grid[:, 0], grid[:, 1], 5) == c5
    other6 = h3_cells(grid[:, 0], grid[:, 1], 6) != c6
    j = np.flatnonzero(same5 & other6)[0]
    df = _frame(["2023-05-01", "2023-05-02"], lat=(lat, grid[j, 0]), lon=(lon, grid[j, 1]))
    assert agg.group_ids(df, 5, "all").tolist() == [0, 0]
    assert agg.group_ids(df, 6, "all").tolist() == [0, 1]
    g = agg.all_groupings(df)
    assert g["H3 res 5 + week"].tolist() == [0, 0] and g["H3 res 6 + week"].tolist() == [0, 1]
    assert g["No grouping"].tolist() == [0, 1]


def test_species_per_group_counts():
    df = _frame(["2023-05-01"] * 6, species=["a", "a", "b", "c", "c", "c"])
    groups = {"g": np.array([0, 0, 1, 1, 2, 3]), "one": np.zeros(6, int)}
    t = agg.species_per_group(df, groups).set_index("grouping")
    # group 0: {a}; group 1: {b, c}; groups 2, 3: {c} -> 3 of 4 groups hold one species
    assert t.loc["g", "groups"] == 4 and t.loc["g", "1 species (%)"] == 75.0 and t.loc["g", "2 species (%)"] == 25.0
    assert t.loc["g", "mean species"] == pytest.approx(5 / 4)
    assert t.loc["one", "3 species (%)"] == 100.0
    multi = agg.species_per_group(df, groups, min_recordings=2).set_index("grouping")
    assert multi.loc["g", "groups"] == 2 and multi.loc["g", "1 species (%)"] == 50.0
    lists = agg.species_lists(df, groups["g"]).set_index("group")
    assert lists.loc[1, "species"] == ["b", "c"] and lists.loc[1, "n_species"] == 2


def test_hierarchical_posterior_argmax_is_the_sum_decoding():
    rng = np.random.default_rng(1)
    lat, lon = rng.uniform(-60, 70, 400), rng.uniform(-180, 180, 400)
    classes = [H3Classes.from_training(lat, lon, r) for r in (0, 1, 2)]
    probs = [torch.as_tensor(rng.dirichlet(np.ones(len(c)), size=25), dtype=torch.float32) for c in classes]
    hier = h3_hierarchy(classes)
    P = agg.hierarchical_posterior(probs, hier)
    assert P.shape == (25, len(classes[2])) and torch.allclose(P.sum(1), torch.ones(25))
    assert torch.equal(P.argmax(1), hierarchical_decode(probs, hierarchy=hier, mode="sum"))


def test_subset_by_cells_keeps_whole_cells():
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"lat": rng.uniform(40, 50, 500).round(1), "lon": rng.uniform(0, 10, 500).round(1)})
    sub = agg.subset_by_cells(df, 100, res=5, seed=0)
    assert len(sub) >= 100
    c_all, c_sub = h3_cells(df.lat, df.lon, 5), h3_cells(sub.lat, sub.lon, 5)
    kept = set(c_sub)
    assert np.isin(c_all, list(kept)).sum() == len(sub)  # every recording of a kept cell is in


def test_linked_groups_hold_every_group_of_every_grouping_whole():
    """A straddling res-6 cell joins two res-5 groups; otherwise clusters are exactly the coarsest groups."""
    g5 = np.array([0, 0, 1, 1, 2, 2, 3])
    g6 = np.array([0, 1, 1, 2, 3, 3, 4])  # group 1 straddles res-5 groups 0 and 1
    cl = agg.linked_groups({"none": np.arange(7), "res5": g5, "res6": g6})
    assert len(set(cl[[0, 1, 2, 3]])) == 1 and cl[4] == cl[5] and len({cl[0], cl[4], cl[6]}) == 3
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"lat": rng.uniform(40, 50, 400), "lon": rng.uniform(0, 10, 400),
                       "date": pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 700, 400), "D")})
    groupings = agg.all_groupings(df)
    cl = agg.linked_groups(groupings)
    for g in groupings.values():  # no group is split between clusters
        assert (pd.Series(cl).groupby(g).nunique() == 1).all()
    with pytest.raises(ValueError, match="different lengths"):
        agg.linked_groups({"a": np.arange(3), "b": np.arange(4)})


def test_grouped_table_intervals_resample_groups_not_members():
    """One group of 40 recordings shares one prediction: over groups its rows are one piece of evidence, so the
    interval is wider than the one that counts each member as new."""
    rng = np.random.default_rng(1)
    true = np.c_[rng.uniform(-50, 50, 200), rng.uniform(-150, 150, 200)]
    preds = {"none": true + rng.normal(0, 3, (200, 2)), "big": true.copy()}
    groupings = {"none": np.arange(200), "big": np.r_[np.zeros(40, int), np.arange(1, 161)]}
    preds["big"][:40] = true[0] + 20  # every member of the big group gets one far-off point
    by_group = agg.grouped_table(preds, true, groupings, ci=True).set_index("method")
    by_row = agg.grouped_table(preds, true, groupings, ci=True, clusters=np.arange(200)).set_index("method")
    width = lambda t: np.subtract(*[float(x) for x in t.loc["big", "region_% 95% CI"].strip("[]").split(", ")][::-1])  # noqa: E731
    assert width(by_group) > 1.2 * width(by_row)
    sub = agg.grouped_table(preds, true, groupings, subset=np.arange(200) >= 20, ci=True)  # clusters follow the subset
    assert int(sub.set_index("method").loc["big", "n"]) == 180
