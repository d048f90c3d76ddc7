"""Geo-forensics: out-of-range species, the claim under the audio posterior, and the verdict."""
import numpy as np
import pandas as pd
import pytest

from soundloc.forensics import CheckConfig, check, check_scores, check_species
from soundloc.locator import LocateOptions

SEATTLE = (47.6766, -122.294)
OPTS = LocateOptions(gallery="land2")


@pytest.fixture(scope="module")
def seattle(mirror):
    return mirror / "audio" / "XC563936_soundscape.mp3"


def test_true_place_is_consistent(seattle, one_thread):
    r = check(seattle, *SEATTLE, date="2020-03-15", opts=OPTS)
    assert r.verdict == "consistent" and r.week == 11
    assert len(r.species) >= 2 and not r.species.out_of_range.any()
    assert (r.species.p_claim >= 0.03).all() and (r.species.nearest_km < 250).all()
    assert r.hpd_mass <= 0.95 and r.distance_km < 1000


def test_false_continent_is_inconsistent(seattle, one_thread):
    r = check(seattle, 48.8566, 2.3522, date="2020-03-15", opts=OPTS)  # claimed: Paris
    assert r.verdict == "inconsistent"
    oor = r.out_of_range
    assert len(oor) >= 2 and "Junco hyemalis" in set(oor.scientific_name)
    assert (oor.p_claim < 0.03).all() and (oor.nearest_km > 1000).all() and (oor.nearest_lon < -30).all()
    assert r.hpd_mass > 0.95 and r.distance_km > 5000
    assert any("Junco hyemalis" in e and "out of range" in e for e in r.evidence)


def test_check_species_any_detector_and_thresholds(one_thread):
    sp = pd.DataFrame({"scientific_name": ["Gymnorhina tibicen", "Dacelo novaeguineae"], "max_score": [0.9, 0.8]})
    aus = check_species(sp, -33.87, 151.21, week=20, opts=OPTS)
    eur = check_species(sp, 50.0, 10.0, week=20, opts=OPTS)
    assert aus.verdict == "consistent" and eur.verdict == "inconsistent" and eur.out_of_range.shape[0] == 2
    assert (eur.species.nearest_lat < 0).all()  # nearest occurrence: Australia / New Guinea
    one = check_species(sp.head(1), 50.0, 10.0, week=20, config=CheckConfig(min_out=2, hpd_level=0.999999), opts=OPTS)
    assert one.verdict in ("suspicious", "inconsistent") and len(one.out_of_range) == 1
    weak = check_species(sp.assign(max_score=0.2), 50.0, 10.0, week=20, opts=OPTS)  # below min_score: no species line
    assert weak.species.empty and any("no species detected" in e for e in weak.evidence)


def test_no_detected_species_do_not_flag_a_remote_claim(one_thread):
    """With nothing heard the audio posterior is the photo-density prior: a claim where few photos are taken (central
    Siberia, Antarctica) is not 'outside' the audio's region, as locate gives no location for such audio."""
    none = pd.DataFrame({"scientific_name": pd.Series([], dtype=object), "max_score": pd.Series([], dtype=float)})
    for claim in ((65.0, 100.0), (-75.0, 0.0)):
        r = check_species(none, *claim, week=20, opts=OPTS)
        assert r.verdict == "consistent" and r.hpd_mass > 0.95, (claim, r.hpd_mass, r.evidence)
        assert any("says nothing for or against the claim" in e for e in r.evidence)
        assert check_scores(np.zeros((1, 0)), [], [claim[0]], [claim[1]], [20], opts=OPTS).verdict[0] == "consistent"


def test_weak_evidence_does_not_flag_a_remote_claim(one_thread):
    """One faint detection (below min_score, weight 0.12-0.15) barely moves the posterior from the photo-density prior
    (information gain < WEAK_KL_NATS, locate's weak_evidence): remote claims lie outside its 95 % region because few
    photos are taken there, which is no evidence against them (was SUSPICIOUS); a strong, out-of-range species still is."""
    from soundloc.locator import WEAK_KL_NATS

    for name, score in (("Hirundo rustica", 0.15), ("Turdus merula", 0.12)):
        faint = pd.DataFrame({"scientific_name": [name], "max_score": [score]})
        for claim in ((65.0, 100.0), (-75.0, 0.0), (5.0, 20.0)):
            r = check_species(faint, *claim, week=20, opts=OPTS)
            assert r.verdict == "consistent" and r.hpd_mass > 0.95 and r.info_gain_nats < WEAK_KL_NATS, (claim, r.evidence)
            assert any("does not count against the claim" in e for e in r.evidence)
            assert check_scores(np.array([[score]]), [name], [claim[0]], [claim[1]], [20], opts=OPTS).verdict[0] == "consistent"
    strong = check_species(pd.DataFrame({"scientific_name": ["Turdus migratorius"], "max_score": [0.9]}), 65.0, 100.0,
                           week=20, opts=OPTS)  # an American Robin heard clearly, claimed in central Siberia
    assert strong.verdict == "inconsistent" and strong.info_gain_nats >= WEAK_KL_NATS


@pytest.mark.parametrize("lat,lon", [(95, 0), (0, 200), (np.nan, 0)])
def test_bad_claim(lat, lon):
    sp = pd.DataFrame({"scientific_name": ["Turdus merula"], "max_score": [0.9]})
    with pytest.raises(ValueError, match="latitude"):
        check_species(sp, lat, lon, opts=OPTS)


def test_bad_config():
    with pytest.raises(ValueError):
        CheckConfig(range_threshold=0)
    with pytest.raises(ValueError):
        CheckConfig(min_out=0)


# ---------------------------------------------------------------- thresholds chosen on validation
def test_calibrate_species_line_criterion():
    from soundloc.forensics import calibrate_species_line

    rng = np.random.default_rng(0)
    R, K = 40, 6
    p = np.full((R, K), 0.5)
    p[:, 4:] = 0.001  # species 4, 5 out of range everywhere
    planted = np.zeros((R, K), bool)
    planted[:, 4] = True
    clean = rng.uniform(0, 0.2, (R, K))
    clean[:4, 5] = 0.7  # 4 of 40 clean recordings (10 %) confuse a focal call with species 5 at 0.7
    spliced = clean.copy()
    spliced[:, 4] = np.linspace(0.05, 0.95, R)  # planted scores spread evenly
    best, grid = calibrate_species_line(clean, spliced, p, planted, [0.3, 0.6, 0.8], [0.01, 0.03], max_false_rate=0.05)
    assert len(grid) == 6 and set(grid.columns) >= {"min_score", "range_threshold", "false_flag_rate", "planted_recall"}
    g = grid.set_index(["min_score", "range_threshold"])
    assert g.loc[(0.6, 0.03), "false_flag_rate"] == pytest.approx(0.1) and g.loc[(0.8, 0.03), "false_flag_rate"] == 0
    assert g.loc[(0.8, 0.03), "planted_recall"] == pytest.approx((spliced[:, 4] >= 0.8).mean())
    # 0.3 and 0.6 flag the confused clean clips (10 % > 5 %): the criterion must pick 0.8
    assert best["min_score"] == 0.8 and best["false_flag_rate"] <= 0.05
    loose, _ = calibrate_species_line(clean, spliced, p, planted, [0.3, 0.6, 0.8], [0.03], max_false_rate=0.2)
    assert loose["min_score"] == 0.3 and loose["planted_recall"] > best["planted_recall"]
    with pytest.raises(ValueError, match="false-flag"):
        calibrate_species_line(clean + 0.9, spliced, p, planted, [0.5], [0.03], max_false_rate=0.0)


def test_calibrate_hpd_level_and_claim_credibility():
    from soundloc.forensics import calibrate_hpd_level, claim_credibility, verdicts

    lvl = calibrate_hpd_level(np.linspace(0.01, 1.0, 100), 0.05)
    assert lvl == pytest.approx(0.96) and (np.linspace(0.01, 1.0, 100) > lvl).mean() <= 0.05
    assert 0 < calibrate_hpd_level(np.ones(10), 0.05) < 1
    pts = np.array([[0.0, 0.0], [0.0, 10.0], [0.0, 20.0]])
    post = np.array([[0.6, 0.3, 0.1], [0.1, 0.3, 0.6]])
    hpd, pct = claim_credibility(post, pts, [0.1, 0.1], [9.0, 9.0])  # claim snaps to the middle point
    np.testing.assert_allclose(hpd, [0.9, 0.9]) and np.testing.assert_allclose(pct, [100 / 3, 100 / 3])
    hpd, _ = claim_credibility(post, pts, [0.0, 0.0], [0.0, 0.0])
    np.testing.assert_allclose(hpd, [0.6, 1.0])
    # with cell areas, points are ranked by density: masses 0.6, 0.3, 0.1 over areas 4, 1, 1 -> .15, .3, .1
    hpd, pct = claim_credibility(post[:1], pts, [0.0], [0.0], areas=np.array([4.0, 1.0, 1.0]))
    np.testing.assert_allclose(hpd, [0.9]) and np.testing.assert_allclose(pct, [100 / 3])
    v = verdicts(np.array([0, 1, 0, 1, 2]), np.array([False, False, True, True, False]), min_out=2)
    assert list(v) == ["consistent", "suspicious", "suspicious", "inconsistent", "inconsistent"]


def test_check_scores_matches_check_species(one_thread):
    from soundloc.forensics import check_scores, species_frame

    names = ["Gymnorhina tibicen", "Dacelo novaeguineae", "Turdus merula"]
    scores = np.array([[0.9, 0.8, 0.01], [0.02, 0.1, 0.95]])
    cfg = CheckConfig(min_score=0.5)
    df = check_scores(scores, names, [50.0, 50.0], [10.0, 10.0], [20, 20], cfg, OPTS,
                      planted=np.array([[True, False, False], [False, False, False]]))
    assert list(df.n_flagged) == [2, 0] and list(df.planted_caught) == [1, 0] and list(df.other_flags) == [1, 0]
    for i in range(2):
        one = check_species(species_frame(names, scores[i]), 50.0, 10.0, week=20, config=cfg, opts=OPTS)
        assert one.verdict == df.verdict[i] and len(one.out_of_range) == df.n_flagged[i]
        assert one.hpd_mass == pytest.approx(df.hpd_mass[i]) and one.distance_km == pytest.approx(df.km_to_best[i])


def test_classifier_scores_max_and_mean_over_windows():
    """A fake classifier whose window scores are known: max/mean per clip, clips of different window counts."""
    import torch

    from soundloc import spectrogram as spec
    from soundloc.forensics import classifier_scores, classifier_species

    class Head(torch.nn.Module):
        species = ["a", "b"]

        def scores(self, out):
            return torch.softmax(out, 1)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.head = Head()
            self.encoder = type("E", (), {"cfg": type("C", (), {"input_size": 32})()})()

        def forward(self, x):  # logit of "b" grows with the window's mean level
            m = x.mean((1, 2, 3))
            return torch.stack([torch.zeros_like(m), 10 * m], 1)

    cfg = spec.SpecConfig(small=True)
    rng = np.random.default_rng(0)
    short = 0.01 * rng.standard_normal(int(3.5 * cfg.sr)).astype(np.float32)
    long = 0.01 * rng.standard_normal(int(9 * cfg.sr)).astype(np.float32)
    long[int(7 * cfg.sr):] += 0.5 * np.sin(np.arange(int(2 * cfg.sr)) * 0.3)  # a loud event at the end only
    mx, mean = classifier_scores(Net(), [short, long], cfg)
    assert mx.shape == mean.shape == (2, 2) and np.allclose(mx.sum(1) >= mean.sum(1) - 1e-6, True)
    w = [spec.eval_windows(im, cfg) for im in spec.compute_spectrograms([short, long], cfg)]
    x = spec.to_model_input(w[1], size=32, cfg=cfg)
    s = torch.softmax(Net()(x), 1).numpy()
    assert len(w[1]) > 1 and np.allclose(mx[1], s.max(0), atol=1e-5) and np.allclose(mean[1], s.mean(0), atol=1e-5)
    assert mx[1, 1] > mean[1, 1]  # the event is diluted by the mean
    one = classifier_species(Net(), long, cfg, ["a", "b"])
    assert list(one.scientific_name) == ["b", "a"] or one.max_score.is_monotonic_decreasing
    assert np.isclose(one.set_index("scientific_name").loc["b", "max_score"], mx[1, 1])


def test_plot_check_draws_the_reports_own_posterior_and_marks_its_best_point(one_thread):
    """One posterior per figure: the drawn maximum = the marked best point = report.best, and the report's
    numbers (hpd_mass, percentile) come from the posterior it carries."""
    import matplotlib

    matplotlib.use("Agg")
    from soundloc.forensics import claim_credibility, plot_check
    from soundloc.sphere import cell_areas

    sp = pd.DataFrame({"scientific_name": ["Turdus migratorius", "Cardinalis cardinalis", "Sitta carolinensis"],
                       "max_score": [0.9, 0.8, 0.3]})  # the 0.3 one is below min_score but still in the posterior
    r = check_species(sp, 40.0, -80.0, week=20, opts=OPTS)
    assert r.posterior.sum() == pytest.approx(1.0, abs=1e-5) and np.allclose(r.areas, cell_areas(r.points, 2.0))
    assert (r.density * r.areas).sum() == pytest.approx(1.0, abs=1e-5)
    hpd, pct = claim_credibility(r.posterior, r.points, 40.0, -80.0, r.areas)
    assert (hpd[0], pct[0]) == pytest.approx((r.hpd_mass, r.percentile))
    ax = plot_check(r)
    sc = ax.collections[-1]  # grid cells as polygons (regular galleries) or points
    top = int(np.argmax(sc.get_array()))
    paths = sc.get_paths()
    drawn = paths[top].vertices[:4].mean(0) if len(paths) > 1 else sc.get_offsets()[top]  # (lon, lat) of the maximum
    marked = next(l for l in ax.lines if l.get_label() == "prediction").get_xydata()[0]
    assert tuple(drawn) == tuple(marked) == (r.best[1], r.best[0])
    assert tuple(r.points[np.argmax(r.density)]) == tuple(r.best)


def test_check_judges_the_claim_under_locates_calibrated_posterior(one_thread):
    """check's posterior is the one `soundloc locate` shows (tempered by its list temperature), not the raw product."""
    from soundloc.locator import describe, locate_species

    sp = pd.DataFrame({"scientific_name": ["Gymnorhina tibicen", "Dacelo novaeguineae"], "max_score": [0.9, 0.8]})
    r = check_species(sp, -33.87, 151.21, week=20, opts=OPTS)
    (o,) = locate_species([list(sp.scientific_name)], [list(sp.max_score)], [20], OPTS)
    shown = describe("x", "ranges", 20, o.points, o.posterior, 3, OPTS, temperature=o.temperature, areas=o.areas)
    assert o.temperature != 1.0 and np.allclose(r.posterior, shown.posterior)
    assert not np.allclose(r.posterior, o.posterior / o.posterior.sum())
    raw = check_species(sp, -33.87, 151.21, week=20, opts=LocateOptions(gallery="land2", calibrate=False))
    assert np.allclose(raw.posterior, o.posterior / o.posterior.sum())
