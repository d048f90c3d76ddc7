"""The flow-matching location head on S^2 (soundloc.flow): geometry, solvers, density, conditioning."""
import math

import numpy as np
import pytest
import torch

from soundloc import flow
from soundloc.sphere import cell_areas, haversine, to_xyz, uniform_grid


def _toy_head(**kw):
    return flow.FlowHead(flow.FlowConfig(hidden=32, depth=2, **kw))


def test_velocity_field_is_tangent():
    head = _toy_head(cond_dim=5)
    x = flow.normalize(torch.randn(500, 3))
    v = head.field(x, torch.rand(500), head.field.embed_condition(torch.randn(500, 5)))
    assert v.abs().max() > 1e-3  # not trivially zero
    assert (v * x).sum(-1).abs().max() < 1e-5


def test_slerp_geodesic_and_velocity():
    x0, x1 = (flow.normalize(torch.randn(200, 3, dtype=torch.float64)) for _ in range(2))
    t = torch.rand(200, dtype=torch.float64)
    xt, ut = flow.slerp(x0, x1, t)
    assert torch.allclose(xt.norm(dim=-1), torch.ones(200, dtype=torch.float64), atol=1e-6)
    eps = 1e-5  # finite difference of the path
    xe, _ = flow.slerp(x0, x1, t + eps)
    assert torch.allclose((xe - xt) / eps, ut, atol=1e-3)
    th = torch.acos((x0 * x1).sum(-1).clamp(-1, 1))
    assert torch.allclose(ut.norm(dim=-1), th, atol=1e-4)  # constant speed = the angle


@pytest.mark.parametrize("method", ["euler", "rk4", "adaptive"])
def test_samples_stay_on_the_sphere(method):
    head = _toy_head(cond_dim=4)
    x = head.sample(torch.randn(3, 4), n=300, method=method, steps=10)
    assert x.shape == (3, 300, 3)
    assert (x.norm(dim=-1) - 1).abs().max() < 1e-5


def test_adaptive_agrees_with_fine_rk4():
    head = _toy_head()
    x0 = head.sample_base(400, torch.Generator().manual_seed(1))
    ref = head.integrate(x0, None, method="rk4", steps=200)
    ada = head.integrate(x0, None, method="adaptive", rtol=1e-6, atol=1e-7)
    assert (ada - ref).norm(dim=-1).max() < 1e-4


def test_exact_divergence_matches_autograd_trace():
    head = _toy_head(cond_dim=3)
    x = flow.normalize(torch.randn(64, 3, dtype=torch.float64))
    head.field.double()
    h = head.field.embed_condition(torch.randn(64, 3, dtype=torch.float64))
    t = torch.rand(64, dtype=torch.float64)
    _, div = head.field.divergence(x, t, h)
    # reference: divergence in an orthonormal tangent frame, full Jacobian by torch.autograd.functional
    for b in range(4):
        J = torch.autograd.functional.jacobian(lambda z: head.field(z[None], t[b:b + 1], h[b:b + 1])[0], x[b])
        e1 = flow.normalize(torch.linalg.cross(x[b], torch.tensor([0.3, 0.5, 0.8], dtype=torch.float64)))
        e2 = torch.linalg.cross(x[b], e1)
        ref = e1 @ J @ e1 + e2 @ J @ e2
        assert abs(float(ref - div[b])) < 1e-8


def test_vmf_sampler_and_density_agree():
    mu = torch.tensor([[0.0, 0.0, 1.0]]).expand(20000, 3)
    s = flow.vmf_sample(mu, 50.0, torch.Generator().manual_seed(0))
    # E[cos angle] = coth(k) - 1/k for a vMF on S^2
    assert abs(float(s[:, 2].mean()) - (1 / math.tanh(50.0) - 1 / 50.0)) < 2e-3
    g = uniform_grid(1.0)
    lp = flow.vmf_mixture_log_density(torch.as_tensor(to_xyz(g[:, 0], g[:, 1]), dtype=torch.float32),
                                      torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]), 50.0)
    mass = float((np.exp(lp.double().numpy()) * cell_areas(g, 1.0) / 6371.0 ** 2).sum())
    assert abs(mass - 1) < 0.01


@pytest.mark.parametrize("base", ["uniform", "prior"])
def test_density_integrates_to_one(base):
    """An untrained (random) field bends the base a lot; its density still integrates to 1 within 2 %."""
    prior = np.array([[45.0, 10.0], [-20.0, 130.0], [30.0, -100.0]]) if base == "prior" else None
    head = flow.FlowHead(flow.FlowConfig(hidden=32, depth=2, base=base, prior_kappa=20.0, cond_dim=2), prior)
    with torch.no_grad():
        for p in head.field.net.parameters():
            p.mul_(3.0)  # a strongly non-uniform transport
    g = uniform_grid(2.5)
    areas = cell_areas(g, 2.5) / 6371.0 ** 2  # steradians
    ld = head.log_density(g, np.random.default_rng(0).standard_normal((2, 2)), steps=24)
    mass = (np.exp(ld) * areas).sum(1)
    assert np.ptp(ld[0]) > 1.0  # far from uniform
    assert np.all(np.abs(mass - 1) < 0.02), mass
    km2 = head.log_density(g[:5], np.zeros((1, 2)), steps=8, per_km2=True)
    sr = head.log_density(g[:5], np.zeros((1, 2)), steps=8)
    assert np.allclose(sr - km2, 2 * np.log(6371.0))


def test_two_cluster_conditional_toy_is_recovered():
    """Condition 0 -> points near Paris, condition 1 -> near Sydney: each condition's samples land on its cluster."""
    rng = np.random.default_rng(0)
    centres = np.array([[48.9, 2.35], [-33.9, 151.2]])
    lab = rng.integers(0, 2, 600)
    pts = centres[lab] + rng.normal(0, 1.5, (600, 2))
    cond = np.eye(2)[lab]
    head = flow.FlowHead(flow.FlowConfig(cond_dim=2, cond_proj=8, hidden=64, depth=3, epochs=60, batch_size=128,
                                         lr=3e-3, cond_dropout=0.0))
    hist = head.fit(pts, cond)
    assert np.mean(hist[-5:]) < 0.5 * np.mean(hist[:3])  # the loss falls
    x = head.sample(np.eye(2), n=200, steps=20).numpy()
    from soundloc.sphere import to_latlon

    for k in range(2):
        ll = to_latlon(x[k])
        d = haversine(ll[:, 0], ll[:, 1], *centres[k])
        assert np.median(d) < 800, (k, np.median(d))
        assert np.mean(d < 2000) > 0.8
    est = head.point_estimate(np.eye(2), n=128)
    assert (haversine(est[:, 0], est[:, 1], centres[:, 0], centres[:, 1]) < 600).all()
    # the density ranks the right cluster higher for each condition
    ld = head.log_density(centres, np.eye(2), steps=16)
    assert ld[0, 0] > ld[0, 1] and ld[1, 1] > ld[1, 0]


def test_fit_cached_reloads(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDLOC_DATA", str(tmp_path))
    cfg = flow.FlowConfig(hidden=16, depth=1, epochs=2)
    pts = np.array([[0.0, 0.0], [10.0, 10.0], [20.0, -5.0]])
    a, trained = flow.fit_cached(cfg, pts)
    b, again = flow.fit_cached(cfg, pts)
    assert trained and not again and a.history == b.history
    x = flow.normalize(torch.randn(5, 3))
    assert torch.equal(a.field(x, torch.zeros(5)), b.field(x, torch.zeros(5)))


def test_bad_conditions_are_named():
    head = _toy_head(cond_dim=4)
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        head.sample(np.zeros((2, 3)), n=2)
    with pytest.raises(ValueError, match="prior_latlon"):
        flow.FlowHead(flow.FlowConfig(base="prior"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_placement():
    head = flow.FlowHead(flow.FlowConfig(cond_dim=3, hidden=32, depth=2, base="prior", epochs=1),
                         np.array([[10.0, 20.0], [-30.0, 40.0]]), device="cuda")
    assert next(head.field.parameters()).is_cuda and head.prior.is_cuda
    head.fit(np.array([[1.0, 2.0], [3.0, 4.0]]), np.zeros((2, 3)))
    x = head.sample(np.zeros((2, 3)), n=16)
    assert x.is_cuda and (x.norm(dim=-1) - 1).abs().max() < 1e-5
    ld = head.log_density(np.array([[0.0, 0.0]]), np.zeros((2, 3)), steps=4)
    assert ld.shape == (2, 1) and np.isfinite(ld).all()


def test_bench_flow_runs_and_reports_its_ratio():
    import importlib.util

    from soundloc import paths

    spec = importlib.util.spec_from_file_location("bench_flow", paths.repo_root() / "bench" / "bench_flow.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = mod.main(["--recordings", "4", "--samples", "8", "--steps", "2", "--gallery", "500", "--density-points", "16",
                  "--repeats", "1"])
    assert r["device"] == "cpu" and r["samples_per_s"] > 0 and r["density_points_per_s"] > 0
    assert abs(r["ratio"] - r["flow_ms_per_recording"] / r["retrieval_ms_per_recording"]) < 1e-9
