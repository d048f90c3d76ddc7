"""Acoustic atoms (soundloc.atoms): the top-k SAE recovers a planted dictionary; descriptions and heads."""
import numpy as np
import pandas as pd
import torch

from soundloc import atoms


def _planted(n=6000, dim=48, m=24, k=3, seed=0):
    rng = np.random.default_rng(seed)
    D = rng.standard_normal((m, dim))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    codes = np.zeros((n, m))
    idx = np.argsort(rng.random((n, m)), axis=1)[:, :k]
    np.put_along_axis(codes, idx, rng.uniform(1.0, 3.0, (n, k)), axis=1)
    X = codes @ D + 0.01 * rng.standard_normal((n, dim)) + 0.5  # an offset the decoder bias must learn
    return X.astype(np.float32), D, codes


def test_sae_recovers_a_planted_sparse_dictionary():
    X, D, codes = _planted()
    sae, hist = atoms.fit_sae(torch.from_numpy(X), atoms.SAEConfig(n_atoms=48, k=3, epochs=30, lr=3e-3))
    assert hist[-1] < 0.5 * hist[0]  # the loss falls
    learned = sae.dec.detach().numpy()
    best = (D @ learned.T).max(1)  # each planted atom's best cosine among the learned atoms
    assert np.mean(best > 0.9) >= 0.9, np.sort(best)
    assert atoms.fve(sae, X) > 0.9
    a = atoms.activations(sae, X)
    assert ((a > 0).sum(1) <= 3).all() and (a >= 0).all()


def test_fve_and_dead_rate_by_hand():
    sae = atoms.TopKSAE(2, atoms.SAEConfig(n_atoms=3, k=1))
    with torch.no_grad():  # atoms e1, e2 and an atom no input can reach first
        sae.dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]) / torch.tensor([[1.0], [1.0], [2 ** 0.5]]))
        sae.enc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-0.1, -0.1]]))
        sae.enc.bias.zero_()
        sae.b_dec.zero_()
    X = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    # reconstructions: (2, 0), (0, 3), (1, 0) [tie -> one atom]; SSE = 1; SST = sum of squared deviations
    sst = float(((X - X.mean(0)) ** 2).sum())
    assert abs(atoms.fve(sae, X) - (1 - 1 / sst)) < 1e-6
    assert abs(atoms.dead_rate(atoms.activations(sae, X)) - 1 / 3) < 1e-9


def test_pool_and_describe():
    acts = torch.tensor([[1.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 4.0, 0.0], [0.0, 1.0, 0.0]])
    pooled = atoms.pool_recordings(acts, torch.tensor([0, 2, 5]))
    assert torch.allclose(pooled, torch.tensor([[2.0, 0, 0], [0, 7 / 3, 0]]))
    species = np.array(["a", "a", "b", "b", "c"])
    d = atoms.describe_atoms(acts, species, peak_hz=np.array([100.0, 300, 2000, 4000, 8000]), top=2).set_index("atom")
    assert list(d.index) == [1, 0]  # atom 2 never fires; sorted by mean activation
    assert d.loc[1, "top species"] == "b" and d.loc[1, "top species share %"] == 100.0
    assert d.loc[0, "peak Hz (median)"] == 200.0 and abs(d.loc[1, "active %"] - 60.0) < 1e-9


def test_window_peak_hz_finds_the_band_above_its_noise_floor():
    from soundloc.spectrogram import DEFAULT, hz_to_mel

    noise = np.tile(np.arange(128, dtype=np.uint8)[:, None], (1, 512))  # broadband noise, louder in higher bands
    a, b = noise.copy(), noise.copy()
    a[40, :60] = 250  # a short call in band 40 (512 frames: one window per clip, no padding)
    b[90, :60] = 250
    c = noise[:, :200].copy()
    c[90, :40] = 250  # a short clip: 200 frames zero-padded to one 512-frame window
    hz = atoms.window_peak_hz([a, b, c], DEFAULT)
    edges = np.linspace(hz_to_mel(DEFAULT.fmin), hz_to_mel(DEFAULT.fmax), DEFAULT.n_mels + 2)
    want = 700.0 * (10 ** (edges[[41, 91, 91]] / 2595.0) - 1)
    assert np.allclose(hz, want)  # the raw loudest band would be the noisy top band (127) in both


def test_h3_head_learns_from_informative_features():
    rng = np.random.default_rng(0)
    centres = np.array([[48.0, 2.0], [-33.0, 151.0], [40.0, -100.0], [-15.0, -50.0]])
    lab = rng.integers(0, 4, 800)
    ll = centres[lab] + rng.normal(0, 1.0, (800, 2))
    good = np.eye(4)[lab] + 0.1 * rng.standard_normal((800, 4))
    noise = rng.standard_normal((800, 4))
    e_good = atoms.h3_head_errors(good[:600], ll[:600], good[600:], ll[600:], res=1)
    e_noise = atoms.h3_head_errors(noise[:600], ll[:600], noise[600:], ll[600:], res=1)
    assert np.median(e_good) < 400 < np.median(e_noise)
