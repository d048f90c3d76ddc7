"""AG-CLIP: loss, retrieval, pooling, galleries, fusion, calibration and checkpoints (small, synthetic)."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from soundloc import agclip
from soundloc.agclip.model import AGCLIPConfig, AGCLIPHead
from soundloc.sphere import haversine

pytestmark = pytest.mark.usefixtures("one_thread")  # 2 intra-op threads on 2 shared busy cores are much slower


def _synthetic(n=96, d=32, k=4, seed=0):
    """Embeddings whose cluster (k of them) determines the location (k well separated places)."""
    g = torch.Generator().manual_seed(seed)
    cls = torch.arange(n) % k
    centers = torch.randn(k, d, generator=g) * 3
    z = centers[cls] + 0.3 * torch.randn(n, d, generator=g)
    places = np.array([[48.0, 10.0], [40.0, -100.0], [-25.0, 135.0], [0.0, 20.0]])[:k]
    ll = places[cls.numpy()] + np.random.default_rng(seed).uniform(-0.5, 0.5, (n, 2))
    return z, ll, cls


@pytest.mark.parametrize("encoder", ["fourier", "sinr", "geoclip"])
def test_loss_falls_on_a_small_synthetic_set(encoder):
    torch.manual_seed(0)
    z, ll, cls = _synthetic()
    head = AGCLIPHead(AGCLIPConfig(in_dim=z.shape[1], n_species=5, location_encoder=encoder, loc_hidden=64))
    # fake frozen "GeoCLIP" embeddings: a fixed random map of xyz (enough to test the loss plumbing)
    emb = torch.nn.functional.normalize(torch.as_tensor(agclip.model._xyz(torch.as_tensor(ll)).float())
                                        @ torch.randn(3, 512), dim=1) if encoder == "geoclip" else None
    chk = torch.nn.functional.one_hot(cls, 5).float()
    t = head.make_targets(ll, emb, chk)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    first = None
    for step in range(80):
        parts = head.loss_parts(head(z), t)
        first = first if first is not None else {k: float(v.detach()) for k, v in parts.items()}
        opt.zero_grad()
        parts["total"].backward()
        opt.step()
    last = {k: float(v.detach()) for k, v in head.loss_parts(head(z), t).items()}
    assert last["total"] < 0.7 * first["total"]
    assert last["checklist"] < first["checklist"]
    assert math.isfinite(last["contrastive"])


def test_checklist_weight_zero_gives_pure_contrastive_and_bad_targets_are_clear():
    z, ll, cls = _synthetic(n=16)
    head = AGCLIPHead(AGCLIPConfig(in_dim=z.shape[1], n_species=3, checklist_weight=0.0, location_encoder="sinr"))
    t = head.make_targets(ll, None, torch.zeros(16, 3))
    p = head.loss_parts(head(z), t)
    assert "checklist" not in p and torch.equal(p["total"], p["contrastive"])
    # without its loss the checklist decoder is not run: same location output as a head that runs it
    on = AGCLIPHead(dataclasses.replace(head.cfg, checklist_weight=0.01))
    on.load_state_dict(head.state_dict())
    head.eval(), on.eval()
    assert head(z).shape == (16, 512) and on(z).shape == (16, 512 + 3)
    assert torch.equal(head(z), on(z)[:, :512])
    with pytest.raises(ValueError, match="checklist has shape"):
        head.make_targets(ll, None, torch.zeros(16, 4))
    with pytest.raises(ValueError, match="loc_emb"):
        AGCLIPHead(AGCLIPConfig(in_dim=8)).make_targets(ll)
    with pytest.raises(ValueError, match="location_encoder"):
        AGCLIPConfig(location_encoder="satclip")


def test_bce_with_logits_equals_torch_in_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(64, 300, generator=g) * 6, torch.tensor([[-100.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 100.0] * 40 + [0.0] * 20])])
    y = (torch.rand(x.shape, generator=g) < 0.3).float()
    a, b = x.clone().double().requires_grad_(), x.clone().requires_grad_()
    ref = torch.nn.functional.binary_cross_entropy_with_logits(a, y.double())
    ours = agclip.bce_with_logits(b, y)
    (3.0 * ref).backward()
    (3.0 * ours).backward()
    assert float(ours) == pytest.approx(float(ref), rel=1e-6)
    assert torch.allclose(b.grad.double(), a.grad, atol=1e-9)
    with pytest.raises(ValueError, match="logits"):
        agclip.bce_with_logits(b, y[:, :3])


def test_duplicate_locations_count_as_positives():
    """Two rows at the same place: the loss is the same whichever of them the embedding matches."""
    head = AGCLIPHead(AGCLIPConfig(in_dim=4, location_encoder="sinr"))
    ll = np.array([[10.0, 10.0], [10.0, 10.0], [-30.0, 100.0]])
    t = head.make_targets(ll)
    b = head.location_embed(torch.as_tensor(ll).float()).detach()
    out_a = torch.cat([b[[0, 0, 2]], torch.zeros(3, 0)], 1)
    out_b = torch.cat([b[[1, 1, 2]], torch.zeros(3, 0)], 1)
    assert torch.allclose(head.loss(out_a, t), head.loss(out_b, t))


def test_chunked_top1_equals_unchunked_top1():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(300, 64, generator=g)
    gal = torch.nn.functional.normalize(torch.randn(5000, 64, generator=g), dim=1)
    ref_v, ref_i = (torch.nn.functional.normalize(q, dim=1) @ gal.T).topk(5, dim=1)
    v, i = agclip.topk_chunked(q, gal, k=5, q_chunk=37, g_chunk=611)
    assert torch.equal(i[:, 0], ref_i[:, 0])
    assert torch.equal(i, ref_i) and torch.allclose(v, ref_v, atol=1e-6)
    with pytest.raises(ValueError, match="must be"):
        agclip.topk_chunked(q, gal[:, :10])


def test_posterior_sums_to_one_and_argmax_matches_retrieval():
    g = torch.Generator().manual_seed(2)
    q, gal = torch.randn(20, 16, generator=g), torch.nn.functional.normalize(torch.randn(700, 16, generator=g), dim=1)
    lp = agclip.log_posterior(q, gal, scale=14.0, q_chunk=7)
    assert lp.shape == (20, 700)
    assert torch.allclose(lp.exp().sum(1), torch.ones(20), atol=1e-5)
    pts = np.random.default_rng(0).uniform([-80, -180], [80, 180], (700, 2))
    assert (agclip.decode(q, gal, pts, 14.0, "argmax") == lp.argmax(1).numpy()).all()
    m = agclip.decode(q, gal, pts, 14.0, "mass_within", radius_km=2000)
    assert m.shape == (20,) and (m >= 0).all() and (m < 700).all()


def test_mass_within_prefers_a_cluster_over_a_lone_peak():
    """Gallery: a lone point with the single highest probability and a tight cluster with more mass."""
    pts = np.array([[0.0, 0.0], [45.0, 10.0], [45.1, 10.0], [45.0, 10.1], [45.1, 10.1]])
    lp = torch.log(torch.tensor([[0.28, 0.18, 0.18, 0.18, 0.18]]))
    q, gal = torch.zeros(1, 2), torch.nn.functional.normalize(torch.ones(5, 2), dim=1)  # flat audio logits
    assert agclip.decode(q, gal, pts, 0.0, "argmax", prior=lp)[0] == 0
    assert agclip.decode(q, gal, pts, 0.0, "mass_within", radius_km=200, prior=lp)[0] in (1, 2, 3, 4)


def test_calibration_area_and_coverage_by_hand():
    post = torch.tensor([[0.4, 0.3, 0.2, 0.1]], dtype=torch.float64)
    area = np.array([1.0, 2.0, 3.0, 4.0])
    a, cov = agclip.credible_sets(post, area, true_idx=[1], levels=(0.5, 0.9))
    # densities 0.4, 0.15, 0.067, 0.025: 50 % -> cells {0, 1} (0.7), area 3; 90 % -> {0, 1, 2} (0.9), area 6
    np.testing.assert_allclose(a, [[3.0, 6.0]])
    assert cov.tolist() == [[True, True]]
    # ranked by density, not mass: masses 0.1, 0.2, 0.3, 0.4 over areas 1, 1, 6, 10 -> densities .1, .2, .05, .04
    post = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)
    a, cov = agclip.credible_sets(post, np.array([1.0, 1.0, 6.0, 10.0]), true_idx=[0], levels=(0.25, 0.5, 0.9))
    # 25 % -> {1, 0} (0.3), area 2; 50 % -> {1, 0, 2} (0.6), area 8; 90 % -> all, area 18 (by mass: {3}, {3, 2})
    np.testing.assert_allclose(a, [[2.0, 8.0, 18.0]])
    assert cov.tolist() == [[True, True, True]]
    from soundloc.sphere import credible_set

    assert credible_set(np.log([0.1, 0.2, 0.05, 0.04]), np.array([1.0, 1.0, 6.0, 10.0]), 0.5).tolist() == [True, True, True, False]
    with pytest.raises(ValueError, match="do not fit"):
        agclip.credible_sets(post, area[:3], [0])


def test_gallery_posterior_weighs_grid_cells_by_area():
    """gallery_posterior on a lat/lon grid with log_area: masses = density x cell area, as log_posterior gives
    (chapter 10's credible regions); without it every point gets an equal share (sampled galleries)."""
    from soundloc.sphere import cell_areas, uniform_grid

    class FlatHead:  # a learnable-encoder head whose gallery embeddings are all the same: flat audio logits
        loc_enc, temperature = object(), 0.05

        @staticmethod
        def gallery_embeddings(points):
            return torch.ones(len(points), 2)

    pts = uniform_grid(2.0)
    area = cell_areas(pts, 2.0)
    la = np.log(area)
    q = torch.tensor([[1.0, 0.0]])
    mass = agclip.gallery_posterior(FlatHead(), q, pts, log_area=la)[0].double().numpy()
    assert mass == pytest.approx(area / area.sum(), rel=1e-4)  # flat density: mass follows area
    ref = agclip.log_posterior(q, FlatHead.gallery_embeddings(pts), 1 / FlatHead.temperature,
                               log_area=torch.as_tensor(la, dtype=torch.float32)).exp()[0].double().numpy()
    assert mass == pytest.approx(ref, rel=1e-4)
    equal = agclip.gallery_posterior(FlatHead(), q, pts)[0].double().numpy()
    assert equal == pytest.approx(np.full(len(pts), 1 / len(pts)), rel=1e-4)  # sampled gallery: equal shares
    with pytest.raises(ValueError, match="log areas"):
        agclip.gallery_posterior(FlatHead(), q, pts, log_area=la[:-1])


def test_grid_gallery_posterior_is_a_density_over_area():
    """Flat audio logits on a uniform 2 deg grid: masses follow the cells' areas and integrate to 1 over area."""
    from soundloc.sphere import EARTH_RADIUS_KM, cell_areas, uniform_grid

    pts = uniform_grid(2.0)
    la = agclip.gallery_log_area("uniform1", uniform_grid(1.0))
    assert la.exp().double().sum().item() == pytest.approx(4 * math.pi * EARTH_RADIUS_KM ** 2, rel=1e-6)
    assert agclip.gallery_log_area("train", pts) is None  # sampled galleries keep equal weights
    area = cell_areas(pts, 2.0)
    q, gal = torch.zeros(1, 2), torch.nn.functional.normalize(torch.ones(len(pts), 2), dim=1)
    mass = agclip.log_posterior(q, gal, 5.0, log_area=torch.as_tensor(np.log(area), dtype=torch.float32)).exp()[0].double().numpy()
    dens = mass / area
    assert (dens * area).sum() == pytest.approx(1.0, abs=1e-5)
    eq, s80 = np.abs(pts[:, 0] - 1) < 1e-9, np.abs(pts[:, 0] + 79) < 1e-9
    assert dens[eq].mean() == pytest.approx(dens[s80].mean(), rel=1e-4)
    # mass_within: an equatorial disc 1.2x denser than a polar one with 3.9x more points wins only by area
    lp = np.full(len(pts), -50.0)
    lp[haversine(pts[:, 0], pts[:, 1], 75, 10) <= 400] = 0.0
    lp[haversine(pts[:, 0], pts[:, 1], 1, 11) <= 400] = np.log(1.2)
    lp = torch.as_tensor(lp, dtype=torch.float32)[None]
    kw = dict(radius_km=400, prior=lp)
    eqw = agclip.decode(q, gal, pts, 0.0, "mass_within", **kw)[0]
    byarea = agclip.decode(q, gal, pts, 0.0, "mass_within", log_area=torch.as_tensor(np.log(area), dtype=torch.float32), **kw)[0]
    assert haversine(*pts[eqw], 75, 10) <= 400 and haversine(*pts[byarea], 1, 11) <= 400


def test_fusion_weight_zero_equals_agclip_alone():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(10, 50, generator=g).log_softmax(1)
    b = torch.randn(10, 50, generator=g).log_softmax(1)
    assert torch.allclose(agclip.fuse(a, b, 0.0), a)
    f = agclip.fuse(a, b, 1.0)
    assert torch.allclose(f.exp().sum(1), torch.ones(10), atol=1e-5)
    assert torch.allclose(f, (a + b).log_softmax(1))
    q, gal = torch.randn(10, 8, generator=g), torch.nn.functional.normalize(torch.randn(50, 8, generator=g), dim=1)
    pts = np.random.default_rng(1).uniform([-60, -180], [60, 180], (50, 2))
    for dec in agclip.DECODERS:
        assert (agclip.decode(q, gal, pts, 10.0, dec, prior=0.0 * b) == agclip.decode(q, gal, pts, 10.0, dec)).all()


def test_pooling_average_max_kmeans_transformer():
    g = torch.Generator().manual_seed(4)
    feat = torch.nn.functional.normalize(torch.randn(12, 8, generator=g), dim=1)
    offsets = torch.tensor([0, 3, 4, 12])
    avg = agclip.pool_windows(feat, offsets, "average")
    np.testing.assert_allclose(avg[0].numpy(), torch.nn.functional.normalize(feat[:3].mean(0), dim=0).numpy(), atol=1e-6)
    mx = agclip.pool_windows(feat, offsets, "max")
    assert torch.allclose(mx[2], torch.nn.functional.normalize(feat[4:].amax(0), dim=0))
    km = agclip.pool_windows(feat, offsets, "kmeans")
    assert torch.allclose(km[1], feat[3])  # one window: its own cluster
    # 8 windows: 6 near one direction, 2 near another -> the largest cluster's centroid
    base = torch.zeros(8, 8)
    base[:6, 0], base[6:, 1] = 1.0, 1.0
    x = base + 0.01 * torch.randn(8, 8, generator=g)
    c = agclip.pool_windows(x, torch.tensor([0, 8]), "kmeans", k=2)
    assert c[0, 0] > 0.99
    tgt = torch.nn.functional.normalize(torch.randn(3, 8, generator=g), dim=1)
    pooler = agclip.train_pooler(feat, offsets, tgt, epochs=2, batch_size=3, progress=False, max_len=4, layers=1,
                                 heads=2, hidden=16)
    tr = agclip.pool_windows(feat, offsets, "transformer", pooler=pooler)
    assert tr.shape == (3, 8) and torch.allclose(tr.norm(dim=1), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        agclip.pool_windows(feat, offsets, "median")


def test_galleries():
    train = np.array([[48.1, 11.5], [48.1, 11.5], [-33.9, 151.2]])
    assert len(agclip.build_gallery("train", train)) == 2
    assert len(agclip.build_gallery("uniform1")) == 64800
    nb = agclip.build_gallery("train_neighbours", train, h3_res=2)
    assert 0 < len(nb) < 200
    assert np.abs(nb[:, 0] - 48).min() < 1 and np.abs(nb[:, 0] + 34).min() < 1
    with pytest.raises(ValueError, match="training locations"):
        agclip.build_gallery("train")
    with pytest.raises(ValueError, match="unknown gallery"):
        agclip.build_gallery("ocean")
    # the sub-grid galleries are rows of their grid (chapter 03 slices their embeddings instead of embedding again)
    for name, (parent, step) in agclip.SUBGRID_OF.items():
        sub, grid = agclip.build_gallery(name, train), agclip.build_gallery(parent)
        assert np.array_equal(grid[agclip.grid_rows(sub, step)], sub)
    with pytest.raises(ValueError, match="not on the 1 deg"):
        agclip.grid_rows(np.array([[48.1, 11.5]]), 1.0)


def test_checkpoint_round_trip_and_prediction(tmp_path):
    from soundloc.encoders import AudioEncoder, EncoderConfig
    from soundloc.models import GeoModel, load_model, save_model

    torch.manual_seed(0)
    enc = AudioEncoder(EncoderConfig("mobilenet_v3_small", input_size=32, dropout=0.0))
    for name in ("geoclip", "fourier"):
        model = GeoModel(enc, AGCLIPHead(AGCLIPConfig(in_dim=enc.dim, n_species=7, location_encoder=name, adapter=16)))
        path = save_model(model, tmp_path / f"{name}.pt")
        back = load_model(path)
        assert isinstance(back.head, AGCLIPHead) and back.head.cfg == model.head.cfg
        x = torch.rand(2, 3, 32, 32)
        model.eval()
        assert torch.allclose(model(x), back(x))
        pts = np.array([[0.0, 0.0], [50.0, 8.0], [-20.0, 130.0]])
        if name == "geoclip":
            gal = torch.nn.functional.normalize(torch.randn(3, 512), dim=1)
            model.head.set_gallery(pts, gal)
            back.head.set_gallery(pts, gal)
        else:
            model.head.set_gallery(pts)
            back.head.set_gallery(pts)
        assert torch.equal(model.head.predict(model(x)), back.head.predict(back(x)))
    with pytest.raises(RuntimeError, match="no gallery"):
        AGCLIPHead(AGCLIPConfig(in_dim=8)).predict(torch.zeros(1, 512))


def test_trainer_fits_an_agclip_head_on_cached_embeddings(tmp_path):
    """The head plugs into the existing trainer's freeze_encoder fast path (and its checkpoints)."""
    from soundloc.encoders import AudioEncoder, EncoderConfig
    from soundloc.models import GeoModel
    from soundloc.recording_sets import RecordingSet, synthetic_recordings
    from soundloc.train import Trainer, TrainConfig

    d = synthetic_recordings(n=24, frames=300, seed=0)
    enc = AudioEncoder(EncoderConfig("mobilenet_v3_small", input_size=32, dropout=0.0))
    head = AGCLIPHead(AGCLIPConfig(in_dim=enc.dim, n_species=4, location_encoder="sinr", loc_hidden=32))
    ll = np.stack([d["lat"], d["lon"]], 1)
    t = head.make_targets(ll, None, torch.nn.functional.one_hot(torch.as_tensor(d["labels"]), 4))
    head.set_gallery(ll)
    recs = RecordingSet(d["images"], t, ll)
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-2, warmup_epochs=0, optimizer="adamw", freeze_encoder=True,
                      checkpoint_dir=str(tmp_path / "ck"), progress=False, eval_every=3)
    hist = Trainer(GeoModel(enc, head), recs, recs, cfg).fit()
    assert len(hist) == 3 and math.isfinite(hist[-1]["train_loss"]) and "val_median_error" in hist[-1]
    assert (tmp_path / "ck" / "last.pt").is_file()


def test_own_geoclip_encoder_is_bit_identical_to_the_package():
    """soundloc.location_encoders's GeoCLIP encoder (no ``import geoclip``) = geoclip.LocationEncoder, bit for bit."""
    from geoclip import LocationEncoder

    from soundloc.location_encoders import geoclip_weights_path, load_geoclip_encoder

    ref = LocationEncoder(from_pretrained=False)
    ref.load_state_dict(torch.load(geoclip_weights_path(), map_location="cpu", weights_only=True))
    ref.eval()
    ours = load_geoclip_encoder()
    assert sorted(ours.state_dict()) == sorted(ref.state_dict())
    rng = np.random.default_rng(0)
    pts = torch.tensor(np.c_[rng.uniform(-90, 90, 3000), rng.uniform(-180, 180, 3000)], dtype=torch.float32)
    pts[:4] = torch.tensor([[90.0, 180.0], [-90.0, -180.0], [0.0, 0.0], [47.4, 8.5]])
    with torch.inference_mode():
        a, b = ours(pts), ref(pts)
    assert torch.equal(a, b)
    assert a.abs().max() > 0


def test_bf16_geoclip_embeddings_agree_with_float32(tmp_path, monkeypatch):
    """GeoCLIP embeddings in bf16 (Fourier features float32): cosine >= 0.9999 to float32 and the same nearest
    gallery point for 99 % of queries (near-ties otherwise); "auto" follows the hardware; the cache keeps the two precisions apart; bad names are errors."""
    from soundloc.devices import native_bf16
    from soundloc.location_encoders import embed_locations, embedding_precision, gallery_embeddings, load_geoclip_encoder

    enc = load_geoclip_encoder()
    lat, lon = np.meshgrid(np.arange(-89.0, 90.0, 4.0), np.arange(-179.0, 180.0, 4.0), indexing="ij")
    grid = np.c_[lat.ravel(), lon.ravel()]
    grid[:3] = [[90.0, 180.0], [-90.0, -180.0], [0.0, 179.99]]  # poles and the antimeridian
    a = embed_locations(enc, grid, precision="fp32")
    b = embed_locations(enc, grid, precision="bf16")
    assert a.dtype == b.dtype == torch.float32 and not torch.equal(a, b)  # really computed another way
    assert (a * b).sum(1).min() >= 0.9999
    rng = np.random.default_rng(1)
    q = embed_locations(enc, np.c_[rng.uniform(-80, 80, 500), rng.uniform(-180, 180, 500)], precision="fp32")
    s = q @ a.T
    ia, ib = s.argmax(1), (q @ b.T).argmax(1)
    assert (ia == ib).float().mean() >= 0.99  # the rest are near-ties: within 1e-3 of the best similarity
    assert (s.gather(1, ia[:, None]) - s.gather(1, ib[:, None])).max() < 1e-3
    assert embedding_precision("auto") == ("bf16" if native_bf16("cpu") else "fp32")
    with pytest.raises(ValueError, match=r"precision='fp16': expected one of \('auto', 'fp32', 'bf16'\)"):
        embed_locations(enc, grid[:2], precision="fp16")
    monkeypatch.setenv("SOUNDLOC_DATA", str(tmp_path))
    g32 = gallery_embeddings(grid[:50], "t", encoder=enc, precision="fp32")
    g16 = gallery_embeddings(grid[:50], "t", encoder=enc, precision="bf16")
    # bf16 matrix kernels block by batch size, so compare with the same 50 points embedded directly
    assert torch.equal(g32, a[:50]) and torch.equal(g16, embed_locations(enc, grid[:50], precision="bf16"))
    assert not torch.equal(g16, g32)
    names = sorted(p.name for p in (tmp_path / "cache" / "embeddings").iterdir())
    assert len(names) == 2 and names[0].startswith("geoclip-bf16__t-") and names[1].startswith("geoclip__t-")


def test_gallery_embeddings_are_cached_in_parts(tmp_path, monkeypatch):
    """A gallery's embeddings are stored in parts; read back they equal one embed_locations call; a damaged
    part is embedded again, the others are read."""
    from soundloc import location_encoders

    monkeypatch.setenv("SOUNDLOC_DATA", str(tmp_path))
    monkeypatch.setattr(location_encoders, "GALLERY_PART", 16)
    enc = location_encoders.load_geoclip_encoder()
    pts = np.c_[np.linspace(-80, 80, 50), np.linspace(-170, 170, 50)]
    ref = location_encoders.embed_locations(enc, pts, precision="fp32")
    g = location_encoders.gallery_embeddings(pts, "p", encoder=enc, precision="fp32")
    torch.testing.assert_close(g, ref, rtol=0, atol=1e-5)  # other batch sizes: other rounding
    folder = next((tmp_path / "cache" / "embeddings").iterdir())
    parts = sorted(folder.glob("part-*.npy"))
    assert [np.load(p).shape[0] for p in parts] == [16, 16, 16, 2]
    parts[1].write_bytes(b"truncated")
    calls = []
    real = location_encoders.embed_locations
    monkeypatch.setattr(location_encoders, "embed_locations", lambda e, p, **kw: calls.append(len(p)) or real(e, p, **kw))
    torch.testing.assert_close(location_encoders.gallery_embeddings(pts, "p", encoder=enc, precision="fp32"), g, rtol=0, atol=0)
    assert calls == [16]


def test_mask_dropout_is_dropout():
    """MaskDropout: zero with probability p, the rest scaled by 1 / (1 - p), gradients through the same mask;
    identity in eval mode and at p = 0; the SMALL head uses it."""
    from soundloc.agclip.model import MaskDropout

    torch.manual_seed(0)
    d = MaskDropout(0.3).train()
    x = torch.ones(400, 1000, requires_grad=True)
    y = d(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d y / d x = mask / (1 - p)
    assert torch.equal(d.eval()(x), x) and torch.equal(MaskDropout(0.0).train()(x), x)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\), got 1"):
        MaskDropout(1)
    head = AGCLIPHead(AGCLIPConfig(in_dim=8, adapter=4, input_dropout=0.5, n_species=0))
    assert isinstance(head.trunk[0], MaskDropout)
