"""Chapter 10 (flow head on the sphere, acoustic atoms simulated and real) runs headlessly in SMALL mode and writes its tables."""
import pandas as pd
import pytest

from nb_chapters import run_chapter


@pytest.mark.slow
def test_10_sphere_flow(tmp_path):
    # 40 flow epochs instead of the book's 100: the same code paths and checks, ~45 s less of make test
    run_chapter("10_sphere_flow", tmp_path, FLOW_EPOCHS=40)
    S = " (simulated)"
    t = pd.read_csv(tmp_path / "10_simsounds.csv").set_index("method")
    assert (t["n"] == 500).all() and len(t) == 5
    flow_rows = [m for m in t.index if m.startswith("Flow head")]
    assert len(flow_rows) == 1 and {"Regression (Haversine)", "Classification hierarchical 0-1-2"} <= set(t.index)
    assert sum(m.startswith("AG-CLIP + location prior") for m in t.index) == 2
    # the flow learns: far better than a random place on Earth (median ~10,000 km)
    assert t.loc[flow_rows[0], "median_km" + S] < 5000
    assert t["median_km 95% CI" + S].str.startswith("[").all()  # intervals over the test recordings
    v = pd.read_csv(tmp_path / "10_flow_val.csv")
    assert list(v["base"]) == ["uniform", "prior"] and (v["last epoch loss"] < v["first epoch loss"]).all()
    assert v.loc[v.median_km.idxmin(), "base"] in flow_rows[0]  # the base chosen on validation is the one reported
    c = pd.read_csv(tmp_path / "10_credible.csv")
    assert len(c) == 4 and c["coverage %" + S].between(0, 100).all()
    assert c["coverage 95% CI" + S].str.startswith("[").all()  # 24 clips: the coverage is uncertain by ~20 points
    a90, a50 = (c[c["level %"] == lv].set_index("method")["median area (M km^2)" + S] for lv in (90, 50))
    assert (a90 > a50).all()  # a 90 % region is larger than a 50 % one
    r = pd.read_csv(tmp_path / "10_real_folds.csv")
    both = r[r.reported_fold.astype(str) == "both"].set_index("method")
    assert len(both) == 2 and (both["n"] == 2000).all()
    assert both["median_km (real)"].max() < 5000
    sae = pd.read_csv(tmp_path / "10_sae.csv").set_index("split")
    assert sae.loc["test", "FVE %" + S] > 80 and 0 <= sae.loc["test", "dead atoms %" + S] <= 100
    assert len(pd.read_csv(tmp_path / "10_atoms.csv")) == 12
    assert len(pd.read_csv(tmp_path / "10_atoms_vs_raw.csv")) == 2
    # real atoms: every second Jura clip held out whole; a row per question and feature set
    rs = pd.read_csv(tmp_path / "10_sae_real.csv")
    assert list(rs["clips"]) == [25, 24] and rs["dead atoms % (real)"].between(0, 100).all()
    ra = pd.read_csv(tmp_path / "10_atoms_real.csv")
    assert 1 <= len(ra) <= 12 and ra["active %"].between(0, 100).all() and ra["hour (median)"].dropna().between(0, 24).all()
    pr = pd.read_csv(tmp_path / "10_atoms_probe_real.csv")
    assert len(pr) == 4 and (pr["test windows"] == rs["windows"].iloc[1]).all()
    assert pr["accuracy % (real)"].between(0, 100).all()
    ck = pd.read_csv(tmp_path / "10_checks.csv")
    assert len(ck) == 7 and ck["holds"].isin([True, False]).all()
    for png in ("10_density_vs_agclip.png", "10_atoms.png", "10_atoms_real.png"):
        assert (tmp_path / png).stat().st_size > 10_000
