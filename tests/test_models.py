"""Encoders, heads, hierarchical H3 decoding, checkpoints and recording-level averaging (soundloc.models)."""
import numpy as np
import pytest
import torch

from soundloc import spectrogram as spec
from soundloc.sphere import h3_cells, haversine, haversine_torch
from soundloc.encoders import AudioEncoder, CheckpointMismatch, EncoderConfig, load_encoder_weights
from soundloc.heads import H3Classes, H3Head, MultiResH3Head, RegressionHead, SpeciesHead, hierarchical_decode
from soundloc.models import (GeoModel, average_by_recording, load_model, load_model_weights, recording_predict,
                             save_model)

SMALL = EncoderConfig("mobilenet_v3_small", input_size=64)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return AudioEncoder(SMALL)


def test_encoder_embedding_shapes(encoder):
    x = torch.randn(3, 3, 64, 64)
    assert encoder.eval()(x).shape == (3, 1024)
    large = AudioEncoder(EncoderConfig("mobilenet_v3_large", input_size=64)).eval()
    assert large(x).shape == (3, 1280) and large.dim == 1280
    with pytest.raises(ValueError, match="arch"):
        EncoderConfig("resnet50")


def test_constructor_does_no_io(tmp_path):
    # a pretrained path that does not exist is only read by load_pretrained / load_encoder_weights
    AudioEncoder(EncoderConfig("mobilenet_v3_small", 64, pretrained_path=str(tmp_path / "missing.pt")))


def test_load_torchvision_style_weights(tmp_path, encoder):
    import torchvision

    tv = torchvision.models.mobilenet_v3_small(weights=None, num_classes=7)
    sd = {f"module.{k}": v for k, v in tv.state_dict().items()}  # as saved from a DDP-wrapped model
    torch.save({"state_dict": sd}, tmp_path / "tv.pth")
    enc = AudioEncoder(SMALL)
    rep = load_encoder_weights(enc, tmp_path / "tv.pth")
    assert set(rep.unexpected) == {"classifier.3.weight", "classifier.3.bias"}  # final classifier ignored
    assert rep.missing == [] and rep.skipped_shape == []
    assert torch.equal(enc.features[0][0].weight, tv.features[0][0].weight)
    assert torch.equal(enc.classifier[0].weight, tv.classifier[0].weight)
    # our own GeoModel checkpoint also loads into a bare encoder ("encoder." prefix)
    model = GeoModel(encoder, SpeciesHead(encoder.dim, 3))
    save_model(model, tmp_path / "geo.pt")
    enc2 = AudioEncoder(SMALL)
    assert load_encoder_weights(enc2, tmp_path / "geo.pt").missing == []
    assert torch.equal(enc2.classifier[0].weight, encoder.classifier[0].weight)
    # a checkpoint of another architecture: nothing fits -> clear error naming the file
    big = torchvision.models.mobilenet_v3_large(weights=None)
    torch.save(big.state_dict(), tmp_path / "large.pth")
    with pytest.raises(CheckpointMismatch, match="large.pth"):
        load_encoder_weights(AudioEncoder(SMALL), tmp_path / "large.pth", strict=True)


def test_haversine_loss_gradient_finite():
    a = torch.tensor([[10.0, 20.0], [-33.0, 151.0], [45.0, 0.0], [90.0, 0.0], [0.0, 179.9]], requires_grad=True)
    b = torch.tensor([[10.0, 20.0], [33.0, -29.0], [-45.0, 180.0], [-90.0, 0.0], [0.0, -179.9]])
    d = haversine_torch(a, b)  # identical, antipodes (x3), across the dateline
    d.sum().backward()
    assert torch.isfinite(a.grad).all()
    d = d.detach()
    assert d[0] < 0.05 and abs(float(d[1]) - np.pi * 6371) < 5
    head = RegressionHead(8, "haversine")
    out = torch.zeros(2, 2, requires_grad=True)
    head.loss(out, torch.tensor([[0.0, 0.0], [0.0, 180.0]])).backward()
    assert torch.isfinite(out.grad).all()


def test_regression_head_scaling_and_averaging():
    head = RegressionHead(4, "mse")
    out = torch.tensor([[0.5, -0.5], [1.0, 1.0]])
    np.testing.assert_allclose(head.to_degrees(out).numpy(), [[45, -90], [90, 180]])
    assert head.loss(out, torch.tensor([[45.0, -90.0], [90.0, 180.0]])) < 1e-12
    # unit-vector average across the dateline stays near 180, not 0
    s = head.scores(torch.tensor([[0.0, 179.0 / 180], [0.0, -179.0 / 180]]))
    avg = head.predict_from_scores(s.mean(0, keepdim=True))
    assert abs(abs(float(avg[0, 1])) - 180) < 1e-3 and abs(float(avg[0, 0])) < 1e-3


def test_h3_round_trip_and_unknown_cells():
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(-60, 70, 200), rng.uniform(-180, 180, 200)
    for res in (0, 1, 2):
        cls = H3Classes.from_training(lat, lon, res)
        idx = cls.encode(lat, lon)
        assert (idx >= 0).all() and len(cls) == len(set(h3_cells(lat, lon, res)))
        head = H3Head(16, cls)
        logits = torch.nn.functional.one_hot(torch.as_tensor(idx), len(cls)).float() * 10
        pred = head.predict(logits).numpy()
        # the predicted centre lies in the point's cell
        assert (h3_cells(pred[:, 0], pred[:, 1], res) == h3_cells(lat, lon, res)).all()
        assert H3Classes.from_dict(cls.to_dict()) == cls
    cls = H3Classes.from_training([48.0], [2.0], 2)
    t = cls.encode([48.0, -33.9], [2.0, 18.4])  # Paris known, Cape Town not
    assert t.tolist() == [0, -1]
    head = H3Head(4, cls)
    out = torch.randn(2, 1, requires_grad=True)
    loss = head.loss(out, torch.as_tensor(t))  # unknown target ignored, not an index error
    assert torch.isfinite(loss)
    assert head.predict(out).shape == (2, 2)


def _case():
    """Res-2 alone prefers a cell in the wrong region; res 0/1 point to the right one."""
    pts = np.array([[48.85, 2.35], [40.7, -74.0]])  # Paris (true), New York
    c0, c1, c2 = (H3Classes.from_training(pts[:, 0], pts[:, 1], r) for r in (0, 1, 2))
    paris = [c.encode([48.85], [2.35])[0] for c in (c0, c1, c2)]
    ny = [c.encode([40.7], [-74.0])[0] for c in (c0, c1, c2)]
    p0, p1, p2 = torch.zeros(1, len(c0)), torch.zeros(1, len(c1)), torch.zeros(1, len(c2))
    p0[0, paris[0]], p0[0, ny[0]] = 0.9, 0.1
    p1[0, paris[1]], p1[0, ny[1]] = 0.8, 0.2
    p2[0, paris[2]], p2[0, ny[2]] = 0.45, 0.55
    return (c0, c1, c2), (p0, p1, p2), paris, ny


@pytest.mark.parametrize("mode", ["sum", "greedy"])
def test_hierarchical_decoding_fixes_res2_mistake(mode):
    (c0, c1, c2), (p0, p1, p2), paris, ny = _case()
    assert int(p2.argmax()) == ny[2]  # res 2 alone is wrong
    assert int(hierarchical_decode([p0, p1, p2], [c0, c1, c2], mode)[0]) == paris[2]
    # H3 is not nested: Paris's res-2 cell's h3.cell_to_parent at res 0 is not the res-0 cell
    # holding Paris, so strict h3 parents lose the res-0 evidence; centre containment keeps it
    assert c2.parent_index(c0, "h3")[paris[2]] == -1 and c2.parent_index(c0)[paris[2]] == paris[0]
    # and with one cell per level, res 2 alone would still be wrong at every single level below 0
    p0u = torch.full_like(p0, 0.5)
    assert int(hierarchical_decode([p0u, p1, p2], [c0, c1, c2], mode)[0]) == paris[2]
    head = MultiResH3Head(8, [c0, c1, c2], mode=mode)
    pred = head.predict_from_scores(torch.cat([p0, p1, p2], -1)).numpy()
    assert haversine(pred[0, 0], pred[0, 1], 48.85, 2.35) < 300
    assert haversine(*head.predict_level(torch.cat([p0, p1, p2], -1), 2)[0].tolist(), 40.7, -74.0) < 300


def test_species_head_probabilities_and_centroids():
    head = SpeciesHead(8, 3, ["a", "b", "c"])
    out = torch.randn(5, 3)
    p = head.predict_species(out)
    assert p.shape == (5, 3) and torch.allclose(p.sum(-1), torch.ones(5))
    assert not head.can_locate()
    with pytest.raises(RuntimeError, match="centroids"):
        head.predict(out)
    head.set_centroids([0, 0, 1], [10.0, 12.0, -30.0], [170.0, -170.0, 20.0])
    pred = head.predict(torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 1.0, 5.0]]))
    assert abs(float(pred[0, 0]) - 11) < 0.5 and abs(abs(float(pred[0, 1])) - 180) < 0.5  # dateline mean
    np.testing.assert_allclose(pred[1].numpy(), [-30, 20], atol=1e-4)
    np.testing.assert_allclose(pred[2].numpy(), pred[1].numpy())  # species without data never predicted


def test_checkpoint_round_trip_and_mismatch(tmp_path, encoder):
    cls = H3Classes.from_training([48.0, 40.0, -33.0], [2.0, -74.0, 151.0], 1)
    model = GeoModel(encoder, H3Head(encoder.dim, cls))
    save_model(model, tmp_path / "m.pt", {"note": "x"})
    ck = torch.load(tmp_path / "m.pt", map_location="cpu", weights_only=True)
    assert ck["config"]["head"]["classes"]["cells"] == list(cls.cells) and ck["note"] == "x"
    fresh = GeoModel(AudioEncoder(SMALL), H3Head(encoder.dim, cls))
    load_model_weights(fresh, tmp_path / "m.pt")
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
    rebuilt = load_model(tmp_path / "m.pt")
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(rebuilt(x), model.eval()(x))
    # another config: other H3 resolution / another head / another input size -> clear error
    other = GeoModel(AudioEncoder(SMALL), H3Head(encoder.dim, H3Classes.from_training([48.0], [2.0], 2)))
    with pytest.raises(CheckpointMismatch, match=r"m\.pt.*head\.classes"):
        load_model_weights(other, tmp_path / "m.pt")
    with pytest.raises(CheckpointMismatch, match=r"head\.kind: 'h3' vs 'regression'"):
        load_model_weights(GeoModel(AudioEncoder(SMALL), RegressionHead(1024)), tmp_path / "m.pt")
    enc96 = AudioEncoder(EncoderConfig("mobilenet_v3_small", input_size=96))
    with pytest.raises(CheckpointMismatch, match="encoder.input_size: 64 vs 96"):
        load_model_weights(GeoModel(enc96, H3Head(1024, cls)), tmp_path / "m.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatch, match="junk.pt"):
        load_model_weights(model, tmp_path / "junk.pt")


@pytest.mark.parametrize("kind", ["regression", "h3"])
def test_recording_predict_equals_manual_average(encoder, kind):
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 255, (128, t), dtype=np.uint8) for t in (300, 900, 1500)]
    wins = [spec.eval_windows(im) for im in imgs]
    if kind == "regression":
        head = RegressionHead(encoder.dim, "haversine")
    else:
        head = H3Head(encoder.dim, H3Classes.from_training([48.0, 40.0, -33.0], [2.0, -74.0, 151.0], 0))
    model = GeoModel(encoder, head).eval()
    res = recording_predict(model, wins, batch_size=3)  # batches straddle recordings
    assert res.n_windows.tolist() == [len(w) for w in wins] == [1, 3, 5]
    with torch.no_grad():
        for i, w in enumerate(wins):
            s = head.scores(model(spec.to_model_input(w, size=64))).mean(0, keepdim=True)
            assert torch.allclose(res.scores[i], s[0], atol=1e-5)
            np.testing.assert_allclose(res.latlon[i], head.predict_from_scores(s)[0].numpy(), atol=1e-4)
    avg = average_by_recording(torch.arange(6.0)[:, None], torch.tensor([0, 0, 1, 2, 2, 2]), 3)
    assert avg[:, 0].tolist() == [0.5, 2.0, 4.0]


def test_hierarchical_log_posterior_is_normalised_and_agrees_with_the_decoder():
    from soundloc.heads import hierarchical_log_posterior
    (c0, c1, c2), (p0, p1, p2), paris, _ = _case()
    lp = hierarchical_log_posterior([p0, p1, p2], [c0, c1, c2])
    assert lp.shape == p2.shape and torch.allclose(lp.exp().sum(-1), torch.ones(len(lp)))
    assert int(lp.argmax(-1)[0]) == int(hierarchical_decode([p0, p1, p2], [c0, c1, c2], "sum")[0]) == paris[2]


def test_decode_log_posterior_uses_the_shared_decoder():
    from soundloc.agclip.retrieval import decode_log_posterior
    # three points: a lone peak far away, and two neighbours 100 km apart whose mass together is larger
    pts = np.array([[0.0, 0.0], [40.0, 10.0], [40.9, 10.0]])
    lp = torch.log(torch.tensor([[0.4, 0.3, 0.3]]))
    assert decode_log_posterior(lp, pts, "argmax")[0] == 0
    assert decode_log_posterior(lp, pts, "mass_within", radius_km=200)[0] in (1, 2)


def test_build_head_imports_the_module_of_a_head_defined_above_models():
    """A checkpoint's "agclip" head is rebuilt by heads.build_head in a process that never imported soundloc.agclip
    (heads does not import it: the head registers itself, HEAD_MODULES names its module)."""
    import subprocess
    import sys

    code = ("import sys; from soundloc.heads import build_head; assert 'soundloc.agclip' not in sys.modules; "
            "h = build_head({'kind': 'agclip', 'in_dim': 8, 'embed_dim': 512, 'n_species': 3}); "
            "print(type(h).__module__, h.in_dim, h.S)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["soundloc.agclip.model", "8", "3"]
    with pytest.raises(ValueError, match="unknown head kind 'nope'"):
        from soundloc.heads import build_head

        build_head({"kind": "nope"})
