"""soundloc.psm: the probabilistic contrastive loss reduces to the deterministic one; it trains on a toy."""
import numpy as np
import pytest
import torch

from soundloc import psm


def _pair(b=16, e=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, e, generator=g), torch.randn(b, e, generator=g)


def test_csd_closed_form():
    mu_a, mu_b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    var_a, var_b = torch.tensor([[0.1, 0.2]]), torch.tensor([[0.0, 0.3], [0.5, 0.5]])
    assert torch.allclose(psm.csd(mu_a, var_a, mu_b, var_b), torch.tensor([[2.0 + 0.6, 0.0 + 1.3]]))


@pytest.mark.parametrize("scale", [1.0, 20.0])
def test_probabilistic_loss_reduces_to_deterministic_as_variances_vanish(scale):
    a, b = _pair()
    det = psm.deterministic_loss(a, b, scale)
    zero = torch.zeros_like(a)
    assert psm.probabilistic_loss(a, zero, b, zero, scale) == pytest.approx(det.item(), abs=1e-5)
    gaps = [abs(psm.probabilistic_loss(a, zero + v, b, torch.rand(b.shape, generator=torch.Generator().manual_seed(1)) * v,
                                       scale) - det).item() for v in (1e-1, 1e-3, 1e-6)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-4  # converges as the variances go to zero
    # equal variances everywhere only shift all logits by a constant: the same loss
    assert psm.probabilistic_loss(a, zero + 0.3, b, zero + 0.2, scale) == pytest.approx(det.item(), abs=1e-4)


def test_month_features_wrap_december_to_january():
    f = psm.month_features(torch.tensor([1, 12, 7]))
    assert torch.dist(f[0], f[1]) < torch.dist(f[0], f[2]) and torch.allclose(f.norm(dim=1), torch.ones(3))


def test_psm_loss_falls_on_a_toy():
    torch.manual_seed(0)
    n, cfg = 512, psm.PSMConfig(in_dim=16, embed_dim=8, hidden=64, scale=10.0, vib_weight=1e-3)
    latlon = torch.stack([torch.rand(n) * 120 - 60, torch.rand(n) * 360 - 180], 1)
    month = torch.randint(1, 13, (n,))
    noise = torch.rand(n, 1)  # per-clip corruption of the audio features
    proj = torch.randn(5, 16)
    x = psm.PSM.place(latlon, month) @ proj * (1 - noise) + noise * 2 * torch.randn(n, 16)
    model = psm.PSM(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(300):
        i = torch.randint(0, n, (128,))
        parts = model.loss(x[i], latlon[i], month[i])
        opt.zero_grad(), parts["total"].backward(), opt.step()
        losses.append(parts["contrastive"].item())
    assert np.mean(losses[-30:]) < 0.7 * np.mean(losses[:30])
    assert (model.uncertainty(x) > 0).all()
