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
    without, with_prior = (res.main[f"AG-CLIP{p} (argmax retrieval)"] for p in ("", " + location prior"))
    assert np.median(with_prior) < np.median(without)
