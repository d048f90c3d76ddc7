"""Every chapter runs headlessly in SMALL mode and writes tables whose numbers we check."""
import pandas as pd
import pytest

from soundloc.book import ParameterError

from nb_chapters import CHAPTERS, audio_players, run_chapter as _run


@pytest.mark.slow
def test_00_data(tmp_path):
    nb = _run("00_data", tmp_path)
    assert audio_players(nb) == 2 and (tmp_path / "00_spectrograms.png").stat().st_size > 10_000  # listen to both clips
    card = pd.read_csv(tmp_path / "00_inat_card.csv").set_index("supercategory")
    assert card.loc["all", "recordings"] == 49527 and card.loc["Aves", "recordings"] == 41036
    naive = pd.read_csv(tmp_path / "00_naive.csv").set_index("method")
    r = naive.loc["Naive: test set, query left out"]
    assert r["n"] == 49527 and 6500 < r["median_km"] < 9500 and r["region_%"] < 3 and 15 < r["continent_%"] < 30
    assert naive.loc["Naive: iNatSounds test locations", "n"] == 576
    x = naive.loc["Naive: iNatSounds test locations"]  # the same row as chapter 05's (test_05_xcdc)
    assert x["median_km"] == pytest.approx(7646.73, abs=0.01) and x["continent_%"] == pytest.approx(22.92, abs=0.01)
    assert (tmp_path / "00_inat_hexbin.png").stat().st_size > 10_000
    assert "leaflet" in (tmp_path / "00_inat_hexbin.html").read_text().lower()


@pytest.mark.slow
def test_02_species_oracles(tmp_path):
    _run("02_species_oracles", tmp_path, N_EVAL=600, N_REF=3000, N_SIM=300)
    o = pd.read_csv(tmp_path / "02_oracles.csv")
    o = o[o.threshold == 0.1].set_index("method")
    full, c50, k10 = (o.loc[m] for m in ("Oracle: full checklist", "Oracle: 50% corrupted", "Oracle: keep random 10"))
    assert full["n"] == 600 and full["median_km"] < c50["median_km"] < k10["median_km"] < 2000  # less info, worse
    assert full["region_%"] > 50 and full["paper median_km"] == 15
    a = pd.read_csv(tmp_path / "02_annotated.csv")
    a = a[a.subset == "all"].set_index("method")
    assert a.loc["cross-fitted choice", "median_km"] < a.loc["paper-style: year-round ranges, flat prior, argmax", "median_km"]
    assert a.loc["cross-fitted choice", "median_km"] < 2000 and (a["n"] == 600).all()
    cov = pd.read_csv(tmp_path / "02_coverage.csv").set_index("supercategory")
    assert cov.loc["Aves", "covered_%"] > 99 and cov.recordings.sum() == 49527
    assert len(pd.read_csv(tmp_path / "02_crossfit_choice.csv")) == 2
    # the paper's numbers sit only on the comparable row; every row carries its interval
    paper_style = "paper-style: year-round ranges, flat prior, argmax"
    assert a.loc[paper_style, "paper median_km"] == 1263 and a.drop(index=paper_style)["paper median_km"].isna().all()
    assert (a["like for like with the paper"] == "yes").sum() == 1
    lo, hi = (float(x.replace(",", "")) for x in a.loc["cross-fitted choice", "median_km 95% CI"].strip("[]").split(", "))
    assert lo <= a.loc["cross-fitted choice", "median_km"] <= hi
    assert "parameters chosen on SimSounds (outside the test set)" in a.index
    assert len(pd.read_csv(tmp_path / "02_sim_choice_sweep.csv")) == 28
    cmp = pd.read_csv(tmp_path / "02_compare.csv")
    assert set(cmp.verdict) <= {"better", "worse", "tie"}
    # the reading quotes this run's table, not typed-in numbers
    reading = (tmp_path / "02_reading.md").read_text()
    assert f"{a.loc[paper_style, 'median_km']:,.0f} km" in reading and f"{full['region_%']:.1f} %" in reading


@pytest.mark.slow
def test_05_xcdc(tmp_path, xcdc_release_tar):
    from xcdc_fixture import check_audio_branch

    # one run covers the real part, the models part and the XCDC-audio branch (on a fixture in the release's format)
    nb = _run("05_xcdc", tmp_path, N_VAL=120, DRAWS=3, XCDC_AUDIO=str(xcdc_release_tar))
    check_audio_branch(tmp_path, nb)
    t = pd.read_csv(tmp_path / "05_true_species.csv").set_index("method")
    withdate, naive = t.loc["Ranges: true species, with date"], t.loc["Naive: random iNatSounds test location"]
    assert withdate["n"] == 576 and withdate["median_km"] < 700 and withdate["continent_%"] > 85
    assert naive["median_km"] > 5000 and withdate["paper median_km"] == 449
    # chapter 00's XCDC naive row (same seeds, each draw scored, scores averaged): the chapters agree
    assert naive["median_km"] == pytest.approx(7646.73, abs=0.01) and naive["continent_%"] == pytest.approx(22.92, abs=0.01)
    k = pd.read_csv(tmp_path / "05_random_k.csv")
    med = k[k.metric == "median_km"].set_index("k")["mean"]
    assert med["1"] > med["5"] > med["all"]  # more species, smaller error
    assert len(pd.read_csv(tmp_path / "05_choice_sweep.csv")) == 4
    # the CLI + benchmark scorer path reproduces the table's first row
    from soundloc.data.gold import load_gold, read_locations
    from soundloc.metrics import evaluate
    m = evaluate(read_locations(tmp_path / "05_xcdc_pred.csv"), load_gold("xcdc"))
    assert m["median_error"] == pytest.approx(withdate["median_km"], abs=0.01)
    # models part (simulated chorus split): every row is labelled simulated, the paper's XCDC rows sit apart
    c = pd.read_csv(tmp_path / "05_models_chorus.csv").set_index("method")
    med = c["median_km (simulated)"]
    assert (c["n"] == 20).all() and c.loc["Classification hierarchical 0-1-2", "paper (XCDC) median_km"] == 1116
    assert med["Ranges: annotated species"] < med["Naive (random train location)"]
    assert med["Ranges: annotated species"] < med["Ranges: predicted species all"]  # the detector's gap
    assert c.loc["AG-CLIP (chorus-locations gallery)", "paper (XCDC) median_km"] == 912
    assert med["AG-CLIP (chorus-locations gallery)"] < med["Naive (random train location)"]
    # intervals on n = 20 and the real-data reading, generated from this run's tables
    ci = pd.read_csv(tmp_path / "05_models_chorus_ci.csv")
    assert (ci["n"] == 20).all() and ci["median_km 95% CI"].str.startswith("[").all()
    iran = pd.read_csv(tmp_path / "05_iran.csv").set_index("recordings")
    assert iran.n.sum() == 576
    reading = (tmp_path / "05_reading.md").read_text()
    assert f"{int(iran.loc['northern Iran', 'n'])} recordings come from northern Iran" in reading
    assert f"{withdate['median_km']:,.0f} km" in reading


def test_parameter_of_wrong_type_is_a_clear_error(tmp_path):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match="parameter SMALL='yes' should be bool"):
        _run("00_data", tmp_path, SMALL="yes")


def test_every_chapter_is_tested():
    """Each chapter NN_name has a ``test_NN_name`` in some tests/notebooks/test_*.py."""
    import re
    from pathlib import Path

    src = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    tested = set(re.findall(r"^def test_(\d\d_\w+)\(", src, flags=re.M))
    assert set(CHAPTERS) <= tested, f"chapters without a notebook test: {set(CHAPTERS) - tested}"


@pytest.mark.slow
def test_01_baselines(tmp_path):
    """Table 1 on SimSounds (SMALL, SEED 0): the issue's Done-when criteria on the written table."""
    from soundloc.report import PAPER_PREFIX, SIM_SUFFIX
    from soundloc.table1 import LEARNED, NAIVE

    _run("01_baselines", tmp_path)
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
    assert pd.read_csv(tmp_path / "01_checks.csv")["holds"].head(3).all()
    for name in ("error_cdf", "error_map", "sim_spectrograms"):
        assert (tmp_path / f"01_{name}.png").stat().st_size > 10_000
    assert "leaflet" in (tmp_path / "01_error_map.html").read_text().lower()
