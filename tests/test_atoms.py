"""Acoustic atoms (soundloc.atoms): the top-k SAE recovers a planted dictionary; descriptions and heads;
real BirdNET windows (cache, bands, clock time) and the probe."""
import numpy as np
import pandas as pd
import pytest
import torch

from soundloc import atoms
from soundloc.detect import BirdNETDetector, flat_sigmoid, top_species


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


def test_clip_hour_from_file_names():
    assert atoms.clip_hour("S4A03895_20190522_063000.wav") == 6.5
    assert atoms.clip_hour("/x/S4A03895_20190522_234500.wav") == 23.75
    assert np.isnan(atoms.clip_hour("XC563936_soundscape.mp3"))


def test_band_excess_finds_a_tone_in_its_window():
    """A 3 kHz tone from 3 s to 6 s in noise: the window starting at 3 s peaks in the band holding 3 kHz,
    the windows around it do not stand out there."""
    sr, rng = 48000, np.random.default_rng(0)
    x = 0.01 * rng.standard_normal(12 * sr)
    t = np.arange(3 * sr) / sr
    x[3 * sr:6 * sr] += 0.5 * np.sin(2 * np.pi * 3000 * t)
    b = atoms.band_excess(x, sr, np.array([0.0, 3.0, 6.0, 9.0]))
    k = np.searchsorted(atoms.BAND_EDGES_HZ, 3000) - 1
    assert b.shape == (4, 40) and b[1].argmax() == k and b[1, k] > 20
    assert b[[0, 2, 3], k].max() < 3


def test_linear_probe_reads_an_informative_feature():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    X = np.c_[y + 0.1 * rng.standard_normal(400), rng.standard_normal((400, 5))]
    names = np.array(["a", "b", "c"])[y]
    good = atoms.linear_probe(X[:200], names[:200], X[200:], names[200:])
    noise = atoms.linear_probe(X[:200, 1:], names[:200], X[200:, 1:], names[200:])
    assert good["accuracy %"] > 95 and noise["accuracy %"] < 50
    major = pd.Series(names[:200]).value_counts().index[0]
    assert good["majority %"] == 100 * np.mean(names[200:] == major)


@pytest.fixture(scope="module")
def two_real_clips(mirror, tmp_path_factory):
    """RealWindows of two Jura dawn clips (06:30, 06:45) built in an empty data folder, and that folder."""
    data = tmp_path_factory.mktemp("data")
    files = sorted((mirror / "audio" / "jura_2019-05-22").glob("*.wav"))[26:28]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOUNDLOC_DATA", str(data))
        det = BirdNETDetector(cache=False)
        rw = atoms.real_windows(files, 1.5, detector=det)
    return files, data, det, rw


def test_real_windows_cache_round_trip(two_real_clips, monkeypatch):
    """The second call reads the disk cache (the model is not run) and gives the same windows; another
    overlap is another cache entry. Hours come from the file names."""
    files, data, det, rw = two_real_clips
    assert rw.emb.shape == (12, 1024) and list(np.bincount(rw.clip)) == [6, 6] and rw.files == [f.name for f in files]
    np.testing.assert_allclose(rw.hour[:6], 6.5 + rw.start[:6] / 3600)
    assert len(list((data / "cache" / "birdnet_embed").glob("windows-*.npz"))) == 1
    monkeypatch.setenv("SOUNDLOC_DATA", str(data))
    monkeypatch.setattr(det, "logits", lambda *a: pytest.fail("the cache was not used"))
    again = atoms.real_windows(files, 1.5, detector=det)
    for k in ("emb", "clip", "start", "band"):
        np.testing.assert_array_equal(getattr(again, k), getattr(rw, k))
    with pytest.raises(pytest.fail.Exception):
        atoms.real_windows(files, 0.0, detector=det)


def test_atom_descriptions_point_at_windows_where_the_species_was_detected(two_real_clips):
    """An atom that fires with a species' BirdNET score is described by that species, and its top windows
    are ones where BirdNET detected it; an atom firing on the quietest windows is described as (none)."""
    _, _, det, rw = two_real_clips
    scores = flat_sigmoid(det.logits_from_embeddings(rw.emb))
    sp = top_species(scores, det.species, 0.1)
    target = pd.Series(sp[sp != "(none)"]).value_counts().index[0]
    j = det.species.index(target)
    acts = torch.zeros(len(sp), 3)
    acts[:, 0] = torch.as_tensor(scores[:, j]) * torch.as_tensor(scores[:, j] >= 0.1)
    acts[:, 1] = torch.as_tensor(1.0 - scores.max(1)) * torch.as_tensor(sp == "(none)")
    acts[:, 2] = 0.01  # fires everywhere, weakly
    d = atoms.describe_atoms(acts, sp, rw.peak_hz, top=3, hours=rw.hour).set_index("atom")
    assert d.loc[0, "top species"] == target and d.loc[0, "top species share %"] > 50
    assert 6.5 <= d.loc[0, "hour (median)"] < 7.0
    if (sp == "(none)").any():
        assert d.loc[1, "top species"] == "(none)"


def test_band_excess_has_no_empty_band():
    """Every band holds FFT bins: white noise at 48 kHz leaves no band pinned at the floor in every window
    (an empty band would read 0 dB everywhere and show as a comb in the atom figure)."""
    x = np.random.default_rng(1).standard_normal(9 * 48000)
    b = atoms.band_excess(x, 48000, np.array([0.0, 3.0, 6.0]), window_s=3.0)
    assert (b.max(0) > 0).all()
