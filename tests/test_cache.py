"""soundloc.io.cached (the one disk-cache helper: lock, atomic write, corrupt file rebuilt with a warning)
and the cache keys pinned to their values before the caches moved onto it (a changed key retrains models)."""
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from soundloc import datasets, ranges, spectrogram as spec, zoo
from soundloc.data import sim as simlib
from soundloc.io import CacheWarning, bytes_digest, cached, digest, npy_loader, npy_save, read_cached
from soundloc.encoders import AudioEncoder, EncoderConfig
from soundloc.heads import SpeciesHead
from soundloc.models import GeoModel
from soundloc.sphere import land_mask_path
from soundloc.recording_sets import RecordingSet
from soundloc.train import TrainConfig


def _build_slowly(path: str, log: str) -> None:
    """One builder process: append a line to ``log`` when it builds, hold the lock a while."""
    def build():
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(0.5)  # long enough for the other process to reach the lock
        return np.arange(5.0)

    v, _ = cached(path, build, npy_loader((5,)), npy_save)
    assert v.tolist() == list(range(5))


def test_concurrent_builders_build_once(tmp_path):
    path, log = tmp_path / "v.npy", tmp_path / "log.txt"
    ctx = mp.get_context("fork")  # the children only need numpy and the helper
    procs = [ctx.Process(target=_build_slowly, args=(str(path), str(log))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert log.read_text() == "built\n" and np.load(path).tolist() == list(range(5))


def test_second_call_loads_without_building(tmp_path):
    path = tmp_path / "v.npy"
    assert cached(path, lambda: np.ones(3), npy_loader((3,)), npy_save)[1] is True
    v, built = cached(path, lambda: pytest.fail("built twice"), npy_loader((3,)), npy_save)
    assert not built and v.tolist() == [1, 1, 1]


@pytest.mark.parametrize("damage", ["truncated", "other shape"])
def test_corrupt_file_is_rebuilt_with_a_warning_naming_it(tmp_path, damage):
    path = tmp_path / "v.npy"
    cached(path, lambda: np.arange(100.0), npy_loader((100,)), npy_save)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-50])
    else:
        npy_save(np.zeros(7), path)
    with pytest.warns(CacheWarning, match=str(path)):
        v, built = cached(path, lambda: np.arange(100.0), npy_loader((100,)), npy_save)
    assert built and v.tolist() == list(range(100)) and np.load(path).tolist() == list(range(100))


def test_corrupt_can_be_passed_through(tmp_path):
    path = tmp_path / "v.npy"
    path.write_bytes(b"not an array")
    with pytest.raises(ValueError):
        cached(path, lambda: np.ones(1), npy_loader((1,)), npy_save, corrupt=())


@pytest.mark.parametrize("writes_itself", [False, True])
def test_failed_build_leaves_no_file(tmp_path, writes_itself):
    path = tmp_path / "v.npy"

    def build(*tmp):
        if tmp:
            tmp[0].write_bytes(b"half")
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError, match="build failed"):
        cached(path, build, np.load, None if writes_itself else npy_save)
    assert not path.exists() and [p.name for p in tmp_path.iterdir()] == ["v.npy.lock"]


def test_a_build_that_writes_the_file_itself(tmp_path):
    v, built = cached(tmp_path / "v.npy", lambda tmp: npy_save(np.full(2, 7.0), tmp), npy_loader((2,)))
    assert built and v.tolist() == [7.0, 7.0]


def test_read_cached_warns_on_a_corrupt_file_and_returns_none(tmp_path):
    path = tmp_path / "v.npy"
    assert read_cached(path, np.load) is None  # missing: silently None
    path.write_bytes(b"junk")
    with pytest.warns(CacheWarning, match=str(path)):
        assert read_cached(path, np.load) is None
    npy_save(np.ones(2), path)
    assert read_cached(path, np.load).tolist() == [1.0, 1.0]


# ---------------------------------------------------------------- keys pinned (values before the refactor)
def test_zoo_key_is_pinned():
    """The zoo key of a fixed tiny model and config: a change would retrain every cached model."""
    torch.manual_seed(0)
    enc = AudioEncoder(EncoderConfig("mobilenet_v3_small", input_size=32, dropout=0.0))
    m = GeoModel(enc, SpeciesHead(enc.dim, 4))
    imgs = [np.full((128, 300), i, np.uint8) for i in range(6)]
    tr, va = RecordingSet(imgs[:4], torch.tensor([0, 1, 2, 3])), RecordingSet(imgs[4:], torch.tensor([0, 1]))
    cfg = TrainConfig(epochs=1, batch_size=8, device="cpu")
    key, fields = zoo.zoo_key("sp", m, cfg, tr, va, "toy")
    assert (fields["train_set"], fields["val_set"]) == ("e01dbf56ac7f", "8917ade54250")
    assert digest(cfg.identity()) == "19faa7bec3e3" and "fused" not in cfg.identity()
    if fields["init"] == "8b817f927bff":  # the initial weights depend on torch's RNG stream, not on our code
        assert key == "3bad4020240e"
        fused = TrainConfig(epochs=1, batch_size=8, device="cpu", fused=True)
        assert zoo.zoo_key("sp", m, fused, tr, va, "toy")[0] == "057bf7ebf252"


def test_data_and_gallery_keys_are_pinned():
    assert datasets.sim_data_key(simlib.SimConfig.small(), spec.SpecConfig(small=True)) == "17dc4f848822"
    assert datasets.sim_data_key(simlib.SimConfig.large(), spec.SpecConfig()) == "509d0723fcdd"
    pts = np.array([[10.0, 20.0], [-33.5, 151.25]])
    assert land_mask_path(pts).name.startswith("land_mask__2-10652877471d3fea__glm")

    class Model:
        name = "birdnet"

    assert ranges.range_cache_path(Model(), pts, 12, "land0.5").name == "birdnet__land0.5-10652877471d__w12.npy"
    assert (ranges.range_cache_path(Model(), pts, None, "x", np.arange(3)).name
            == "birdnet__x-10652877471d__yr__sab2fa50ae23c.npy")
    assert bytes_digest(np.float32([1, 2]), None, n=16, seed=b"abc") == "869bfd93a76b5951"  # the flow cache's key
