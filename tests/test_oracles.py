"""Checklist oracles (soundloc.oracles): the ridge map from checklists to GeoCLIP space, and the corruptions."""
import numpy as np
import pytest
import torch

from soundloc.oracles import checklists, checklists_at, corrupt, fit_linear_map, predict_embedding


def _ridge64(X, Y, ridge):
    """Float64 reference: W = (Xc^T Xc + r I)^-1 Xc^T Yc, b = mean(Y) - mean(X) W."""
    Xd, Yd = X.double(), Y.double()
    mx, my = Xd.mean(0), Yd.mean(0)
    Xc, Yc = Xd - mx, Yd - my
    W = torch.linalg.solve(Xc.T @ Xc + ridge * torch.eye(X.shape[1], dtype=torch.float64), Xc.T @ Yc)
    return W, my - mx @ W


@pytest.mark.parametrize("n,s", [(300, 700), (700, 300)])  # more species than lists (dual solve), and fewer
def test_ridge_map_matches_a_float64_solve_either_way_round(n, s):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(n, s, generator=g) < 0.05
    Y = torch.nn.functional.normalize(torch.randn(n, 64, generator=g), dim=1)
    W, b = fit_linear_map(X, Y, ridge=1.0)
    W64, b64 = _ridge64(X, Y, 1.0)
    assert W.shape == (s, 64) and b.shape == (64,) and W.dtype == torch.float32
    scale = float(W64.abs().max())
    assert float((W.double() - W64).abs().max()) < 1e-6 * scale  # float64 inside: only the float32 output rounds
    assert float((b.double() - b64).abs().max()) < 1e-6
    Xt = torch.rand(50, s, generator=g) < 0.05
    ref = Xt.double() @ W64 + b64
    assert float((predict_embedding(Xt, W, b).double() - ref).abs().max()) < 1e-4 * float(ref.abs().max())


def test_ridge_must_be_positive():
    with pytest.raises(ValueError, match="ridge must be > 0, got 0"):
        fit_linear_map(torch.ones(3, 2, dtype=torch.bool), torch.zeros(3, 4), ridge=0)


def test_corruptions_remove_species_only():
    g = torch.Generator().manual_seed(1)
    lists = torch.rand(40, 200, generator=g) < 0.2
    assert torch.equal(corrupt(lists, "full", 0), lists)
    half, keep = corrupt(lists, "corrupt50", 0), corrupt(lists, "keep10", 0)
    assert not (half & ~lists).any() and not (keep & ~lists).any()  # never adds a species
    assert (keep.sum(1) == lists.sum(1).clamp(max=10)).all()
    assert 0.35 < half.sum() / lists.sum() < 0.65
    with pytest.raises(ValueError, match="mode must be one of"):
        corrupt(lists, "drop", 0)


class _GradientModel:
    """Species s present with probability (lat + 90) / 180 * (s + 1) / S (a hand-checkable range model)."""

    species = [f"s{i}" for i in range(5)]

    def prob(self, lat, lon, week=None):
        lat = np.asarray(lat, float)
        return ((lat[:, None] + 90) / 180 * (np.arange(5) + 1) / 5).astype(np.float32)


def test_checklists_at_several_thresholds_equal_one_pass_each():
    pts = np.stack([np.linspace(-90, 90, 11), np.zeros(11)], 1)
    at = checklists_at(_GradientModel(), pts, None, (0.1, 0.5), chunk=4)
    for t in (0.1, 0.5):
        assert torch.equal(at[t], checklists(_GradientModel(), pts, None, t, chunk=3))
    # lat 0 -> p = 0.5 * (s + 1) / 5 = 0.1, 0.2, ..., 0.5: all present at 0.1, only the last at 0.5
    assert at[0.1][5].tolist() == [True] * 5 and at[0.5][5].tolist() == [False] * 4 + [True]
