"""Species range models: BirdNET meta model (TFLite and torch port), SINR loader, cached range maps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from soundloc import birdnet_meta as BM, ranges as R, sinr as SI
from soundloc.sphere import is_land, uniform_grid

OHIO, AUSTRALIA, FRANCE, GERMANY, SOUTH_AFRICA = (40.0, -83.0), (-25.0, 134.0), (47.0, 2.5), (50.0, 10.0), (-26.0, 28.0)


@pytest.fixture(scope="module")
def tfl():
    return BM.BirdNETMetaTFLite()


@pytest.fixture(scope="module")
def tor():
    return BM.load_birdnet_meta_torch()


def random_land(n: int, seed: int = 0) -> np.ndarray:
    """n random land points, uniform on the sphere -> (n, 2) lat/lon degrees."""
    rng = np.random.default_rng(seed)
    m = 5 * n
    lat = np.rad2deg(np.arcsin(rng.uniform(-1, 1, m)))
    lon = rng.uniform(-180, 180, m)
    keep = is_land(lat, lon)
    assert keep.sum() >= n
    return np.stack([lat[keep][:n], lon[keep][:n]], axis=1)


def p_at(model, name, place, week=None) -> float:
    """Probability of one species at one (lat, lon)."""
    idx, unknown = model.match([name])
    assert not unknown
    return float(model.prob([place[0]], [place[1]], week, species_idx=idx)[0, 0])


# ---------------------------------------------------------------- BirdNET
def test_species_list(tfl, tor):
    assert len(tfl.species) == len(tor.species) == 6522
    assert tfl.species == tor.species
    assert len(set(tfl.species)) == 6522
    assert "Turdus merula" in tfl.species and "_" not in "".join(tfl.species)


def test_torch_matches_tflite_on_10k_land_points(tfl, tor):
    pts = random_land(10_000, seed=1)
    weeks = np.random.default_rng(2).integers(1, 49, len(pts))
    for week in (weeks, None):
        a = tfl.prob(pts[:, 0], pts[:, 1], week)
        b = tor.prob(pts[:, 0], pts[:, 1], week)
        assert a.shape == b.shape == (10_000, 6522) and a.dtype == b.dtype == np.float32
        assert np.abs(a - b).max() < 1e-3


def test_forward_is_pure_torch_and_matches_prob(tor):
    pts = random_land(64, seed=3)
    x = torch.tensor(np.c_[pts, np.full(len(pts), 20)], dtype=torch.float32)
    with torch.inference_mode():
        y = tor(x).numpy()
    np.testing.assert_allclose(y, tor.prob(pts[:, 0], pts[:, 1], 20), atol=1e-5)
    idx = np.array([5, 991, 6253])
    with torch.inference_mode():
        ys = tor(x, torch.as_tensor(idx)).numpy()
    np.testing.assert_allclose(ys, y[:, idx], atol=1e-5)


def test_trunk_is_reused_at_the_same_points_and_week(tor, monkeypatch):
    model = BM.load_birdnet_meta_torch()
    model.chunk = 100
    monkeypatch.setattr(tor, "chunk", 100)
    pts = random_land(250, seed=4)  # three chunks of rows
    calls = []
    features = model.features
    monkeypatch.setattr(model, "features", lambda x: calls.append(len(x)) or features(x), raising=False)
    a = model.prob(pts[:, 0], pts[:, 1], 20, [7, 300, 5000])
    assert calls == [100, 100, 50]
    b = model.prob(pts[:, 0], pts[:, 1], 20, [300, 6000])  # other species, same points and week: no trunk pass
    assert calls == [100, 100, 50]
    model.prob(pts[:, 0], pts[:, 1], 21, [300])  # another week: a new pass
    assert len(calls) == 6
    assert np.array_equal(b, tor.prob(pts[:, 0], pts[:, 1], 20, [300, 6000]))  # the same numbers as a first call
    assert np.array_equal(a[:, 1], b[:, 0])
    monkeypatch.setattr(BM, "TRUNK_MEMO_BYTES", 1000)  # too large to keep: streamed, nothing memoised, same numbers
    memo = model.__dict__["_trunk_memo"]
    kept = len(memo)
    assert np.array_equal(model.prob(pts[:, 0], pts[:, 1], 20, [300, 6000]), b) and len(memo) == kept


def test_match_reports_unknown_names(tfl, tor):
    for m in (tfl, tor):
        idx, unknown = m.match(["Turdus merula", "  turdus   MERULA ", "Notus species", "Cardinalis cardinalis"])
        assert unknown == ["Notus species"]
        assert len(idx) == 3 and idx[0] == idx[1] == m.species.index("Turdus merula")
        assert m.species[idx[2]] == "Cardinalis cardinalis"
    idx, unknown = tfl.match([])
    assert len(idx) == 0 and unknown == []


def test_hand_checkable_ranges(tor, tfl):
    for m in (tor, tfl):
        assert p_at(m, "Cardinalis cardinalis", OHIO, 20) > 0.8
        assert p_at(m, "Cardinalis cardinalis", AUSTRALIA, 20) < 0.01
        assert p_at(m, "Turdus merula", FRANCE) > 0.8
        assert p_at(m, "Turdus merula", OHIO) < 0.01


def test_week_matters_for_a_migrant(tor):
    # Barn swallow: breeds in Europe (summer), winters in southern Africa
    assert p_at(tor, "Hirundo rustica", GERMANY, 26) > 0.5
    assert p_at(tor, "Hirundo rustica", GERMANY, 2) < 0.05
    assert p_at(tor, "Hirundo rustica", SOUTH_AFRICA, 2) > 0.5
    assert p_at(tor, "Hirundo rustica", SOUTH_AFRICA, 26) < 0.2


def test_week_encoding(tor, tfl):
    pts = random_land(20, seed=4)
    yr = tor.prob(pts[:, 0], pts[:, 1], None)
    np.testing.assert_array_equal(yr, tor.prob(pts[:, 0], pts[:, 1], -1))
    np.testing.assert_array_equal(yr, tor.prob(pts[:, 0], pts[:, 1], np.full(20, -1)))
    mixed = np.where(np.arange(20) % 2 == 0, -1, 30)
    pm = tor.prob(pts[:, 0], pts[:, 1], mixed)
    np.testing.assert_allclose(pm[::2], yr[::2], atol=1e-5)
    np.testing.assert_allclose(pm[1::2], tor.prob(pts[1::2, 0], pts[1::2, 1], 30), atol=1e-5)
    for m in (tor, tfl):
        for bad in (0, 49, 2.5, np.ones(3, int)):
            with pytest.raises(ValueError):
                m.prob(pts[:, 0], pts[:, 1], bad)


def test_empty_subset_and_bad_coordinates(tor, tfl):
    assert tor.prob([], [], 10).shape == (0, 6522)
    for m in (tor, tfl):
        with pytest.raises(ValueError, match="latitude"):
            m.prob([95.0], [10.0])
        with pytest.raises(ValueError):
            m.prob([10.0, 20.0], [10.0])
    pts = random_land(30, seed=5)
    idx = np.array([7, 3000, 6521])
    for m in (tor, tfl):
        np.testing.assert_allclose(m.prob(pts[:, 0], pts[:, 1], 12, species_idx=idx),
                                   m.prob(pts[:, 0], pts[:, 1], 12)[:, idx], atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_on_cuda_matches_cpu(tor):
    gpu = BM.load_birdnet_meta_torch(device="cuda")
    pts = random_land(2000, seed=6)
    np.testing.assert_allclose(gpu.prob(pts[:, 0], pts[:, 1], 20), tor.prob(pts[:, 0], pts[:, 1], 20), atol=1e-4)


def test_factory():
    assert isinstance(R.load_range_model("birdnet", "tflite"), BM.BirdNETMetaTFLite)
    assert isinstance(R.load_range_model("birdnet", "torch"), BM.BirdNETMetaTorch)
    with pytest.raises(ValueError):
        R.load_range_model("birdnet", "onnx")
    with pytest.raises(ValueError):
        R.load_range_model("nope")


# ---------------------------------------------------------------- SINR
def test_sinr_random_weights_shapes():
    torch.manual_seed(0)
    cfg = SI.SINRConfig(num_classes=7)
    m = SI.SINR(cfg, species=[f"Genus species{i}" for i in range(7)]).eval()
    assert [n for n, _ in m.named_parameters()][:2] == ["feats.0.weight", "feats.0.bias"]
    assert "feats.5.w2.weight" in m.state_dict() and "class_emb.weight" in m.state_dict()
    p = m.prob([10.0, -30.0, 80.0], [20.0, 150.0, -170.0])
    assert p.shape == (3, 7) and p.dtype == np.float32 and ((p > 0) & (p < 1)).all()
    np.testing.assert_array_equal(p, m.prob([10.0, -30.0, 80.0], [20.0, 150.0, -170.0], week=12))
    np.testing.assert_allclose(m.prob([10.0], [20.0], species_idx=[6, 2]), p[:1, [6, 2]], atol=1e-5)
    # sin_cos encoding: [sin(pi lon/180), sin(pi lat/90), cos(pi lon/180), cos(pi lat/90)]
    e = SI.SINR.encode(torch.tensor([45.0]), torch.tensor([90.0]))
    np.testing.assert_allclose(e.numpy(), [[1.0, 1.0, 0.0, 0.0]], atol=1e-5)
    idx, unknown = m.match(["genus SPECIES3", "Notus species"])
    assert list(idx) == [3] and unknown == ["Notus species"]


def test_sinr_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    cfg = SI.SINRConfig(num_classes=5, num_filts=32, depth=2)
    m = SI.SINR(cfg).eval()
    lat, lon = np.array([0.0, 45.0, -60.0]), np.array([0.0, 120.0, -75.0])
    ref = m.prob(lat, lon)
    raw = tmp_path / "raw.pt"
    torch.save(m.state_dict(), raw)
    wrapped = tmp_path / "sinr_model.pt"
    torch.save({"epoch": 3, "state_dict": m.state_dict(),
                "params": {"input_enc": "sin_cos", "num_classes": 5, "num_filts": 32, "depth": 2,
                           "input_dim": 4, "class_to_taxa": [11, 12, 13, 14, 15]}}, wrapped)
    a = SI.load_sinr(raw, species_names=list("abcde"))
    b = SI.load_sinr(wrapped)
    assert a.species == list("abcde") and b.species == ["11", "12", "13", "14", "15"]
    assert a.config == b.config == cfg
    np.testing.assert_array_equal(a.prob(lat, lon), ref)
    np.testing.assert_array_equal(b.prob(lat, lon), ref)
    assert isinstance(R.load_range_model("sinr", checkpoint_path=raw), SI.SINR)


def test_sinr_bad_checkpoints_raise_clear_errors(tmp_path):
    m = SI.SINR(SI.SINRConfig(num_classes=5, num_filts=32, depth=2))
    sd = m.state_dict()
    sd["feats.3.w1.weight"] = torch.zeros(16, 16)
    bad = tmp_path / "wrong_shape.pt"
    torch.save(sd, bad)
    with pytest.raises(ValueError, match="wrong_shape.pt"):
        SI.load_sinr(bad)
    good = tmp_path / "good.pt"
    torch.save(m.state_dict(), good)
    with pytest.raises(ValueError, match="good.pt"):
        SI.load_sinr(good, species_names=["only", "three", "names"])
    env = tmp_path / "env.pt"
    torch.save({"state_dict": m.state_dict(), "params": {"input_enc": "sin_cos_env"}}, env)
    with pytest.raises(ValueError, match="sin_cos_env"):
        SI.load_sinr(env)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        SI.load_sinr(junk)


# ---------------------------------------------------------------- range maps + cache
def test_range_map_uncached(tor):
    pts = uniform_grid(30.0)
    idx = np.array([991, 6253])
    rm = R.range_map(tor, pts, week=20, species_idx=idx, chunk=50)
    assert rm.shape == (2, len(pts)) and rm.dtype == np.float32
    np.testing.assert_allclose(rm, tor.prob(pts[:, 0], pts[:, 1], 20)[:, idx].T, atol=1e-5)


def test_range_map_cache(tor, tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDLOC_DATA", str(tmp_path))
    pts = uniform_grid(15.0)  # 288 points
    calls = []
    real_prob = tor.prob

    def counting_prob(*a, **k):
        calls.append(1)
        return real_prob(*a, **k)

    monkeypatch.setattr(tor, "prob", counting_prob)
    first = R.range_map(tor, pts, week=20, cache_key="uniform15", chunk=100)
    assert first.shape == (6522, len(pts)) and first.dtype == np.float16
    assert len(calls) == 3
    path = R.range_cache_path(tor, pts, 20, "uniform15")
    assert path.parent == tmp_path / "cache" / "ranges" and path.exists()
    np.testing.assert_allclose(first.astype(np.float32), real_prob(pts[:, 0], pts[:, 1], 20).T, atol=1e-3)

    second = R.range_map(tor, pts, week=20, cache_key="uniform15")
    assert len(calls) == 3  # read from disk
    assert isinstance(second, np.memmap)
    np.testing.assert_array_equal(second, first)
    row = R.range_map(tor, pts, week=20, species_idx=[991], cache_key="uniform15")
    assert len(calls) == 3 and row.shape == (1, len(pts))
    np.testing.assert_array_equal(row[0], first[991])

    # another week, or other points under the same name, is another file
    R.range_map(tor, pts, week=None, cache_key="uniform15", chunk=1000)
    assert len(calls) == 4
    R.range_map(tor, pts[:-1], week=20, cache_key="uniform15", chunk=1000)
    assert len(calls) == 5

    # a truncated file is detected and recomputed
    del first, second
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    third = R.range_map(tor, pts, week=20, cache_key="uniform15", chunk=1000)
    assert len(calls) == 6
    assert path.stat().st_size == len(data)
    assert third.shape == (6522, len(pts))
    # a file with the wrong shape is never read as complete
    np.save(path, np.zeros((10, len(pts)), np.float16))
    R.range_map(tor, pts, week=20, cache_key="uniform15", chunk=1000)
    assert len(calls) == 7
    assert not list(path.parent.glob(".*.tmp"))
