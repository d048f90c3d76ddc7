"""Chapter 01 (baselines) in SMALL mode on SimSounds and on an iNatSounds-layout folder (``DATA="inat"``),
and ``datasets.prepare_inat`` behind the latter; the numbers it writes are checked."""
import shutil

import numpy as np
import pandas as pd
import pytest

from inat_fixture import WEEKS, no_simulated_label, written
from nb_chapters import run_chapter


@pytest.mark.slow
def test_01_baselines(tmp_path):
    """Table 1 on SimSounds (SMALL, SEED 0): the issue's Done-when criteria on the written table."""
    from soundloc.report import PAPER_PREFIX, SIM_SUFFIX
    from soundloc.table1 import LEARNED, NAIVE

    run_chapter("01_baselines", tmp_path)
    t = pd.read_csv(tmp_path / "01_baselines.csv").set_index("method")
    med, mean, reg = (t[c + SIM_SUFFIX] for c in ("median_km", "mean_km", "region_%"))
    assert len(LEARNED) == 8 and set(LEARNED) <= set(t.index) and (t["n"] == 500).all()
    assert (med[LEARNED] < med[NAIVE]).all(), med
    assert med["Regression (Haversine)"] < med["Regression (Euclidean/MSE)"], med
    assert mean["Regression (Haversine)"] < mean["Regression (Euclidean/MSE)"], mean
    assert reg["Classification hierarchical 0-1-2"] > reg["Classification res 0"], reg
    # the paper's numbers sit in their own columns, never in a simulated one
    assert t.loc["Regression (Haversine)", PAPER_PREFIX + "median_km"] == 1602
    assert pd.isna(t.loc["Classification res 1", PAPER_PREFIX + "median_km"])
    assert not [c for c in t.columns if c.startswith("paper") and c.endswith(SIM_SUFFIX)]
    assert t["median_km 95% CI" + SIM_SUFFIX].str.startswith("[").all()  # intervals over the test recordings
    assert pd.read_csv(tmp_path / "01_checks.csv")["holds"].head(3).all()  # paired bootstrap verdicts
    for name in ("error_cdf", "error_map", "sim_spectrograms"):
        assert (tmp_path / f"01_{name}.png").stat().st_size > 10_000
    assert "leaflet" in (tmp_path / "01_error_map.html").read_text().lower()


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


@pytest.mark.slow
def test_01_baselines_on_inat(inat_root, tmp_path):
    from soundloc.report import REAL_SUFFIX
    from soundloc.table1 import LEARNED, NAIVE

    run_chapter("01_baselines", tmp_path, DATA="inat", INAT_ROOT=str(inat_root))
    files = written(tmp_path, "01_inat")
    assert not written(tmp_path, "01_baselines") and not (tmp_path / "01_sim_card.csv").exists()
    no_simulated_label(files)
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
