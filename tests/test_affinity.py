"""Species affinities: per-species means, clamped cosine maps, Spearman / AUC against scipy and sklearn."""
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from soundloc import affinity
from soundloc.affinity import affinity_maps, agreement, rank_auc, species_embeddings


def test_species_embeddings_are_normalised_means_and_rare_species_are_zero():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 2.0]])
    emb, n = species_embeddings(f, np.array([0, 0, 1, 0]), 3, min_count=1)
    assert list(n) == [3, 1, 0]
    np.testing.assert_allclose(emb[0].numpy(), np.array([1.0, 3.0]) / np.sqrt(10), atol=1e-6)
    np.testing.assert_allclose(emb[1].numpy(), [1.0, 0.0]) and (emb[2] == 0).all()
    emb2, _ = species_embeddings(f, np.array([0, 0, 1, 0]), 3, min_count=2)
    assert (emb2[1] == 0).all()
    with pytest.raises(ValueError, match="4 features but 3 species labels"):
        species_embeddings(f, np.array([0, 0, 1]), 3)


def test_affinity_is_the_clamped_cosine():
    s = torch.tensor([[1.0, 0.0]])
    g = torch.tensor([[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(affinity_maps(s, g, chunk=3), [[1.0, 0.0, 0.0, np.sqrt(0.5)]], atol=1e-6)


def test_agreement_matches_scipy_and_sklearn():
    rng = np.random.default_rng(0)
    rngmap = rng.random((4, 300))
    aff = 0.5 * rngmap + 0.5 * rng.random((4, 300))
    aff[:, :10] = aff[:, 0:1]  # ties
    rho, auc = agreement(aff, rngmap, threshold=0.5)
    for k in range(4):
        assert rho[k] == pytest.approx(spearmanr(aff[k], rngmap[k]).statistic, abs=1e-9)
        assert auc[k] == pytest.approx(roc_auc_score(rngmap[k] >= 0.5, aff[k]), abs=1e-9)
    assert np.isnan(rank_auc(aff[:1], np.ones((1, 300), bool))[0])  # one class only


def test_recording_density_is_a_normalised_map_peaking_where_recordings_are():
    from soundloc.sphere import haversine, land_grid

    pts = land_grid(2.0)
    recs = np.array([[48.0, 2.0]] * 30 + [[-33.9, 151.2]] * 10)  # Paris x30, Sydney x10
    d = affinity.recording_density(pts, recs, bandwidth_km=300)
    assert d.shape == (len(pts),) and d.sum() == pytest.approx(1.0) and (d >= 0).all()
    top = pts[np.argmax(d)]
    assert haversine(top[0], top[1], 48.0, 2.0) < 300
    near = lambda la, lo: d[haversine(pts[:, 0], pts[:, 1], la, lo) < 400].sum()  # noqa: E731
    assert near(48.0, 2.0) > 2 * near(-33.9, 151.2) > 0  # three times the recordings, about three times the mass
    # as a score it ranks a range around the recordings above the rest: AUC 1 for a range where recordings are
    in_range = (haversine(pts[:, 0], pts[:, 1], 48.0, 2.0) < 500)[None]
    _, auc = affinity.agreement(d[None], in_range.astype(float), threshold=0.5)
    assert auc[0] > 0.99


def test_weighted_agreement_matches_sklearn_and_scipy_on_replicated_points():
    # integer weights: the weighted statistics must equal the ordinary ones on points repeated weight times
    rng = np.random.default_rng(1)
    n = 120
    rngmap = np.round(rng.random((3, n)), 1)  # ties in the ranges too
    aff = np.round(0.5 * rngmap + 0.5 * rng.random((3, n)), 1)  # many ties
    w = rng.integers(0, 5, n).astype(float)  # zero weights included
    rho, auc = agreement(aff, rngmap, threshold=0.5, weights=w)
    rep = np.repeat(np.arange(n), w.astype(int))
    for k in range(3):
        assert rho[k] == pytest.approx(spearmanr(aff[k, rep], rngmap[k, rep]).statistic, abs=1e-9)
        assert auc[k] == pytest.approx(roc_auc_score(rngmap[k, rep] >= 0.5, aff[k, rep]), abs=1e-9)
        assert auc[k] == pytest.approx(roc_auc_score(rngmap[k] >= 0.5, aff[k], sample_weight=w), abs=1e-9)
    # real-valued weights (cell areas) against sklearn's weighted AUC
    wf = rng.random(n) + 0.1
    _, auc_f = agreement(aff, rngmap, threshold=0.5, weights=wf)
    for k in range(3):
        assert auc_f[k] == pytest.approx(roc_auc_score(rngmap[k] >= 0.5, aff[k], sample_weight=wf), abs=1e-9)
    # scaling the weights changes nothing; equal weights are the unweighted statistics
    np.testing.assert_allclose(agreement(aff, rngmap, 0.5, weights=3.7 * wf), agreement(aff, rngmap, 0.5, wf))
    np.testing.assert_allclose(agreement(aff, rngmap, 0.5, weights=np.ones(n)), agreement(aff, rngmap, 0.5))
    with pytest.raises(ValueError, match=r"weights must be \(120,\)"):
        agreement(aff, rngmap, weights=np.ones(7))


def test_weighted_auc_hand_checked():
    # positives score 1 (w 1) and 3 (w 2); negatives 2 (w 3) and 3 (w 1, tied with a positive)
    score = np.array([[1.0, 3.0, 2.0, 3.0]])
    pos = np.array([[True, True, False, False]])
    w = np.array([1.0, 2.0, 3.0, 1.0])
    # correct pairs: (3 vs 2) 2*3 = 6, tie (3 vs 3) 2*1/2 = 1; (1 vs anything) 0 -> 7 / (3 * 4)
    assert rank_auc(score, pos, w)[0] == pytest.approx(7 / 12)
    assert rank_auc(score, pos)[0] == pytest.approx((1 + 0.5) / 4)  # unweighted: 3>2, 3=3


def test_cell_area_weights_count_polar_points_for_their_small_area():
    # in range: the tropics (|lat| < 30); the score is 1 there and also, wrongly, poleward of 70 deg
    from soundloc.range_geolocation import gallery, gallery_areas

    pts = gallery("uniform10")
    in_range = (np.abs(pts[:, 0]) < 30).astype(float)[None]
    score = ((np.abs(pts[:, 0]) < 30) | (np.abs(pts[:, 0]) > 70)).astype(float)[None]
    _, auc_eq = agreement(score, in_range, 0.5)
    _, auc_w = agreement(score, in_range, 0.5, weights=gallery_areas(pts, "uniform10"))
    # equal weights: 4 of the 12 out-of-range latitude bands tie with the range -> 1 - (1/3) / 2
    assert auc_eq[0] == pytest.approx(5 / 6)
    # by area: the polar caps are (1 - sin 70) / (1 - sin 30) of the out-of-range area
    s = np.sin(np.deg2rad([70.0, 30.0]))
    assert auc_w[0] == pytest.approx(1 - (1 - s[0]) / (1 - s[1]) / 2)
