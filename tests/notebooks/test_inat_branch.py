"""Chapters 01 and 03 on real iNatSounds audio (``DATA="inat"``), and ``datasets.prepare_inat`` behind them.

The fixture is an iNatSounds-layout folder made from the SMALL SimSounds world (SimSounds is written in
the iNatSounds format): its ``<split>.json`` files hold a few recordings from four weeks (few range-map
weeks to compute), without SimSounds' extra keys, with category ids made non-contiguous (3 c + 7), one
test recording naming an audio file that is not there, and the world's audio folders linked in.
"""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nb_chapters import run_chapter

SIZES = {"train": 128, "val": 32, "test": 32}
WEEKS = (8, 20, 32, 44)
SIM_KEYS = ("all_species", "background_species", "snr_db", "background_snr_db", "simulated")


def _cid(c: int) -> int:
    return 3 * c + 7


def _write_split(world: Path, dst: Path, split: str, n: int, missing: int = 0) -> None:
    from soundloc.data.validate import week_of_year48

    d = json.loads((world / f"{split}.json").read_text())
    weeks = week_of_year48(pd.Series([a["date"][:10] for a in d["audio"]])).to_numpy()
    audio = [{k: v for k, v in a.items() if k not in SIM_KEYS} for a, w in zip(d["audio"], weeks) if w in WEEKS][:n]
    keep = {a["id"] for a in audio}
    for a in audio[:missing]:  # named in the json, never downloaded
        a["file_name"] = f"{split}/not-downloaded/{Path(a['file_name']).name}"
    ann = [{**a, "category_id": _cid(a["category_id"])} for a in d["annotations"] if a["audio_id"] in keep]
    out = {"info": {"description": "soundloc test fixture in the iNatSounds layout"}, "audio": audio,
           "annotations": ann, "categories": [{**c, "id": _cid(c["id"])} for c in d["categories"]],
           "licenses": d["licenses"]}
    (dst / f"{split}.json").write_text(json.dumps(out))


@pytest.fixture(scope="module")
def inat_root(tmp_path_factory) -> Path:
    from soundloc.data.sim import SimConfig, build_simsounds

    world = build_simsounds(SimConfig.small(0), progress=False)
    root = tmp_path_factory.mktemp("inatsounds")
    for split, n in SIZES.items():
        _write_split(world, root, split, n, missing=1 if split == "test" else 0)
        os.symlink(world / split, root / split)
    return root


def test_prepare_inat_tables_caches_species(inat_root):
    from soundloc import datasets, report

    d = datasets.prepare_inat(inat_root, progress=False)
    assert d.source == "inatsounds" and not d.simulated and d.sim_cfg is None
    assert set(d.splits) == {"train", "val", "test"}
    assert d.label == report.REAL_LABEL and d.suffix == report.REAL_SUFFIX and "simulated" not in d.label
    assert {s: len(t) for s, t in d.splits.items()} == {"train": 128, "val": 32, "test": 31}
    rep = d.skipped["test"]
    assert rep.total == 32 and rep.skipped == {"missing": 1} and "not-downloaded" in rep.examples["missing"][0]
    assert all(d.skipped[s].n_skipped == 0 for s in ("train", "val"))
    # species: category-id order mapped onto 0..S-1, names kept
    assert list(d.category_ids) == sorted(d.category_ids) and all((c - 7) % 3 == 0 for c in d.category_ids)
    for s, df in d.splits.items():
        idx = d.species_index(s)
        assert idx.min() >= 0 and idx.max() < len(d.species)
        assert (np.asarray(d.category_ids)[idx] == df["category_id"].to_numpy()).all()
        assert (np.asarray(d.species, dtype=object)[idx] == df["species"].to_numpy()).all()
        assert set(d.caches[s].ids()) == set(df["audio_id"]) and d.image(s, df["audio_id"].iloc[0]).shape[0] == 128
        assert (df["week"].isin(WEEKS)).all() and "all_species" not in df
    card = d.card().set_index("split")
    assert card.loc["test", "without image"] == 1 and card.loc["train", "species / recording (mean)"] == 1
    # a rerun reuses every cache; the key names the json contents, so it is the same
    again = datasets.prepare_inat(inat_root, progress=False)
    assert again.key == d.key and all(c.last_computed == [] for c in again.caches.values())
    # SMALL-style cap: a seeded subset, another key
    sub = datasets.prepare_inat(inat_root, progress=False, max_per_split=20)
    assert len(sub.train) == 20 and sub.key != d.key and set(sub.train.audio_id) <= set(d.train.audio_id)


def test_prepare_inat_clear_errors(inat_root, tmp_path):
    from soundloc import datasets
    from soundloc.data import DataError

    no_val = tmp_path / "no_val"
    no_val.mkdir()
    for s in ("train", "test"):
        shutil.copy(inat_root / f"{s}.json", no_val)
    with pytest.raises(DataError, match=r"no_val/val\.json: missing"):
        datasets.prepare_inat(no_val, progress=False)
    shutil.copy(inat_root / "val.json", no_val)  # every json, but none of the audio
    with pytest.raises(DataError, match=r"\.wav: missing, as is every audio file of train\.json"):
        datasets.prepare_inat(no_val, progress=False)
    with pytest.raises(DataError, match=r"nowhere: no such folder.*fetch_group\('inat-audio'\)"):
        datasets.chapter_data("inat", True, inat_root=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="DATA='xcdc'"):
        datasets.chapter_data("xcdc", True)


def _written(out: Path, prefix: str) -> list[Path]:
    return [p for p in out.glob(f"{prefix}_*") if p.suffix in (".csv", ".md", ".html")]


def _no_simulated_label(files: list[Path]) -> None:
    bad = [p.name for p in files if "simulated" in p.read_text().lower()]
    assert not bad, f"tables/maps of real data labelled simulated: {bad}"


@pytest.mark.slow
def test_03_agclip_on_inat(inat_root, tmp_path):
    """Chapter 03 with DATA="inat" (run first: it trains the backbone and the hierarchical heads chapter 01 reuses)."""
    from soundloc.report import PAPER_PREFIX, REAL_SUFFIX

    run_chapter("03_agclip", tmp_path, DATA="inat", INAT_ROOT=str(inat_root))
    files = _written(tmp_path, "03_inat")
    assert not _written(tmp_path, "03_table1") and len(files) > 20
    _no_simulated_label(files)
    t = pd.read_csv(tmp_path / "03_inat_table1.csv").set_index("method")
    assert (t["n"] == 31).all() and "Classification hierarchical 0-1-2" in t.index
    med, reg = t["median_km" + REAL_SUFFIX], t["region_%" + REAL_SUFFIX]
    assert med.between(0, 20040).all() and reg.between(0, 100).all()
    assert t.loc["AG-CLIP (argmax retrieval)", PAPER_PREFIX + "region_%"] == 17.2  # the paper's, in its own column
    assert not [c for c in t.columns if c.endswith(" (simulated)")]
    ck = pd.read_csv(tmp_path / "03_inat_checklist_seeds.csv")
    assert len(ck) == 6 and (ck["n"] == 31).all()
    assert len(pd.read_csv(tmp_path / "03_inat_tableA1.csv")) == 24
    cal = pd.read_csv(tmp_path / "03_inat_calibration.csv")
    assert cal["coverage %"].between(0, 100).all()
    assert len(pd.read_csv(tmp_path / "03_inat_checks.csv")) == 13
    maps = sorted(tmp_path.glob("03_inat_posterior_*.html"))
    assert len(maps) == 3 and "real (iNatSounds)" in maps[0].read_text()
    assert (tmp_path / "03_inat_posterior_maps.png").stat().st_size > 20_000


@pytest.mark.slow
def test_01_baselines_on_inat(inat_root, tmp_path):
    from soundloc.report import REAL_SUFFIX
    from soundloc.table1 import LEARNED, NAIVE

    run_chapter("01_baselines", tmp_path, DATA="inat", INAT_ROOT=str(inat_root))
    files = _written(tmp_path, "01_inat")
    assert not _written(tmp_path, "01_baselines") and not (tmp_path / "01_sim_card.csv").exists()
    _no_simulated_label(files)
    t = pd.read_csv(tmp_path / "01_inat_baselines.csv").set_index("method")
    assert set(LEARNED + [NAIVE]) <= set(t.index) and (t["n"] == 31).all()
    assert t["median_km" + REAL_SUFFIX].between(0, 20040).all() and t["continent_%" + REAL_SUFFIX].between(0, 100).all()
    card = pd.read_csv(tmp_path / "01_inat_card.csv").set_index("split")
    assert list(card["recordings"]) == [128, 32, 31] and card.loc["test", "without image"] == 1
    for name in ("error_cdf", "error_map", "spectrograms"):
        assert (tmp_path / f"01_inat_{name}.png").stat().st_size > 10_000


def test_inat_without_audio_is_a_parameter_error(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match=r"(?s)ParameterError.*nowhere: no such folder"):
        run_chapter("01_baselines", tmp_path, DATA="inat", INAT_ROOT=str(tmp_path / "nowhere"))
