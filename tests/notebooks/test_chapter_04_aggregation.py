"""Chapter 04 (spatiotemporal aggregation) runs headlessly in SMALL mode; its numbers are checked."""
import numpy as np
import pandas as pd
import pytest

from nb_chapters import run_chapter


@pytest.mark.slow
def test_04_aggregation(tmp_path):
    run_chapter("04_aggregation", tmp_path)

    # real iNatSounds test: whole res-5 cells, grouping by res 5 (x week) lowers the median error
    t = pd.read_csv(tmp_path / "04_real_table4.csv")
    allr = t[t.recordings == "all"].set_index("method")
    n = int(allr.loc["No grouping", "n"])
    assert 3000 <= n < 49527 and (allr["n"] == n).all() and allr.loc["No grouping", "groups"] == n
    assert allr.loc["H3 res 5", "median_km"] < allr.loc["No grouping", "median_km"]
    assert allr.loc["H3 res 5 + week", "median_km"] < allr.loc["No grouping", "median_km"]
    assert allr.loc["H3 res 5", "region_%"] > allr.loc["No grouping", "region_%"]
    assert allr.loc["H3 res 5", "groups"] < allr.loc["H3 res 5 + week", "groups"] < n  # finer periods, more groups
    assert 300 < allr.loc["No grouping", "median_km"] < 3000
    # the paper's AG-CLIP numbers sit in their own columns, only on the paper's rows
    assert allr.loc["No grouping", "paper (AG-CLIP) median_km"] == 1082
    assert allr.loc["H3 res 6 + week", "paper (AG-CLIP) region_%"] == 19.9
    assert np.isnan(allr.loc["H3 res 5 + week", "paper (AG-CLIP) median_km"])
    cov = pd.read_csv(tmp_path / "04_real_coverage.csv").iloc[0]
    fell = cov["fell back to the prior (species not in the range model)"]
    assert cov["recordings"] == n and 0 < fell < 0.3 * n and cov["located from their species"] + fell == n
    covered = t[t.recordings == "covered species"]
    assert (covered["n"] == n - fell).all()
    assert len(pd.read_csv(tmp_path / "04_real_crossfit_choice.csv")) == 2

    # unique species per group (all 49,527 recordings): the chapter's number == an independent groupby
    s = pd.read_csv(tmp_path / "04_species_per_group.csv")
    s = s[s.groups_counted == "all groups"].set_index("grouping")
    weekly = s.loc["H3 res 6 + week", "1 species (%)"]
    from soundloc.data import load_inat
    from soundloc.sphere import h3_cells

    inat = load_inat()
    iso = pd.to_datetime(inat["date"]).dt.isocalendar()
    key = pd.DataFrame({"c": h3_cells(inat.lat, inat.lon, 6), "y": iso["year"], "w": iso["week"], "s": inat.species})
    nsp = key.groupby(["c", "y", "w"])["s"].nunique()
    assert weekly == pytest.approx(100 * (nsp == 1).mean(), abs=1e-9)
    assert 60 < weekly < 97 and s.loc["H3 res 6 + week", "groups"] == len(nsp)
    assert s.loc["No grouping", "1 species (%)"] == 100
    one = s["1 species (%)"]  # shorter periods hold fewer species
    assert one["H3 res 5"] < one["H3 res 5 + month"] < one["H3 res 5 + week"] and one["H3 res 6"] < weekly

    # models on SimSounds: every number labelled simulated, every method x grouping present
    sim = pd.read_csv(tmp_path / "04_sim_table4.csv")
    assert set(sim.model) >= {"Classification hierarchical 0-1-2", "Ranges: predicted species all", "AG-CLIP"}
    assert len(sim) == 9 * sim.model.nunique()
    ours = [c for c in sim.columns if c not in ("model", "method", "n") and not c.startswith("paper")]
    assert ours and all(c.endswith("(simulated)") for c in ours)
    none = sim[sim.method == "No grouping"]
    assert (none["groups (simulated)"] == none["n"]).all()

    checks = pd.read_csv(tmp_path / "04_checks.csv").set_index("statement")["holds"]
    assert checks["real: res-5 grouping (whole year) lowers the median error vs no grouping"]
    cmp = pd.read_csv(tmp_path / "04_real_compare.csv").set_index(["a", "b"])
    assert set(cmp.verdict) <= {"better", "worse", "tie"} and len(cmp) == 5
    # the relative res-5 gain with its interval, said against the paper's (1 - 520 / 1082 = 52 %)
    t4 = pd.read_csv(tmp_path / "04_real_table4.csv").query("recordings == 'all'").set_index("method")["median_km"]
    reading = (tmp_path / "04_real_compare_reading.md").read_text()
    gain = 100 * (1 - t4["H3 res 5"] / t4["No grouping"])
    assert f"H3 res 5 removes {gain:.0f} % of the median error without grouping (95 % CI [" in reading
    assert "against 52 % for the paper's AG-CLIP (1,082 -> 520 km" in reading
    smaller = checks["real: the relative res-5 gain in median error is smaller than the paper's AG-CLIP gain (95 % CI "
                     "below it)"]
    assert smaller == ("smaller than the paper's relative gain" in reading)
    assert checks["real: over 80 % of res-6 weekly groups hold one species, as the paper says"] == (weekly > 80)
    for f in ("04_real_error_vs_grouping.png", "04_species_per_group.png", "04_real_example_groups.png",
              "04_sim_error_vs_grouping.png"):
        assert (tmp_path / f).stat().st_size > 10_000
    assert "leaflet" in (tmp_path / "04_real_example_group.html").read_text().lower()
