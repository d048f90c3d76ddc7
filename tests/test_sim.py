"""SimSounds: deterministic, resumable simulated world in the iNatSounds format."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from soundloc.data import load_inat
from soundloc.data import sim as S
from soundloc.data import sim_audio as A
from soundloc.data.validate import week_of_year48

TINY = S.SimConfig(name="tiny", seed=3, n_species=40, n_train=30, n_val=10, n_test=10, n_chorus=2,
                   chorus_duration_s=(60.0, 60.0), chorus_species=(10, 12), pool_points=1000)


@pytest.fixture(scope="module")
def model():
    from soundloc.ranges import load_range_model

    return load_range_model("birdnet", "torch")


@pytest.fixture(scope="module")
def world(tmp_path_factory, model):
    root = S.build_simsounds(TINY, tmp_path_factory.mktemp("sim") / "tiny", progress=False, model=model)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_load_inat_reads_every_split(world):
    for split in S.SPLITS:
        p = world / f"{split}.json"
        d = json.loads(p.read_text())
        assert "SimSounds (simulated)" in d["info"]["description"]
        df = load_inat(p, split=split, cache=False)  # unchanged loader
        assert len(df) == TINY.split_size(split) and df.audio_id.is_unique
        assert df.species.notna().all() and (df.supercategory == "Aves").all()
        for a in d["audio"]:
            assert (world / a["file_name"]).is_file()
            parts = Path(a["file_name"]).parts
            assert parts[0] == split and len(parts) == 3 and parts[2].endswith(".wav")
            assert a["background_species"] == a["all_species"][1:]
        cats = {c["id"]: c for c in d["categories"]}
        assert len(cats) == TINY.n_species
        for a, an in zip(d["audio"], d["annotations"]):
            assert a["id"] == an["audio_id"] and Path(a["file_name"]).parts[1] == cats[an["category_id"]]["audio_dir_name"]
            assert a["all_species"][0] == cats[an["category_id"]]["name"]
    ids = [a["id"] for s in S.SPLITS for a in json.loads((world / f"{s}.json").read_text())["audio"]]
    assert len(set(ids)) == len(ids)


def test_load_simsounds_extra_columns(world):
    df = S.load_simsounds(TINY, "train", world, build=False)
    assert df.simulated.all() and len(df) == TINY.n_train
    assert df.background_species.map(len).between(*TINY.background_species).all()
    truth = S.true_species(df)
    assert all(len(t) == 1 + len(b) and s in t for t, b, s in zip(truth, df.background_species, df.species))
    assert all(Path(p).is_file() for p in df.filepath)


def test_locations_disjoint_and_week_date_consistent(world, model):
    plan = S.plan_world(TINY, model)
    seen = set()
    for split in S.SPLITS:
        df = S.load_simsounds(TINY, split, world, build=False)
        week = pd.Series([r["week"] for r in plan["splits"][split]])
        assert (week_of_year48(df.date).to_numpy() == week.to_numpy()).all()
        assert (df.week.to_numpy() == week.to_numpy()).all() and week.between(1, 48).all()
        assert df.date.str.startswith(str(TINY.year)).all()
        pts = set(zip(df.lat.round(6), df.lon.round(6)))
        assert not (pts & seen)
        seen |= pts


def test_focal_species_are_plausible(world, model):
    df = pd.concat([S.load_simsounds(TINY, s, world, build=False) for s in ("train", "val", "test")])
    cats = json.loads((world / "train.json").read_text())["categories"]
    pool = np.array([c["range_model_index"] for c in cats])
    p = model.prob(df.lat.to_numpy(), df.lon.to_numpy(), df.week.to_numpy().astype(int), species_idx=pool)
    p_focal = p[np.arange(len(df)), df.category_id.to_numpy()]
    assert p_focal.mean() > 2.0 * p.mean(), (p_focal.mean(), p.mean())
    assert np.median(p_focal) > 0.1


def test_chorus_long_and_rich(world):
    df = S.load_simsounds(TINY, "chorus", world, build=False)
    assert (df.duration >= 60).all() and (df.all_species.map(len) >= 10).all()
    assert all(len(set(a)) == len(a) for a in df.all_species)
    for fp in df.filepath:
        x, sr = sf.read(fp)
        assert len(x) / sr >= 60
        # calls spread over the whole minute: every 20 s third holds energy above its median level
        thirds = np.array_split(np.abs(x), 3)
        assert all(t.max() > 4 * np.median(t) for t in thirds)


def test_wavs_are_22050_mono_pcm16(world):
    wavs = sorted(world.rglob("*.wav"))
    assert len(wavs) == sum(TINY.split_size(s) for s in S.SPLITS)
    for p in wavs:
        info = sf.info(str(p))
        assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
        assert info.frames / 22050 >= TINY.duration_s[0] - 0.01


def test_deterministic_rebuild_is_byte_identical(world, tmp_path, model):
    other = S.build_simsounds(TINY, tmp_path / "again", progress=False, model=model)
    assert _files(world) == _files(other)


def test_resume_rewrites_only_missing_wav(world, model):
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in world.rglob("*") if p.is_file()}
    victim = sorted(world.rglob("*.wav"))[5]
    victim.unlink()
    (world / "val.json").unlink()  # a half-built world: JSON missing too
    S.build_simsounds(TINY, world, progress=False, model=model)
    for p, (mtime, data) in before.items():
        assert p.read_bytes() == data
        if p not in (victim, world / "val.json"):
            assert p.stat().st_mtime_ns == mtime, p
    # finished world: a rebuild is a no-op that touches nothing (no range model needed)
    S.build_simsounds(TINY, world, progress=False, model="unused")


def test_other_config_in_same_root_is_refused(world):
    with pytest.raises(ValueError, match="another config"):
        S.build_simsounds(dataclasses.replace(TINY, seed=4), world, progress=False)


def test_voices_deterministic_and_distinct():
    a, b = A.species_voice("Turdus merula"), A.species_voice("Parus major")
    assert a != b
    A.species_voice.cache_clear()
    assert A.species_voice("Turdus merula") == a
    assert A.species_voice("Turdus merula", voice_seed=1) != a
    for v in (a, b):
        assert 1000 <= v.f_lo < v.f_hi <= 10000
    n = 3 * 22050
    x1, _ = A.render_calls(a, n, np.random.default_rng(5))
    x2, _ = A.render_calls(a, n, np.random.default_rng(5))
    y, _ = A.render_calls(b, n, np.random.default_rng(5))
    assert np.array_equal(x1, x2) and not np.allclose(x1, y)
    assert np.abs(x1).max() > 0
    # congeners share most of a genus template: closer in pitch on average than unrelated species
    gen = [A.species_voice(f"Turdus sp{i}") for i in range(20)]
    rnd = [A.species_voice(f"Genus{i} sp") for i in range(20)]
    assert np.std([np.log(v.f_lo) for v in gen]) < 0.5 * np.std([np.log(v.f_lo) for v in rnd])


def test_splice_adds_calls_deterministically():
    wave = (0.01 * np.random.default_rng(0).standard_normal(3 * 22050)).astype(np.float32)
    out1 = S.splice(wave, ["Turdus merula", "Parus major"], TINY, rng=7, snr_db=10.0)
    out2 = S.splice(wave, ["Turdus merula", "Parus major"], TINY, rng=7, snr_db=10.0)
    assert out1.shape == wave.shape and out1.dtype == np.float32
    assert np.array_equal(out1, out2) and np.mean(out1.astype(float) ** 2) > 2 * np.mean(wave.astype(float) ** 2)
    assert np.abs(out1).max() <= 1.0


def test_config_validation():
    with pytest.raises(ValueError, match="n_species"):
        S.SimConfig(n_species=5)
    with pytest.raises(ValueError, match="duration_s"):
        S.SimConfig(duration_s=(6.0, 3.0))
    small = S.SimConfig.small()
    assert small.chorus_duration_s[0] >= 60 and small.chorus_species[0] >= 10 and small.sr == 22050
    big = S.SimConfig.large()
    assert big.n_train >= 50000 and big.n_species >= 1000
    assert S.simsounds_root(small).name == "small-seed0"
