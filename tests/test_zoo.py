"""soundloc.zoo (the trained-model zoo, shared window embeddings), report.simulated_beside_paper (table labelling),
devices.torch_threads (fast, synthetic data)."""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from soundloc import zoo
from soundloc.devices import cpu_threads, torch_threads, usable_cores
from soundloc.report import simulated_beside_paper
from soundloc.encoders import AudioEncoder, EncoderConfig
from soundloc.heads import RegressionHead, SpeciesHead
from soundloc.models import GeoModel
from soundloc.recording_sets import RecordingSet, synthetic_recordings
from soundloc.train import TrainConfig, Trainer

SIZE = 32


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    d = synthetic_recordings(n=24, n_classes=4, frames=300, seed=1, noise=40, band=8)
    d["latlon"] = np.stack([d["lat"], d["lon"]], 1)
    return d


def build_species():
    enc = AudioEncoder(EncoderConfig("mobilenet_v3_small", input_size=SIZE, dropout=0.0))
    return GeoModel(enc, SpeciesHead(enc.dim, 4))


def sets(d, head):
    t = head.targets(lat=d["lat"], lon=d["lon"], species=d["labels"])
    return (RecordingSet(d["images"][:16], t[:16], d["latlon"][:16]),
            RecordingSet(d["images"][16:], t[16:], d["latlon"][16:]))


CFG = TrainConfig(epochs=1, batch_size=8, lr=0.01, warmup_epochs=0, device="cpu", progress=False)


def test_second_call_loads_and_a_changed_config_retrains(data, tmp_path):
    tr, va = sets(data, build_species().head)
    a = zoo.train_or_load("sp", build_species, tr, va, CFG, data_key="toy", root=tmp_path, progress=False)
    assert a.trained and a.path.is_file() and a.path.parent.name == f"sp-{a.key}"
    assert not (a.path.parent / "train").exists()  # resume state removed once model.pt exists
    b = zoo.train_or_load("sp", build_species, tr, va, CFG, data_key="toy", root=tmp_path, progress=False)
    assert not b.trained and b.key == a.key and b.history == a.history
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(v, w) or torch.allclose(v, w, rtol=0, atol=0, equal_nan=True), k
    x = torch.randn(3, 3, SIZE, SIZE)
    assert torch.allclose(a.model.eval()(x), b.model(x))
    for cfg, key in ((replace(CFG, lr=0.02), "toy"), (replace(CFG, seed=1), "toy"), (CFG, "other")):
        c = zoo.train_or_load("sp", build_species, tr, va, cfg, data_key=key, root=tmp_path, progress=False)
        assert c.trained and c.key != a.key
    # other targets (same images) are other training data
    tr2 = RecordingSet(tr.images, (tr.targets + 1) % 4, tr.latlon)
    assert zoo.train_or_load("sp", build_species, tr2, va, CFG, data_key="toy", root=tmp_path, progress=False).trained


def test_runtime_fields_do_not_change_the_key(data, tmp_path):
    tr, va = sets(data, build_species().head)
    a = zoo.train_or_load("sp", build_species, tr, va, CFG, root=tmp_path, progress=False)
    cfg = replace(CFG, eval_batch_size=7, progress=True, checkpoint_dir=str(tmp_path / "elsewhere"))
    b = zoo.train_or_load("sp", build_species, tr, va, cfg, root=tmp_path, progress=False)
    assert not b.trained and b.key == a.key


def test_corrupt_or_foreign_checkpoint_is_rejected_clearly(data, tmp_path):
    tr, va = sets(data, build_species().head)
    a = zoo.train_or_load("sp", build_species, tr, va, CFG, root=tmp_path, progress=False)
    good = a.path.read_bytes()
    a.path.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(zoo.ZooError, match=r"(?s)model\.pt.*corrupt.*retrain=True"):
        zoo.train_or_load("sp", build_species, tr, va, CFG, root=tmp_path, progress=False)
    a.path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(zoo.ZooError, match=a.path.parent.name):
        zoo.train_or_load("sp", build_species, tr, va, CFG, root=tmp_path, progress=False)
    c = zoo.train_or_load("sp", build_species, tr, va, CFG, root=tmp_path, progress=False, retrain=True)
    assert c.trained and zoo.train_or_load("sp", build_species, tr, va, CFG, root=tmp_path, progress=False).trained is False
    # a checkpoint of another model moved into this key's folder
    other = zoo.train_or_load("sp2", build_species, tr, va, CFG, root=tmp_path, progress=False)
    c.path.write_bytes(other.path.read_bytes())
    with pytest.raises(zoo.ZooError, match="expected 'sp'"):
        zoo.train_or_load("sp", build_species, tr, va, CFG, root=tmp_path, progress=False)


def test_build_fn_must_return_a_geomodel(data, tmp_path):
    tr, va = sets(data, build_species().head)
    with pytest.raises(TypeError, match="GeoModel"):
        zoo.train_or_load("x", lambda: torch.nn.Linear(2, 2), tr, va, CFG, root=tmp_path)


def test_precomputed_embeddings_match_the_trainers_fast_path(data, tmp_path):
    """Heads trained on shared embeddings == the trainer's own freeze_encoder path; the backbone is in the key."""
    base = build_species().eval()

    def build():
        enc = AudioEncoder(EncoderConfig("mobilenet_v3_small", input_size=SIZE, dropout=0.0))
        enc.load_state_dict(base.encoder.state_dict())
        return GeoModel(enc, RegressionHead(enc.dim, "haversine"))

    tr, va = sets(data, build().head)
    emb = {k: zoo.window_embeddings(base.encoder, s, progress=False) for k, s in (("train", tr), ("val", va))}
    assert emb["train"][0].shape == (int(emb["train"][1][-1]), base.encoder.dim) and len(emb["train"][1]) == 17
    cfg = replace(CFG, epochs=2, freeze_encoder=True, lr=0.05)
    z = zoo.train_or_load("reg", build, tr, va, cfg, root=tmp_path, embeddings=emb, progress=False)
    torch.manual_seed(cfg.seed)
    ref = build()
    hist = Trainer(ref, tr, va, cfg).fit()
    assert z.history[-1]["val_median_error"] == pytest.approx(hist[-1]["val_median_error"], rel=1e-3)
    s = zoo.head_scores(z.model.head, *zoo.window_embeddings(z.model.encoder, va, progress=False))
    assert s.shape == (len(va), 3)
    with torch.no_grad():  # another backbone -> other initial weights -> another key
        for p in base.encoder.parameters():
            p.add_(0.01)
    assert zoo.train_or_load("reg", build, tr, va, cfg, root=tmp_path, embeddings=emb, progress=False).key != z.key
    with pytest.raises(ValueError, match="freeze_encoder"):
        zoo.train_or_load("reg", build, tr, va, CFG, root=tmp_path / "b", embeddings=emb, progress=False)


def test_simulated_and_paper_columns_never_mix():
    ours = pd.DataFrame({"method": ["Regression (Haversine)", "Classification res 1"], "n": [10, 10],
                         "median_km": [900.0, 800.0], "region_%": [5.0, 6.0]})
    t = simulated_beside_paper(ours)
    assert {"median_km (simulated)", "region_% (simulated)", "paper (iNatSounds) median_km"} <= set(t.columns)
    assert "median_km" not in t.columns and t.n.tolist() == [10, 10]
    assert t.loc[0, "paper (iNatSounds) median_km"] == 1602 and pd.isna(t.loc[1, "paper (iNatSounds) median_km"])


def test_torch_threads_policy(monkeypatch):
    n = torch.get_num_threads()
    with torch_threads("cpu"):
        assert torch.get_num_threads() == 1
    monkeypatch.setenv("SOUNDLOC_TORCH_THREADS", "2")
    with torch_threads("cpu"):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == n


def test_cpu_threads_follows_the_per_process_share(monkeypatch):
    monkeypatch.delenv("SOUNDLOC_TORCH_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_threads() == usable_cores() >= 1  # a curator's own run: every core
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a book chapter, a notebook test, a batch worker's share
    assert cpu_threads() == 1
    monkeypatch.setenv("SOUNDLOC_TORCH_THREADS", "3")  # soundloc's own setting wins
    assert cpu_threads() == 3
    for bad in ("two", "0"):
        monkeypatch.setenv("SOUNDLOC_TORCH_THREADS", bad)
        with pytest.raises(ValueError, match="SOUNDLOC_TORCH_THREADS"):
            cpu_threads()


def test_batchnorm_momentum_is_part_of_the_key(data):
    tr, va = sets(data, build_species().head)
    torch.manual_seed(0)
    a = build_species()
    torch.manual_seed(0)
    b = build_species()
    for m in b.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1
    assert zoo.zoo_key("sp", a, CFG, tr, va)[0] != zoo.zoo_key("sp", b, CFG, tr, va)[0]
    torch.manual_seed(0)
    assert zoo.zoo_key("sp", a, CFG, tr, va)[0] == zoo.zoo_key("sp", build_species(), CFG, tr, va)[0]
