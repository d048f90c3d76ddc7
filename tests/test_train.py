"""The trainer (soundloc.train): losses fall for every head, fast path, resume after SIGKILL, DDP."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from soundloc.sphere import haversine, to_latlon, to_xyz
from soundloc.encoders import AudioEncoder, CheckpointMismatch, EncoderConfig
from soundloc.heads import H3Classes, H3Head, MultiResH3Head, RegressionHead, SpeciesHead
from soundloc.models import GeoModel, load_model, read_checkpoint
from soundloc.recording_sets import RecordingSet, synthetic_recordings
from soundloc.train import Trainer, TrainConfig, lr_factor
from soundloc.train_checkpoints import read_log

from subproc import wait_until

SIZE = 64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    d = synthetic_recordings(n=64, n_classes=4, seed=0, noise=40, band=8)
    d["latlon"] = np.stack([d["lat"], d["lon"]], 1)
    return d


def make_head(kind, d, dim):
    if kind == "species":
        return SpeciesHead(dim, 4)
    if kind == "h3":
        return H3Head(dim, H3Classes.from_training(d["lat"], d["lon"], 1))
    if kind == "h3_multires":
        return MultiResH3Head(dim, [H3Classes.from_training(d["lat"], d["lon"], r) for r in (0, 1, 2)])
    return RegressionHead(dim, kind.split("_")[1])


def sets(d, head, n_train=48):
    t = head.targets(lat=d["lat"], lon=d["lon"], species=d["labels"])
    tr = RecordingSet(d["images"][:n_train], t[:n_train], d["latlon"][:n_train])
    va = RecordingSet(d["images"][n_train:], t[n_train:], d["latlon"][n_train:])
    return tr, va


KINDS = ["regression_mse", "regression_haversine", "h3", "h3_multires", "species"]


@pytest.mark.parametrize("kind", ["species", "regression_mse"])
def test_loss_falls_full_model(data, kind):
    """End-to-end (encoder + head trained), 4 short epochs on the learnable toy data."""
    torch.manual_seed(0)
    enc = AudioEncoder(EncoderConfig("mobilenet_v3_small", SIZE, dropout=0.0))
    model = GeoModel(enc, make_head(kind, data, enc.dim))
    tr, _ = sets(data, model.head, n_train=32)
    hist = Trainer(model, tr, None, TrainConfig(epochs=4, batch_size=8, lr=0.05, warmup_epochs=0,
                                                progress=False)).fit()
    losses = [h["train_loss"] for h in hist]
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("kind", KINDS)
def test_loss_falls_fast_path_and_metrics(data, kind):
    """freeze_encoder=True: embeddings cached once, head trained on them; validation metrics logged."""
    torch.manual_seed(0)
    enc = AudioEncoder(EncoderConfig("mobilenet_v3_small", SIZE))
    model = GeoModel(enc, make_head(kind, data, enc.dim))
    if kind == "species":
        model.head.set_centroids(data["labels"][:48], data["lat"][:48], data["lon"][:48])
    tr, va = sets(data, model.head)
    before = {k: v.clone() for k, v in model.encoder.named_parameters()}
    cfg = TrainConfig(epochs=40, batch_size=8, lr=0.01, optimizer="adamw", warmup_epochs=1, freeze_encoder=True,
                      bn_recalibrate=256, progress=False)
    hist = Trainer(model, tr, va, cfg).fit()
    losses = [h["train_loss"] for h in hist]
    assert np.mean(losses[-3:]) < 0.7 * losses[0], losses
    for k, v in model.encoder.named_parameters():  # the encoder's weights never change
        assert torch.equal(v, before[k]), k
    last = hist[-1]
    assert {"val_loss", "val_median_error", "val_country"} <= set(last)
    mean_pt = to_latlon(to_xyz(data["lat"][:48], data["lon"][:48]).mean(0, keepdims=True))[0]
    mean_err = np.median(haversine(mean_pt[0], mean_pt[1], data["lat"][48:], data["lon"][48:]))
    assert last["val_median_error"] < 0.8 * mean_err, (last["val_median_error"], mean_err)  # beats the mean point


def test_training_windows_deterministic(data):
    recs = RecordingSet(data["images"], np.zeros(64))
    a, b = recs.train_window(3, seed=1, epoch=2), recs.train_window(3, seed=1, epoch=2)
    assert np.array_equal(a, b) and a.shape == (128, 512)
    assert not all(np.array_equal(recs.train_window(i, 1, 2), recs.train_window(i, 1, 3)) for i in range(8))
    with pytest.raises(ValueError, match="recording #0"):
        RecordingSet([np.zeros((64, 600), np.float32)], [0]).image(0)
    with pytest.raises(ValueError, match="2 recordings but 3 targets"):
        RecordingSet(data["images"][:2], [0, 1, 2])
    # a mapping / .get() source is indexed by id
    m = RecordingSet({"a": data["images"][0], "b": data["images"][1]}, [0, 1])
    assert m.ids == ["a", "b"] and np.array_equal(m.image(1), data["images"][1])


def test_lr_schedule_warmup_then_cosine():
    f = [lr_factor(s, 100, 10, 0.1) for s in range(101)]
    assert f[0] == pytest.approx(0.1) and f[10] == pytest.approx(1.0) and f[100] == pytest.approx(0.1)
    assert all(a < b for a, b in zip(f[:10], f[1:11])) and all(a >= b for a, b in zip(f[10:], f[11:]))


def test_resume_refuses_other_config(data, tmp_path):
    enc = AudioEncoder(EncoderConfig("mobilenet_v3_small", SIZE))
    model = GeoModel(enc, SpeciesHead(enc.dim, 4))
    tr, _ = sets(data, model.head, n_train=16)
    cfg = TrainConfig(epochs=1, batch_size=8, freeze_encoder=True, checkpoint_dir=str(tmp_path), progress=False)
    Trainer(model, tr, None, cfg).fit()
    ck = read_checkpoint(tmp_path / "last.pt")  # weights_only=True
    assert ck["train"]["epoch"] == 1 and ck["config"]["head"]["kind"] == "species"
    with pytest.raises(CheckpointMismatch, match=r"last\.pt.*train\.lr: 0\.01 vs 0\.5"):
        Trainer(model, tr, None, TrainConfig(**{**cfg.__dict__, "lr": 0.5})).fit(resume=True)
    other = GeoModel(AudioEncoder(EncoderConfig("mobilenet_v3_small", SIZE)), SpeciesHead(enc.dim, 5))
    with pytest.raises(CheckpointMismatch, match=r"last\.pt.*head\.n_species: 4 vs 5"):
        Trainer(other, tr, None, cfg).fit(resume=True)


RESUME_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, torch
    torch.set_num_threads(1)  # same in both runs (and 5-50x faster than 2 on busy shared cores)
    from soundloc.encoders import AudioEncoder, EncoderConfig
    from soundloc.heads import SpeciesHead
    from soundloc.models import GeoModel
    from soundloc.recording_sets import RecordingSet, synthetic_recordings
    from soundloc.train import Trainer, TrainConfig
    out, resume = sys.argv[1], sys.argv[2] == "1"
    d = synthetic_recordings(n=32, seed=3)
    torch.manual_seed(0)
    enc = AudioEncoder(EncoderConfig("mobilenet_v3_small", 64))
    model = GeoModel(enc, SpeciesHead(enc.dim, 4))
    ll = np.stack([d["lat"], d["lon"]], 1)
    tr = RecordingSet(d["images"][:24], d["labels"][:24], ll[:24])
    va = RecordingSet(d["images"][24:], d["labels"][24:], ll[24:])
    cfg = TrainConfig(epochs=EPOCHS, batch_size=8, lr=0.05, warmup_epochs=1, checkpoint_dir=out, progress=False)
    Trainer(model, tr, va, cfg).fit(resume=resume)
""")
EPOCHS = 5


def _run(out, resume, **kw):
    script = RESUME_SCRIPT.replace("EPOCHS", str(EPOCHS))
    return subprocess.Popen([sys.executable, "-c", script, str(out), "1" if resume else "0"], **kw)


def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    a = _run(full, False)
    b = _run(killed, False)
    wait_until(lambda: (killed / "last.pt").exists(), b, "the first checkpoint")
    b.send_signal(signal.SIGKILL)
    b.wait()
    done = read_checkpoint(killed / "last.pt")["train"]["epoch"]
    assert 1 <= done < EPOCHS, f"the run was killed after epoch {done} of {EPOCHS}"
    # the log is rewritten right after each checkpoint: a kill in between leaves it at most one epoch behind
    logged = len(read_log(killed / "metrics.jsonl")) if (killed / "metrics.jsonl").exists() else 0
    assert done - 1 <= logged <= done
    assert _run(killed, True).wait(timeout=300) == 0
    assert a.wait(timeout=300) == 0
    ha, hb = read_log(full / "metrics.jsonl"), read_log(killed / "metrics.jsonl")
    assert [h["epoch"] for h in hb] == list(range(1, EPOCHS + 1))
    for x, y in zip(ha, hb):
        assert set(x) == set(y) and {"train_loss", "val_loss", "val_acc", "lr"} <= set(x)
        for k in set(x) - {"time_s", "train_windows_per_s"}:
            assert x[k] == pytest.approx(y[k], rel=1e-5, abs=1e-6), (x["epoch"], k)
    ca, cb = read_checkpoint(full / "last.pt"), read_checkpoint(killed / "last.pt")
    for k, v in ca["model"].items():
        torch.testing.assert_close(cb["model"][k], v, rtol=1e-5, atol=1e-6, equal_nan=True, msg=k)
    assert not list(killed.glob(".*.tmp"))  # leftovers of the killed write are cleaned up


def test_ddp_two_cpu_processes_gloo(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node", "2",
           "-m", "soundloc.train", "demo", "--out", str(out), "--epochs", "4", "--recordings", "24",
           "--batch-size", "4", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    ranks = [json.loads((out / f"rank{i}.json").read_text()) for i in (0, 1)]
    assert [x["world"] for x in ranks] == [2, 2]
    assert [x["checkpoints_written"] for x in ranks] == [4, 0]  # only rank 0 writes checkpoints
    assert sorted(p.name for p in (out / "ckpt").iterdir()) == ["best.pt", "last.pt", "metrics.jsonl"]
    h0, h1 = ranks[0]["history"], ranks[1]["history"]
    assert [h["train_loss"] for h in h0] == [h["train_loss"] for h in h1]  # losses all-reduced across ranks
    assert h0[-1]["train_loss"] < 0.8 * h0[0]["train_loss"]
    ck = read_checkpoint(out / "ckpt" / "last.pt")
    assert ck["train"]["config"]["world"] == 2 and ck["train"]["epoch"] == 4


class _Interrupted(Exception):
    pass


def test_frozen_encoder_checkpoints_hold_the_head_and_resume_exactly(data, tmp_path):
    """freeze_encoder: last.pt has no encoder tensors, only its fingerprint; an interrupted run resumed on a
    freshly built model ends where an uninterrupted one does; another encoder is refused."""
    def build(seed=0):
        torch.manual_seed(seed)
        enc = AudioEncoder(EncoderConfig("mobilenet_v3_small", SIZE))
        return GeoModel(enc, SpeciesHead(enc.dim, 4))

    tr, va = sets(data, build().head)
    cfg = dict(epochs=4, batch_size=8, lr=0.05, warmup_epochs=1, freeze_encoder=True, bn_recalibrate=16,
               progress=False)
    full, cut = tmp_path / "full", tmp_path / "cut"
    Trainer(build(), tr, va, TrainConfig(**cfg, checkpoint_dir=str(full))).fit()

    class StopAfterTwo(Trainer):
        def _save_state(self, epoch, *a):
            super()._save_state(epoch, *a)
            if epoch == 2:
                raise _Interrupted

    with pytest.raises(_Interrupted):
        StopAfterTwo(build(), tr, va, TrainConfig(**cfg, checkpoint_dir=str(cut))).fit()
    ck = read_checkpoint(cut / "last.pt")
    assert ck["train"]["epoch"] == 2 and len(ck["train"]["encoder_sha1"]) == 40
    assert ck["model"] and all(k.startswith("head.") for k in ck["model"])
    assert (cut / "last.pt").stat().st_size * 5 < (full / "best.pt").stat().st_size  # best.pt: the whole model
    resumed = build()
    Trainer(resumed, tr, va, TrainConfig(**cfg, checkpoint_dir=str(cut))).fit(resume=True)
    ha, hb = read_log(full / "metrics.jsonl"), read_log(cut / "metrics.jsonl")
    assert [h["epoch"] for h in hb] == [1, 2, 3, 4]
    for x, y in zip(ha, hb):
        for k in set(x) - {"time_s", "train_windows_per_s"}:
            assert x[k] == pytest.approx(y[k], rel=1e-6, abs=1e-7), (x["epoch"], k)
    ca, cb = read_checkpoint(full / "last.pt"), read_checkpoint(cut / "last.pt")
    for k, v in ca["model"].items():
        torch.testing.assert_close(cb["model"][k], v, rtol=0, atol=0, equal_nan=True, msg=k)
    with pytest.raises(CheckpointMismatch, match=r"last\.pt: written for a frozen encoder with other weights"):
        Trainer(build(seed=1), tr, va, TrainConfig(**cfg, checkpoint_dir=str(cut))).fit(resume=True)
    with pytest.raises(CheckpointMismatch, match=r"last\.pt: a head-only training checkpoint"):
        load_model(cut / "last.pt")
    assert isinstance(load_model(cut / "best.pt"), GeoModel)  # the complete model stays loadable


def test_bf16_autocast_reaches_the_fast_path(data, monkeypatch):
    """amp="bf16" on the CPU: the cached-embedding fast path trains the head under bf16 autocast (its loss falls,
    its weights end within 20 % (relative norm) of a float32 run's); two bf16 runs are identical."""
    seen = []
    real = SpeciesHead.forward

    def spy(self, z):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return real(self, z)

    monkeypatch.setattr(SpeciesHead, "forward", spy)

    def run(amp):
        torch.manual_seed(0)
        enc = AudioEncoder(EncoderConfig("mobilenet_v3_small", SIZE))
        model = GeoModel(enc, SpeciesHead(enc.dim, 4))
        tr, va = sets(data, model.head)
        cfg = TrainConfig(epochs=30, batch_size=8, lr=0.01, optimizer="adamw", warmup_epochs=1, freeze_encoder=True,
                          bn_recalibrate=64, amp=amp, progress=False, eval_every=30)
        seen.clear()
        hist = Trainer(model, tr, va, cfg).fit()
        return hist, {k: v.detach().clone() for k, v in model.head.named_parameters()}, list(seen)

    h16, w16, s16 = run("bf16")
    h32, w32, s32 = run("off")
    assert any(s16) and not any(s32)  # training forwards ran under bf16 autocast only when asked
    losses = [h["train_loss"] for h in h16]
    assert np.mean(losses[-3:]) < 0.7 * losses[0], losses
    rel = float(torch.cat([(w16[k] - w32[k]).ravel() for k in w32]).norm() / torch.cat([v.ravel() for v in w32.values()]).norm())
    assert 0 < rel < 0.2, rel  # another rounding, the same training (another seed: 1.4)
    assert abs(h16[-1]["train_loss"] - h32[-1]["train_loss"]) < 0.1 * h32[-1]["train_loss"]
    assert all(torch.equal(a, b) for a, b in zip(w16.values(), run("bf16")[1].values()))


def test_small_agclip_runs_in_bf16_where_the_hardware_has_it(monkeypatch):
    from soundloc import agclip, devices

    for native, amp in ((True, "bf16"), (False, "off")):
        monkeypatch.setattr(devices, "native_bf16", lambda device=None, n=native: n)
        assert agclip.AGCLIPRunConfig.small(0, "cpu").train.amp == amp
    assert agclip.AGCLIPRunConfig.paper(0, "cpu").train.amp == "auto"  # paper recipe: bf16 on CUDA only


def test_soundloc_bf16_0_turns_bf16_off_everywhere(monkeypatch):
    from soundloc import agclip, devices
    from soundloc.location_encoders import embedding_precision

    monkeypatch.setenv("SOUNDLOC_BF16", "0")
    assert devices.native_bf16("cpu") is False and embedding_precision("auto") == "fp32"
    assert agclip.AGCLIPRunConfig.small(0, "cpu").train.amp == "off"
    monkeypatch.setenv("SOUNDLOC_BF16", "maybe")
    with pytest.raises(ValueError, match="SOUNDLOC_BF16='maybe': use 0"):
        devices.native_bf16("cpu")
    monkeypatch.delenv("SOUNDLOC_BF16")
    assert devices.native_bf16("cpu") == any(getattr(torch.cpu, n, lambda: False)()
                                             for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def test_fused_optimizer_is_a_config_field(data):
    torch.manual_seed(0)
    enc = AudioEncoder(EncoderConfig("mobilenet_v3_small", SIZE))
    model = GeoModel(enc, SpeciesHead(enc.dim, 4))
    tr, va = sets(data, model.head)
    for opt in ("adamw", "sgd_nesterov"):
        for fused in (False, True):
            t = Trainer(model, tr, va, TrainConfig(optimizer=opt, fused=fused, progress=False))
            o = t._make_optimizer(model.head.parameters())
            assert bool(o.defaults.get("fused")) == fused
    assert TrainConfig(fused=True).identity()["fused"] is True  # part of what a checkpoint must match
    assert "fused" not in TrainConfig().identity()  # at its default: older checkpoints and zoo keys stay valid
    from soundloc import agclip

    assert agclip.AGCLIPRunConfig.small(0, "cpu").train.fused
