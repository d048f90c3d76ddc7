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
