"""soundloc.soundscape: ranking metrics (hand-checked, scikit-learn), heard-here cross-fitting, sites CSV, name query, CLI."""
import json

import numpy as np
import pandas as pd
import pytest

from soundloc import soundscape as ss
from soundloc.cli import main
from soundloc.data.validate import week_from_date


def test_ranking_metrics_hand_checked():
    # ranks 1..5 for species 0..4; true species 0 and 2 sit at ranks 1 and 3
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5]])
    m = ss.ranking_metrics(scores, [[0, 2], [0]], ks=(1, 2, 3))
    assert m.loc[0, "ap"] == pytest.approx((1 / 1 + 2 / 3) / 2)  # precision@1 = 1, precision@3 = 2/3
    assert list(m.loc[0, ["recall@1", "recall@2", "recall@3"]]) == [0.5, 0.5, 1.0]
    assert m.loc[1, "ap"] == pytest.approx(1 / 5) and m.loc[1, "recall@3"] == 0.0  # species 0 ranks last
    assert m.loc[1, "n_true"] == 1
    row = ss.summarize(m, "x", "toy")
    assert row["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 0.2) / 2) and row["R@3 %"] == pytest.approx(50.0)


def test_ranking_metrics_agree_with_sklearn():
    from sklearn.metrics import average_precision_score, top_k_accuracy_score  # noqa: F401

    rng = np.random.default_rng(0)
    scores = rng.random((40, 300))
    truth = [rng.choice(300, rng.integers(1, 20), replace=False) for _ in range(40)]
    m = ss.ranking_metrics(scores, truth, ks=(10, 50))
    for i, t in enumerate(truth):
        y = np.zeros(300, bool)
        y[t] = True
        assert m.loc[i, "ap"] == pytest.approx(average_precision_score(y, scores[i]))
        top = np.argsort(-scores[i])[:10]
        assert m.loc[i, "recall@10"] == pytest.approx(y[top].sum() / y.sum())


def test_paired_bootstrap_interval_covers_the_mean_difference():
    a, b = np.linspace(0, 1, 50), np.linspace(0, 1, 50) - 0.1
    d, lo, hi = ss.paired_bootstrap(a, b)
    assert d == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)


def test_heard_here_cross_fitting_and_shrinkage():
    # two recordings of species 1 at the query place (fold 0), one of species 2 100 km away (fold 1)
    h = ss.HeardHere([0.0, 0.0, 0.9], [0.0, 0.0, 0.0], np.array([1, 1, 2]), 3, folds=np.array([0, 0, 1]),
                     config=ss.HeardConfig(bandwidth_km=100.0, prior_strength=1.0))
    k = h.counts([0.0], [0.0]).toarray()[0]
    assert k[0] == 0 and k[1] == pytest.approx(2.0) and 0.5 < k[2] < 0.7  # exp(-0.5) at one bandwidth
    k_out = h.counts([0.0], [0.0], exclude_fold=[0]).toarray()[0]
    assert k_out[1] == 0 and k_out[2] == pytest.approx(k[2])  # the list's own fold is left out
    occ = np.array([[0.9, 0.5, 0.3]])
    s = h.score(occ, [0.0], [0.0])
    assert s[0, 1] > s[0, 0]  # recorded here lifts species 1 above the more common species 0
    # an overwhelming prior gives back occurrence's ranking (score ~ occ^2 / sum occ)
    big = h.score(occ, [0.0], [0.0], config=ss.HeardConfig(100.0, 1e9))
    assert list(np.argsort(-big[0])) == [0, 1, 2]


def test_list_loglik_hand_checked():
    # row 0: p = (2, 1, 1) / 4; species 0 and 2 listed -> log 0.5 + log 0.25 = -log 8
    # row 1: p = (0.25, 0.25, 0.5); species 2 listed twice -> 2 log 0.5; row 2: an empty list scores 0
    scores = np.array([[2.0, 1.0, 1.0], [1.0, 1.0, 2.0], [1.0, 0.0, 3.0]])
    ll = ss.list_loglik(scores, [[0, 2], [2, 2], []])
    assert ll == pytest.approx([-np.log(8.0), 2 * np.log(0.5), 0.0])
    assert np.isfinite(ss.list_loglik(scores[2:], [[1]])).all()  # a zero score is very unlikely, not -inf
    with pytest.raises(ValueError, match="2 lists for 3 rows"):
        ss.list_loglik(scores, [[0], [1]])


def test_loglik_choice_recovers_the_prior_strength_of_a_synthetic_world():
    # simulated world: each place's composition ~ Dirichlet(alpha_true * q); K = training draws there, the held-out
    # list = further draws; the model is the Dirichlet posterior mean (K + alpha q) / (n + alpha)
    grid = [ss.HeardConfig(100.0, a) for a in (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)]
    rng = np.random.default_rng(0)
    S, P = 60, 300
    q = rng.dirichlet(np.ones(S))
    picked = {}
    for alpha_true in (10.0, 300.0):
        pi = np.stack([rng.dirichlet(alpha_true * q + 1e-9) for _ in range(P)])
        K = np.stack([rng.multinomial(30, p) for p in pi]).astype(float)
        truth = [rng.choice(S, 15, p=p / p.sum()) for p in pi]
        tab = ss.loglik_sweep(lambda c: K + c.prior_strength * q, grid, truth)
        assert list(tab.columns[-3:]) == ["log-likelihood per species", "mAP", "R@10 %"]
        picked[alpha_true] = tab.loc[tab["log-likelihood per species"].idxmax(), "prior_strength"]
    assert picked[10.0] in (3.0, 10.0, 30.0) and picked[300.0] in (100.0, 300.0, 1000.0)


def test_read_sites_reports_every_bad_row(tmp_path):
    p = tmp_path / "sites.csv"
    p.write_text("id,latitude,longitude,date\na,47.6,-122.3,2020-05-15\nb,95,0,\nc,46.5,6.6,\n"
                 "d,1,2,2020-13-40\na,1,1,\ne,x,1,\n")
    good, errors = ss.read_sites(p)
    assert list(good["id"]) == ["a", "c"] and list(good["week"]) == [19, None]
    assert errors == [f"{p}: row 3: latitude '95' outside [-90, 90]", f"{p}: row 5: date '2020-13-40' is not YYYY-MM-DD",
                      f"{p}: row 6: duplicate id 'a' (first on row 2)", f"{p}: row 7: latitude 'x' is not a number"]


def test_week_of():
    assert week_from_date("2020-01-01") == 1 and week_from_date("2020-12-31") == 48 and week_from_date(None) is None
    assert week_from_date("") is None and week_from_date(float("nan")) is None


def test_cli_batch_writes_good_rows_and_names_bad_ones(tmp_path, capsys):
    sites, out = tmp_path / "sites.csv", tmp_path / "ranked.csv"
    sites.write_text("id,latitude,longitude,date\nsea,47.68,-122.29,2020-05-15\nbad,95,0,\njura,46.5,6.6,\n")
    assert main(["soundscape", "--sites", str(sites), "-o", str(out), "--top-k", "5"]) == 1  # finished, bad rows skipped
    err = capsys.readouterr().err
    assert f"{sites}: row 3: latitude '95' outside [-90, 90]" in err and "2 sites ranked, 1 bad rows skipped" in err
    r = pd.read_csv(out)
    assert list(r.columns) == ["id", "rank", "species", "probability"] and len(r) == 10
    assert list(r.id.unique()) == ["sea", "jura"] and list(r["rank"][:5]) == [1, 2, 3, 4, 5]
    assert r.groupby("id").probability.apply(lambda p: p.is_monotonic_decreasing).all()
    assert "Turdus migratorius" in set(r.species[r.id == "sea"]) and "Turdus merula" in set(r.species[r.id == "jura"])


def test_cli_one_place_json(capsys):
    assert main(["soundscape", "--lat", "47.68", "--lon", "-122.29", "--date", "2020-05-15", "--top-k", "3", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["week"] == 19 and len(d["species"]) == 3 and 10 < d["expected_richness"] < 200
    assert d["species"][0]["species"] == "Turdus migratorius" and d["species"][0]["common_name"] == "American Robin"


def test_species_query_by_common_or_scientific_name_and_unknown_name(capsys, tmp_path):
    from soundloc.ranges import load_range_model

    model = load_range_model("birdnet", "torch", device="cpu")
    i = ss.find_species(model, "Luscinia megarhynchos")
    assert ss.find_species(model, "common  NIGHTINGALE") == i
    with pytest.raises(KeyError, match=r"unknown species 'Comon Nightingale'; closest: Common Nightingale \(Luscinia"):
        ss.find_species(model, "Comon Nightingale")
    assert main(["soundscape", "--species", "Comon Nightingale"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "closest: Common Nightingale (Luscinia megarhynchos)" in err
    html = tmp_path / "n.html"
    assert main(["soundscape", "--species", "Common Nightingale", "--map", str(html), "--map-step", "5"]) == 0
    text = html.read_text()
    assert "January" in text and "December" in text and html.stat().st_size < 3_000_000


def test_cli_needs_one_mode(capsys):
    assert main(["soundscape"]) == 2
    assert "exactly one of" in capsys.readouterr().err


@pytest.mark.parametrize("argv,msg", [
    (["--lat", "95", "--lon", "0"], "outside [-90, 90]"),
    (["--lat", "10"], "--lat and --lon go together"),
    (["--lat", "10", "--lon", "0", "--top-k", "0"], "--top-k 0: must be >= 1"),
    (["--lat", "10", "--lon", "0", "--date", "2020-02-31"], "is not a date YYYY-MM-DD"),
    (["--sites", "nowhere.csv", "-o", "x.csv"], "nowhere.csv: no such file"),
])
def test_cli_bad_input_is_one_line_exit_2(argv, msg, capsys):
    assert main(["soundscape", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and err.count("\n") == 0 and err.startswith("soundloc soundscape")


def test_cli_sites_missing_column_names_the_file(tmp_path, capsys):
    p = tmp_path / "s.csv"
    p.write_text("id,lat,lon\na,1,2\n")
    assert main(["soundscape", "--sites", str(p), "-o", str(tmp_path / "o.csv")]) == 2
    assert f"{p}: row 1: missing column(s) ['latitude', 'longitude']" in capsys.readouterr().err


def test_cli_help_has_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["soundscape", "--help"])
    assert e.value.code == 0 and "soundloc soundscape --sites" in capsys.readouterr().out.split("examples:")[1]


def test_nested_choice_picks_each_folds_config_on_the_other_folds():
    # config 0 is best on fold 0's lists, config 1 on fold 1's: each fold gets the OTHER fold's winner
    a = pd.DataFrame({"n_true": 1, "ap": [0.9, 0.9, 0.1, 0.1]})
    b = pd.DataFrame({"n_true": 1, "ap": [0.2, 0.2, 0.8, 0.8]})
    out, chosen = ss.nested_choice([a, b], np.array([0, 0, 1, 1]))
    assert list(chosen) == [1, 0] and list(out.ap) == [0.2, 0.2, 0.1, 0.1]


def test_species_factor_observed_over_expected_hand_checked():
    # recordings: species 0, 0, 1 in fold 0; unknown, 0, 1 in fold 1; occurrence sampled at rows 0, 2, 4
    sp, folds = np.array([0, 0, 1, -1, 0, 1]), np.array([0, 0, 0, 1, 1, 1])
    occ = np.array([[0.5, 0.5], [0.3, 0.1], [0.2, 0.2]])  # normalised: [.5 .5], [.75 .25], [.5 .5]
    f = ss.SpeciesFactor(sp, 2, occ, np.array([0, 2, 4]), folds)
    # fold 0: O = [2, 1]; E = ([.5 .5] + [.75 .25]) x 3 recordings / 2 sampled = [1.875, 1.125]
    # fold 1: O = [1, 1]; E = [.5 .5] x 2 / 1 = [1, 1]
    np.testing.assert_allclose(f.O, [[2, 1], [1, 1]])
    np.testing.assert_allclose(f.E, [[1.875, 1.125], [1, 1]])
    one = ss.FactorConfig(prior=1.0, power=1.0)
    np.testing.assert_allclose(f.factor(one), [[4 / 3.875, 3 / 3.125]])  # (O + 1) / (E + 1) over both folds
    got = f.factor(ss.FactorConfig(prior=1.0, power=0.5), np.array([0, 1, 7]))  # 7: a fold with no recordings
    np.testing.assert_allclose(got, np.sqrt([[2 / 2, 2 / 2], [3 / 2.875, 2 / 2.125], [4 / 3.875, 3 / 3.125]]))
    np.testing.assert_allclose(f.factor(ss.FactorConfig(power=0.0)), [[1.0, 1.0]])  # power 0: occurrence itself
    np.testing.assert_allclose(f.score(np.array([[0.2, 0.4]]), one, np.array([0])), [[0.2, 0.4]])
    # the left-out fold's own recordings do not move its factor
    sp2 = sp.copy()
    sp2[:3] = [1, 1, 0]
    g = ss.SpeciesFactor(sp2, 2, occ, np.array([0, 2, 4]), folds)
    np.testing.assert_allclose(g.factor(one, np.array([0])), f.factor(one, np.array([0])))
    with pytest.raises(ValueError, match="known species"):
        ss.SpeciesFactor(sp, 2, occ, np.array([0, 2, 3]), folds)


def test_factor_sweep_rows_follow_the_grid():
    sp, folds = np.array([0, 0, 0, 1]), np.array([0, 1, 0, 1])
    f = ss.SpeciesFactor(sp, 2, np.full((4, 2), 0.5), np.arange(4), folds)
    occ = np.array([[0.5, 0.6], [0.5, 0.6]])
    grid = [ss.FactorConfig(1.0, 0.0), ss.FactorConfig(1.0, 1.0)]
    per = []
    t = ss.factor_sweep(f, occ, [[0], [0]], np.array([0, 1]), grid, per)
    assert list(t.power) == [0.0, 1.0] and len(per) == 2
    # power 0 ranks by occurrence (species 1 first: AP 1/2 on both lists). With the factor, the list of fold 0
    # sees fold 1's recordings only (one of each species: factor 1, AP 1/2); the list of fold 1 sees fold 0's
    # (species 0 twice, E = [1, 1]: factor 3/2 vs 1/2, 0.75 > 0.3, AP 1)
    assert list(t.mAP) == [0.5, 0.75]


def test_ranking_metrics_ranks_agree_with_full_sort_including_ties():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, (30, 50)).astype(float)  # many ties: broken by species index, as ranks() does
    truth = [rng.choice(50, rng.integers(1, 8), replace=False) for _ in range(30)]
    m = ss.ranking_metrics(scores, truth, ks=(5,))
    r = ss.ranks(scores)
    for i, t in enumerate(truth):
        rk = np.sort(r[i, np.unique(t)]).astype(float)
        assert m.loc[i, "ap"] == pytest.approx(np.mean(np.arange(1, len(rk) + 1) / rk))
        assert m.loc[i, "recall@5"] == pytest.approx(np.mean(rk <= 5))


def test_debiased_heard_here_hand_checked():
    # at the query place: species 0 recorded twice, species 1 once (kernel weight 1 at distance 0); occ sums to 1 (q = occ)
    h = ss.HeardHere([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], np.array([0, 0, 1]), 3, config=ss.HeardConfig(100.0, 1.0))
    occ, f = np.array([[0.5, 0.3, 0.2]]), np.array([[2.0, 0.5, 1.0]])
    # plain: K = [2, 1, 0], share = ([2, 1, 0] + [.5, .3, .2]) / (3 + 1) = [.625, .325, .05]
    np.testing.assert_allclose(h.score(occ, [0.0], [0.0]), [[0.3125, 0.0975, 0.01]])
    # debiased: K' = K / f = [1, 2, 0], share = ([1, 2, 0] + [.5, .3, .2]) / (3 + 1) = [.375, .575, .05]
    np.testing.assert_allclose(h.score(occ, [0.0], [0.0], debias=f), [[0.1875, 0.1725, 0.01]])
    np.testing.assert_allclose(h.score(occ, [0.0], [0.0], debias=np.ones((1, 3))), h.score(occ, [0.0], [0.0]))
    # an overwhelming prior gives back occurrence's ranking whatever the factor (score ~ occ^2 / sum occ)
    big = h.score(np.array([[0.2, 0.9, 0.5]]), [0.0], [0.0], config=ss.HeardConfig(100.0, 1e9), debias=f)
    assert list(np.argsort(-big[0])) == [1, 2, 0]
    # a per-list factor (N, S) and the sweep pass through; a bad factor is refused with its shape
    two = h.score(np.repeat(occ, 2, 0), [0.0, 0.0], [0.0, 0.0], debias=np.r_[f, np.ones((1, 3))])
    np.testing.assert_allclose(two, [[0.1875, 0.1725, 0.01], [0.3125, 0.0975, 0.01]])
    t = ss.sweep(h, occ, [0.0], [0.0], [[1]], None, [ss.HeardConfig(100.0, 1.0)], debias=f)
    assert t.mAP.iloc[0] == pytest.approx(0.5)  # species 1 second behind species 0 (0.1725 < 0.1875)
    for bad in (np.ones((2, 3)), np.ones((1, 2)), np.array([[1.0, 0.0, 1.0]])):
        with pytest.raises(ValueError, match="debias must be positive"):
            h.score(occ, [0.0], [0.0], debias=bad)


def test_debiased_counts_recover_the_place_tilt_not_the_species_bias():
    # simulated world: counts at place p ~ Poisson(n occ_ps t_ps b_s / norm), t a place-level tilt (the signal), b a
    # species-level multiplicative bias (recordist preference x detectability); places ~2000 km apart, kernel 50 km
    rng = np.random.default_rng(0)
    S, lat, lon = 30, *np.meshgrid(np.linspace(-60, 60, 7), np.linspace(-150, 150, 6))
    P = lat.size
    occ = rng.uniform(0.05, 1.0, (P, S))
    tilt, bias = np.exp(rng.normal(0, 1.0, (P, S))), np.exp(rng.normal(0, 1.5, S))
    lam = occ * tilt * bias
    counts = rng.poisson(400 * lam / lam.sum(1, keepdims=True))
    place, sp = np.nonzero(counts)
    place, sp = np.repeat(place, counts[place, sp]), np.repeat(sp, counts[place, sp])
    h = ss.HeardHere(lat.ravel()[place], lon.ravel()[place], sp, S, config=ss.HeardConfig(50.0, 1.0))
    f = ss.SpeciesFactor(sp, S, occ[place], np.arange(len(sp))).factor()  # (1, S) recorded per expected
    plain, debiased = h.score(occ, lat.ravel(), lon.ravel()), h.score(occ, lat.ravel(), lon.ravel(), debias=f)

    def rank_corr(a, b):  # (P, S), (P, S) -> mean over places of the Spearman correlation
        ra, rb = ss.ranks(a) - (S + 1) / 2, ss.ranks(b) - (S + 1) / 2
        return float(np.mean((ra * rb).sum(1) / np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))))

    # the plain local composition follows the biased abundance occ x tilt x bias; the debiased score follows the place's
    # own abundance occ x tilt, better than both the plain score and occurrence (which lacks the tilt)
    # (seed 0: plain 0.89 vs 0.67; debiased 0.77 vs 0.66; occurrence 0.46)
    assert rank_corr(plain, occ * tilt * bias) > rank_corr(plain, occ * tilt) + 0.15
    assert rank_corr(debiased, occ * tilt) > rank_corr(debiased, occ * tilt * bias) + 0.08
    assert rank_corr(debiased, occ * tilt) > rank_corr(plain, occ * tilt) + 0.05
    assert rank_corr(debiased, occ * tilt) > rank_corr(occ, occ * tilt) + 0.2


def test_versus_occurrence_row_and_beats_label_on_a_hand_checked_case():
    ap, ref = np.array([0.5, 0.7, 0.9]), np.array([0.4, 0.5, 0.6])
    row = ss.versus_occurrence(ap, ref, "m", "d", n_boot=200, seed=0)
    assert (row["method"], row["data"], row["lists"]) == ("m", "d", 3)
    assert row["mAP"] == pytest.approx(0.7) and row["week occurrence mAP"] == pytest.approx(0.5)
    assert row["mAP method - week occurrence"] == pytest.approx(0.2)
    assert 0.1 - 1e-12 <= row["2.5 %"] <= 0.2 <= row["97.5 %"] <= 0.3 + 1e-12  # paired differences 0.1, 0.2, 0.3
    assert list(ss.beats_label([0.01, -0.2, -0.1], [0.3, -0.01, 0.1])) == ["yes", "no (worse)", "not shown"]


def test_gain_by_evidence_hand_checked():
    local = np.array([0.5, 0.2, 3.0, 50.0, 120.0, 400.0, 9.0])
    gain = np.array([-0.1, np.nan, 0.2, -0.05, 0.1, 0.3, -0.2])
    t = ss.gain_by_evidence(local, gain).set_index("local recordings (kernel-weighted)")
    assert list(t.index) == ["0 to 1", "1 to 10", "10 to 100", "100 to inf"]
    assert list(t.lists) == [1, 2, 1, 2]  # the NaN gain (a list with no true species) is left out
    assert t.loc["1 to 10", "mean AP gain"] == pytest.approx(0.0) and t.loc["1 to 10", "lists improved %"] == 50
    assert t.loc["100 to inf", "median count"] == 260 and t.loc["100 to inf", "mean AP gain"] == pytest.approx(0.2)
    assert t.loc["10 to 100", "lists improved %"] == 0


def test_list_block_folds_keep_a_list_and_its_own_recordings_in_one_fold():
    """H3 cells do not nest: recordings of one res-4 list whose own res-3 cells differ (so res-3 cells of the points
    would split the list from some of its recordings, which then count in its out-of-fold score) share one fold."""
    from soundloc.aggregate import group_ids, species_lists
    from soundloc.sphere import h3_cells, h3_parents

    rng = np.random.default_rng(0)
    birds = pd.DataFrame({"lat": rng.uniform(45, 48, 4000), "lon": rng.uniform(5, 9, 4000), "week": 20,
                          "date": "2021-05-20", "species": rng.choice([f"s{i}" for i in range(30)], 4000)})
    g = group_ids(birds, 4, "month")
    lists = species_lists(birds, g, 2)
    own3 = pd.Series(h3_cells(birds.lat, birds.lon, 3)).groupby(g).nunique()
    assert (own3 > 1).sum() > 5  # the case exists: a res-4 cell's points lie in two res-3 cells
    assert (h3_parents(h3_cells(birds.lat, birds.lon, 4), 3) != h3_cells(birds.lat, birds.lon, 3)).any()
    for seed in range(3):
        rec_fold, list_fold = ss.list_block_folds(birds.lat, birds.lon, lists.lat, lists.lon, 4, 3, 5, seed)
        of_list = dict(zip(lists.group, list_fold))
        members = np.isin(g, lists.group)
        assert (rec_fold[members] == np.array([of_list[x] for x in g[members]])).all()
        assert set(rec_fold) <= set(range(5)) and len(set(list_fold)) > 1


def test_buffered_leave_out_keeps_every_training_recording_beyond_the_buffer():
    """Buffered leave-block-out: when fold k is scored, no recording within buffer_km of a fold-k list is used (a
    border recording of another fold is left out too); agrees with a brute-force all-pairs haversine reference."""
    from soundloc.sphere import haversine

    # hand-built: recordings every 0.5 degree along the equator (about 55.6 km apart), lists at lon 2 (fold 0)
    # and lon 6 (fold 1); recordings are in fold 0 west of lon 4, fold 1 from lon 4 on
    rec_lon = np.arange(0.0, 10.01, 0.5)
    rec_lat, rec_fold = np.zeros_like(rec_lon), (rec_lon >= 4).astype(int)
    lo = ss.buffered_leave_out(rec_lat, rec_lon, rec_fold, [0.0, 0.0], [2.0, 6.0], [0, 1], 120.0)
    assert lo.shape == (len(rec_lon), 2)
    # fold 1's list at lon 6 reaches lon 4.92..7.08: fold-1 recordings, plus nothing of fold 0 (it ends at 3.5)
    assert rec_lon[lo[:, 1]].tolist() == [4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 8.5, 9.0, 9.5, 10.0]
    # fold 0's list at lon 2 reaches 0.92..3.08: only fold-0 recordings; now a fold-1 list at lon 4.5 reaches 3.42..5.58
    lo = ss.buffered_leave_out(rec_lat, rec_lon, rec_fold, [0.0, 0.0], [2.0, 4.5], [0, 1], 120.0)
    assert rec_lon[lo[:, 1] & (rec_fold == 0)].tolist() == [3.5]  # the border recording of fold 0

    # random toy against the brute-force reference
    rng = np.random.default_rng(3)
    R, L, K, buf = 600, 40, 4, 150.0
    rlat, rlon, llat, llon = rng.uniform(40, 50, R), rng.uniform(-5, 10, R), rng.uniform(40, 50, L), rng.uniform(-5, 10, L)
    rf, lf = rng.integers(0, K, R), rng.integers(0, K, L)
    lo = ss.buffered_leave_out(rlat, rlon, rf, llat, llon, lf, buf)
    d = haversine(rlat[:, None], rlon[:, None], llat[None], llon[None])  # (R, L) km
    ref = np.stack([(rf == k) | (d[:, lf == k] <= buf).any(1) for k in range(K)], 1)
    assert (lo == ref).all()
    for k in range(K):  # no training recording within the buffer of a held-out list
        assert (d[~lo[:, k]][:, lf == k] > buf).all()
    assert (lo & ~np.eye(K, dtype=bool)[rf]).any()  # the buffer removes recordings beyond the folds themselves


def test_heard_here_with_leave_out_sets_ignores_buffered_recordings():
    """Scored with (R, K) leave-out sets, a list's counts skip a near recording of another fold inside the buffer,
    which fold ids alone would have counted."""
    lat, lon, sp = [0.0, 0.0, 0.0], [0.0, 0.5, 2.0], np.array([0, 1, 2])
    folds = np.array([0, 1, 1])
    lo = ss.buffered_leave_out(lat, lon, folds, [0.0], [0.0], [0], 100.0)
    assert lo.tolist() == [[True, False], [True, True], [False, True]]
    cfg = ss.HeardConfig(100.0, 1.0)
    plain = ss.HeardHere(lat, lon, sp, 3, folds=folds, config=cfg).counts([0.0], [0.0], np.array([0])).toarray()[0]
    buff = ss.HeardHere(lat, lon, sp, 3, folds=lo, config=cfg).counts([0.0], [0.0], np.array([0])).toarray()[0]
    assert plain[1] > 0.1 and buff[1] == 0.0 and buff[0] == 0.0  # the 55 km neighbour leaks only without the buffer
    assert buff[2] == pytest.approx(plain[2]) and buff[2] > 0  # 222 km away: outside the buffer, still counted
    freq = ss.HeardHere(lat, lon, sp, 3, folds=lo, config=cfg).frequency(np.array([0, 1]))
    assert freq.tolist() == [[0, 0, 1], [1, 0, 0]]


def test_list_intervals_resample_near_duplicate_lists_together():
    """Twenty copies of each of 30 lists' AP (one site's dawns) are 30 pieces of evidence, not 600."""
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 0.6, 30), rng.uniform(0.1, 0.6, 30)
    A, B, cl = np.repeat(a, 20), np.repeat(b, 20), np.repeat(np.arange(30), 20)
    w = lambda r: r[2] - r[1]  # noqa: E731
    ref, grouped, rows = (ss.paired_bootstrap(*x, 1000, 0, c) for x, c in (((a, b), None), ((A, B), cl), ((A, B), None)))
    assert w(grouped) == pytest.approx(w(ref), rel=0.1) and w(rows) < 0.4 * w(ref)
    s = ss.summarize(pd.DataFrame({"ap": A, "recall@10": 0.5}), "m", "d", 1000, 0, cl)
    assert s["mAP 95% CI"] == ss.summarize(pd.DataFrame({"ap": a, "recall@10": 0.5}), "m", "d", 1000, 0)["mAP 95% CI"]
    with pytest.raises(ValueError, match="labels for"):
        ss.boot_means(A, 10, 0, cl[:5])


def test_site_clusters_link_a_recordist_and_a_site():
    from soundloc.species_sets import site_clusters
    lat, lon = [10.0, 10.001, 40.0, -30.0, -30.0], [10.0, 10.001, 5.0, 140.0, 141.5]
    cl = site_clusters(lat, lon, ["A", "B", "B", "C", "D"], 4)
    assert cl[0] == cl[1] == cl[2] and cl[3] != cl[4] and cl[3] != cl[0]  # 0-1 one site, 1-2 one recordist
    assert len(set(site_clusters(lat, lon, None, 4))) == 4
