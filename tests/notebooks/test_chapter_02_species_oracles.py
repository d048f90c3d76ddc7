"""Chapter 02 (species oracles) runs headlessly in SMALL mode; the numbers it writes are checked."""
import pandas as pd
import pytest

from nb_chapters import run_chapter


@pytest.mark.slow
def test_02_species_oracles(tmp_path):
    run_chapter("02_species_oracles", tmp_path, N_EVAL=600, N_REF=3000, N_SIM=300)
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
