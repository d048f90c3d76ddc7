"""soundloc.agclip.experiment's steps as plain functions on an explicit context (fast, synthetic, no GeoCLIP):
the location prior, locating a split over a gallery, and Table 1's main rows with the prior's weight chosen on
validation."""
import numpy as np
import pytest
import torch

from soundloc.agclip import experiment as X
from soundloc.agclip.galleries import vmf_log_prior
from soundloc.agclip.model import AGCLIPConfig, AGCLIPHead
from soundloc.train import TrainConfig

D = 16


def _context(seed: int = 0) -> tuple[X.AGCLIPContext, AGCLIPHead]:
    """Training locations: 40 in one cluster around (10, 20), 10 spread over the globe; val and test sit in the
    cluster. The head is untrained (its audio features say nothing), so with the argmax decoder only the location
    prior can help."""
    rng = np.random.default_rng(seed)
    cluster = lambda n: np.array([10.0, 20.0]) + rng.uniform(-1, 1, size=(n, 2))  # noqa: E731
    spread = np.c_[rng.uniform(-60, 60, 10), rng.uniform(-180, 180, 10)]
    ll = {"train": np.r_[cluster(40), spread], "val": cluster(20), "test": cluster(20)}
    torch.manual_seed(seed)
    emb = {}
    for s, pts in ll.items():  # two windows per recording
        emb[s] = (torch.randn(2 * len(pts), D), torch.arange(0, 2 * len(pts) + 1, 2))
    cfg = X.AGCLIPRunConfig(head=AGCLIPConfig(in_dim=D, location_encoder="fourier"),
                            train=TrainConfig(freeze_encoder=True, device="cpu"), gallery="train", decoder="argmax",
                            prior_weights=(0.0, 1.0, 4.0))
    ctx = X.AGCLIPContext(sim=None, cfg=cfg, emb=emb, enc_cfg=None, enc_state={}, geo=None, ll=ll, geo_emb={},
                          chk={}, res=X.AGCLIPResult(), progress=False)
    return ctx, AGCLIPHead(cfg.head).eval()


def test_location_prior_is_none_at_weight_zero_and_beta_times_the_vmf_density_otherwise():
    ctx, _ = _context()
    assert X.location_prior(ctx, "train", 3) is None
    ctx.beta = 2.0
    lp = X.location_prior(ctx, "train", 3)
    pts = np.unique(ctx.ll["train"], axis=0)  # the "train" gallery
    assert lp.shape == (3, len(pts))
    torch.testing.assert_close(lp[1], 2.0 * vmf_log_prior(pts, ctx.ll["train"], ctx.cfg.prior_bandwidth_km))


def test_locate_split_returns_gallery_points_and_the_prior_pulls_them_into_the_cluster():
    ctx, head = _context()
    gallery = {tuple(p) for p in np.unique(ctx.ll["train"], axis=0)}
    no_prior = X.locate_split(ctx, head, "test", decoder="argmax", with_prior=False)
    assert no_prior.shape == (20, 2) and {tuple(p) for p in no_prior} <= gallery
    ctx.beta = 4.0
    with_prior = X.locate_split(ctx, head, "test", decoder="argmax")
    err = lambda p: X.km_errors(p, ctx.ll["test"])  # noqa: E731
    assert err(with_prior).max() < 400  # every decoded point inside the +-1 deg cluster (diagonal ~310 km)
    assert np.median(err(with_prior)) <= np.median(err(no_prior))


def test_main_rows_choose_the_prior_weight_on_validation():
    ctx, head = _context()
    q_test, q_val = X.recording_feats(ctx, head, "test"), X.recording_feats(ctx, head, "val")
    X.main_rows(ctx, head, q_test, q_val)
    res = ctx.res
    assert list(res.prior_sweep["prior weight"]) == [0.0, 1.0, 4.0] and (res.prior_sweep["n"] == 20).all()
    best = res.prior_sweep.loc[res.prior_sweep["median_km"].idxmin(), "median_km"]
    chosen = res.prior_sweep.set_index("prior weight").loc[res.prior_weight, "median_km"]
    assert res.prior_weight > 0 and chosen == pytest.approx(best) and ctx.beta == res.prior_weight
    assert len(res.main) == 4 and all(len(e) == 20 for e in res.main.values())
    # the decoder is reported on validation too (both decoders, without and with the chosen prior), never on test
    ds = res.decoder_sweep
    assert list(ds["decoder"]) == ["argmax", "mass_within"] * 2 and (ds["n"] == 20).all()
    assert list(ds["prior weight"]) == [0.0, 0.0, res.prior_weight, res.prior_weight]
    same = ds[(ds.decoder == ctx.cfg.decoder) & (ds["prior weight"] == res.prior_weight)]["median_km"].iloc[0]
    assert same == pytest.approx(best)  # the prior sweep decodes validation with the run's decoder
    without, with_prior = (res.main[f"AG-CLIP{p} (argmax retrieval)"] for p in ("", " + location prior"))
    assert np.median(with_prior) < np.median(without)


def test_encoder_and_pooling_rows_run_once_per_ablation_seed_and_keep_the_main_seed_apart():
    """Heads of every (name, seed) are put in the run's cache beforehand, so nothing trains: the per-seed loop,
    the memo of train_head and which seed lands in ``res.encoders`` / ``res.pooling`` are what is tested."""
    import dataclasses

    ctx, _ = _context()
    ctx.cfg = dataclasses.replace(ctx.cfg, encoders=("fourier", "sinr"), poolings=("average",),
                                  ablation_seeds=(0, 1))
    for seed in (0, 1):
        torch.manual_seed(seed)  # each seed's untrained heads differ, as trained ones would
        ctx.heads[("agclip", seed)] = AGCLIPHead(ctx.cfg.head).eval()
        ctx.heads[("agclip-sinr", seed)] = AGCLIPHead(dataclasses.replace(ctx.cfg.head, location_encoder="sinr")).eval()
    X.encoder_rows(ctx, ctx.cfg.head)
    X.pooling_rows(ctx, ctx.cfg.head)
    res = ctx.res
    assert sorted(res.encoders_by_seed) == sorted(res.pooling_by_seed) == [0, 1]
    assert all(set(r) == {"fourier", "sinr"} and all(len(e) == 20 for e in r.values())
               for r in res.encoders_by_seed.values())
    assert res.encoders.keys() == res.encoders_by_seed[0].keys() and res.pooling.keys() == {"average"}
    np.testing.assert_array_equal(res.encoders["sinr"], res.encoders_by_seed[0]["sinr"])
    # the default encoder's row and the average pooling are the same head (the main model of that seed)
    for seed in (0, 1):
        np.testing.assert_array_equal(res.encoders_by_seed[seed]["fourier"], res.pooling_by_seed[seed]["average"])
    assert not np.array_equal(res.encoders_by_seed[0]["sinr"], res.encoders_by_seed[1]["sinr"])


def test_checklist_and_gallery_rows_keep_per_recording_errors_for_paired_tests():
    """The checks compare rows pairwise (paired bootstrap, seed_compare), so the checklist on/off rows of every seed
    and every gallery x decoder x prior row keep their (N,) test errors, the same numbers their summary rows give."""
    import dataclasses

    ctx, _ = _context()
    ctx.cfg = dataclasses.replace(ctx.cfg, galleries=("train", "val"), ablation_seeds=(0, 1))
    for seed in (0, 1):
        torch.manual_seed(seed)
        ctx.heads[("agclip", seed)] = AGCLIPHead(ctx.cfg.head).eval()
        ctx.heads[("agclip-nochecklist", seed)] = AGCLIPHead(ctx.cfg.head).eval()
    X.checklist_rows(ctx, ctx.cfg.head)
    res = ctx.res
    assert sorted(res.checklist_by_seed) == [0, 1] and all(set(d) == {True, False} for d in res.checklist_by_seed.values())
    for r in res.checklist.itertuples():
        d = res.checklist_by_seed[r.seed][r.checklist]
        assert len(d) == 20 and r.median_km == pytest.approx(np.median(d))
    ctx.beta = 1.0
    X.gallery_rows(ctx, ctx.heads[("agclip", 0)], X.recording_feats(ctx, ctx.heads[("agclip", 0)], "test"))
    assert len(res.gallery_errors) == len(res.galleries) == 2 * 2 * 2  # galleries x decoders x (no prior, prior)
    for r in res.galleries.itertuples():
        assert r.median_km == pytest.approx(np.median(res.gallery_errors[(r.gallery, r.decoder, r.prior)]))


def test_seeds_of_ablations_default_to_the_main_seed_and_reject_repeats():
    cfg = X.AGCLIPRunConfig(train=TrainConfig(seed=5))
    assert cfg.seeds_of_ablations == (5,)
    assert X.AGCLIPRunConfig(ablation_seeds=(3, 4)).seeds_of_ablations == (3, 4)
    with pytest.raises(ValueError, match="ablation_seeds"):
        X.AGCLIPRunConfig(ablation_seeds=(1, 1))


def test_seed_summary_gives_the_mean_and_sd_over_seeds_and_one_bootstrap_interval_per_seed():
    from soundloc.metrics import seed_summary

    per_seed = {0: {"A": np.array([100.0, 300.0, 5000.0])}, 1: {"A": np.array([200.0, 400.0, 6000.0])}}
    row = seed_summary(per_seed, B=50).set_index("method").loc["A"]
    assert row["n"] == 3
    assert row["median_km"] == pytest.approx(350.0)  # medians 300 and 400
    assert row["median_km seed sd"] == pytest.approx(np.sqrt(2 * 50.0 ** 2))  # sample sd, ddof 1
    assert row["region_%"] == pytest.approx(100 / 3) and row["region_% seed sd"] == pytest.approx(0.0)
    assert row["median_km 95% CI"].count(";") == 1  # seed 0's interval; seed 1's
    one = seed_summary({0: per_seed[0]}, B=50).iloc[0]
    assert one["median_km"] == pytest.approx(300.0) and np.isnan(one["median_km seed sd"])
    with pytest.raises(ValueError, match="'A'.*seed"):
        seed_summary({0: per_seed[0], 1: {"B": per_seed[1]["A"]}})


def _shifted(shifts: list[float]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One (a, b) pair per seed with a = b + shift on every recording: each bootstrap median difference is the shift."""
    b = np.linspace(100.0, 5000.0, 51)
    return [(b + d, b) for d in shifts]


def test_seed_compare_calls_a_gain_only_outside_both_the_seed_spread_and_every_bootstrap_interval():
    from soundloc.book import say_compare
    from soundloc.metrics import seed_compare

    gain = seed_compare(_shifted([-100.0, -100.0, -400.0]), B=50)
    assert gain["diff"] == pytest.approx(-200.0) and gain["seed_sd"] == pytest.approx(np.sqrt(30000.0))
    assert (gain["lo"], gain["hi"]) == pytest.approx((-400.0, -100.0)) and gain["verdict"] == "better"
    assert seed_compare(_shifted([100.0, 100.0, 400.0]), B=50)["verdict"] == "worse"
    # every seed's interval excludes 0, but the mean (-140) is inside the seed sd (225): a tie
    spread = seed_compare(_shifted([-10.0, -10.0, -400.0]), B=50)
    assert spread["seed_sd"] == pytest.approx(np.sqrt(50700.0)) and spread["seed_verdicts"] == "better, better, better"
    assert spread["verdict"] == "tie" and "inside the seed spread" in say_compare(spread, "A", "B")
    # mean (-66.7) outside the seed sd (57.7), but one seed's interval is [0, 0]: a tie
    ci = seed_compare(_shifted([-100.0, -100.0, 0.0]), B=50)
    assert abs(ci["diff"]) > ci["seed_sd"] and ci["verdict"] == "tie"
    assert say_compare(ci, "A", "B").endswith("an interval includes 0).")
    assert say_compare(gain, "A", "B").startswith("A is better than B on the median error (mean over 3 training "
                                                  "seeds -200 km")
    # one seed: the bootstrap rule alone
    assert seed_compare(_shifted([-10.0]), B=50)["verdict"] == "better"
