"""Chapter 05 (XCDC) runs headlessly in SMALL mode; the numbers it writes are checked."""
import pandas as pd
import pytest

from nb_chapters import run_chapter


@pytest.mark.slow
def test_05_xcdc(tmp_path, xcdc_release_tar):
    from xcdc_fixture import check_audio_branch

    # one run covers the real part, the models part and the XCDC-audio branch (on a fixture in the release's format)
    nb = run_chapter("05_xcdc", tmp_path, N_VAL=120, DRAWS=3, XCDC_AUDIO=str(xcdc_release_tar))
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
