"""Chapter 09 (soundscapes) runs headlessly in SMALL mode and writes the numbers its reading relies on."""
import pandas as pd
import pytest

from nb_chapters import run_chapter


@pytest.mark.slow
def test_09_soundscape(tmp_path):
    run_chapter("09_soundscape", tmp_path)
    r = pd.read_csv(tmp_path / "09_rankings.csv").set_index(["data", "method"])
    methods = ["week occurrence", "year-round occurrence", "global frequency", "heard here", "species factor"]
    for data in ("XCDC (real)", "iNatSounds lists (real)"):
        assert [m for m in methods if (data, m) in r.index] == methods
    x = r.loc["XCDC (real)"]
    # the first measurement, reproduced (BirdNET V2.4, week-aware, all 6,522 species)
    assert x.loc["week occurrence", "R@10 %"] == pytest.approx(25.8, abs=0.05)
    assert x.loc["week occurrence", "R@50 %"] == pytest.approx(66.0, abs=0.05)
    assert x.loc["week occurrence", "mAP"] == pytest.approx(0.330, abs=0.0005)
    assert x.loc["year-round occurrence", "mAP"] == pytest.approx(0.297, abs=0.0005)
    assert (x["lists"] == 576).all() and x.loc["global frequency", "mAP"] < 0.1
    # the reading's verdicts come from the paired bootstrap table
    v = pd.read_csv(tmp_path / "09_verdict.csv").set_index(["data", "method"])
    for data, key in (("XCDC", "XCDC (real)"), ("iNatSounds lists", "iNatSounds lists (real)")):
        for m in ("heard here", "species factor"):
            d = r.loc[(key, m), "mAP"] - r.loc[(key, "week occurrence"), "mAP"]
            assert v.loc[(data, m), "mAP method - week occurrence"] == pytest.approx(d, abs=1e-9)
            assert v.loc[(data, m), "2.5 %"] <= d <= v.loc[(data, m), "97.5 %"]
    # the fitting data: cross-fitted, both help there
    assert (v.loc["iNatSounds lists", "beats occurrence"] == "yes").all()
    # the rule fixed before XCDC: the variant with the best out-of-fold mAP on iNatSounds lists, never XCDC's
    var = pd.read_csv(tmp_path / "09_variants.csv")
    pick = var[var["rule's choice"]]
    assert len(pick) == 1 and pick.index[0] == var["iNatSounds out-of-fold mAP (chooses)"].idxmax()
    rule = "species factor" if pick.variant.iloc[0].startswith("species factor") else "heard here"
    assert v["rule's choice"].groupby("method").all()[rule] and not v["rule's choice"].groupby("method").any().drop(rule).any()
    assert pick["XCDC mAP (reports)"].iloc[0] == pytest.approx(x.loc[rule, "mAP"], abs=1e-9)
    f = pd.read_csv(tmp_path / "09_factor_choice.csv")
    assert len(f) == 3 and f.mAP.max() == pytest.approx(var.loc[var.variant.str.startswith("species"),
                                                                 "iNatSounds out-of-fold mAP (chooses)"].max())
    nested = r.loc[("iNatSounds lists (real)", "heard here, nested choice")]
    assert nested["mAP"] > r.loc[("iNatSounds lists (real)", "week occurrence"), "mAP"]  # also with an honest choice
    # the choice was made on iNatSounds lists: the chosen row is the best of the choice table, not of XCDC's
    c, p = pd.read_csv(tmp_path / "09_choice.csv"), pd.read_csv(tmp_path / "09_posthoc_xcdc.csv")
    chosen = p[p.chosen]
    assert len(chosen) == 1 and chosen.prior_strength.iloc[0] == c.loc[c.mAP.idxmax(), "prior_strength"]
    assert chosen.mAP.iloc[0] == pytest.approx(x.loc["heard here", "mAP"], abs=1e-9)
    # the local-evidence diagnostic: every list of both sets in exactly one bin; the bins' gains average to the mAP gap
    ev = pd.read_csv(tmp_path / "09_local_evidence.csv")
    assert len(ev) == 8 and set(ev.data) == {"XCDC (real)", "iNatSounds lists (real)"}
    for d, g in ev.groupby("data"):
        n = r.loc[(d, "week occurrence"), "lists"]
        assert g.lists.sum() == n
        gap = r.loc[(d, "heard here"), "mAP"] - r.loc[(d, "week occurrence"), "mAP"]
        assert (g.lists * g["mean AP gain"].fillna(0)).sum() / n == pytest.approx(gap, abs=1e-9)
    # the second rule (empirical Bayes): out-of-fold predictive log-likelihood on iNatSounds lists chooses, one choice per family
    lk = pd.read_csv(tmp_path / "09_likelihood_choice.csv")
    LL, MAP = "out-of-fold log-likelihood per species (chooses)", "out-of-fold mAP (shown)"
    assert list(lk.columns) == ["family", "parameters", LL, MAP, "family's choice", "rule's choice"]
    cand = ~lk.family.str.startswith("week occurrence")
    assert (lk[cand].groupby("family").size() >= 5).all() and (lk[LL] < 0).all()
    assert (lk[cand].groupby("family")["family's choice"].sum() == 1).all() and not lk.loc[~cand, "family's choice"].any()
    assert lk["rule's choice"].sum() == 1 and lk.loc[lk["rule's choice"], LL].iloc[0] == lk.loc[cand, LL].max()
    for fam, g in lk[cand].groupby("family"):
        assert g.loc[g["family's choice"], LL].iloc[0] == g[LL].max()
    assert lk.loc[~cand, MAP].iloc[0] == pytest.approx(r.loc[("iNatSounds lists (real)", "week occurrence"), "mAP"], abs=1e-9)
    lv = pd.read_csv(tmp_path / "09_likelihood_verdict.csv")
    assert {"data", "method", "mAP", "mAP 95% CI", "week occurrence mAP", "mAP method - week occurrence", "2.5 %", "97.5 %",
            "beats occurrence", "rule's choice"} <= set(lv.columns) and len(lv) == 4
    assert lv.groupby("data")["rule's choice"].sum().eq(1).all()
    assert lv.loc[lv.data == "XCDC", "week occurrence mAP"].to_numpy() == pytest.approx([x.loc["week occurrence", "mAP"]] * 2)
    assert (lv["2.5 %"] <= lv["mAP method - week occurrence"]).all() and (lv["mAP method - week occurrence"] <= lv["97.5 %"]).all()
    assert "XCDC not used to choose" in (tmp_path / "09_reading.md").read_text()
    # the third variant (debiased local composition): alpha chosen by out-of-fold mAP on iNatSounds lists, XCDC reports
    dt = pd.read_csv(tmp_path / "09_debiased.csv")
    CH, XR = "iNatSounds out-of-fold mAP (chooses)", "XCDC mAP (reports, not used for choosing)"
    assert list(dt.columns) == ["bandwidth_km", "alpha", CH, "folds choosing it (nested)", XR, "chosen"]
    assert list(dt.alpha) == [1, 3, 10, 30, 100, 300, 1000, 3000] and (dt.bandwidth_km == 200).all()
    assert dt.chosen.sum() == 1 and dt.loc[dt.chosen, CH].iloc[0] == dt[CH].max()
    assert dt["folds choosing it (nested)"].sum() == 5 and dt[[CH, XR]].stack().between(0, 1).all()
    dv = pd.read_csv(tmp_path / "09_debiased_verdict.csv")
    assert list(dv.data) == ["iNatSounds lists", "iNatSounds lists", "XCDC"] and dv.method.str.startswith("debiased").all()
    dx = dv.iloc[2]
    assert dx.mAP == pytest.approx(dt.loc[dt.chosen, XR].iloc[0], abs=1e-9) and dv.iloc[0].mAP == pytest.approx(dt[CH].max())
    assert dx["week occurrence mAP"] == pytest.approx(x.loc["week occurrence", "mAP"], abs=1e-9)
    assert (dv["2.5 %"] <= dv["mAP method - week occurrence"]).all() and (dv["mAP method - week occurrence"] <= dv["97.5 %"]).all()
    assert "XCDC chose nothing" in (tmp_path / "09_reading.md").read_text()
    rich = pd.read_csv(tmp_path / "09_richness.csv").set_index("region")
    assert rich.loc["land north of 45° N", "July"] > rich.loc["land north of 45° N", "January"]
    for name in ("species_seasons", "range_vs_heard", "audio_affinity", "richness", "clip_map"):
        assert (tmp_path / f"09_{name}.png").stat().st_size > 20_000
    # PSM: both rows on SimSounds, labelled simulated, trained (loss fell), and the variance table it reads from
    p = pd.read_csv(tmp_path / "09_psm.csv").set_index("method")
    assert list(p.index) == ["deterministic (same net)", "PSM (probabilistic)"] and (p.data == "SimSounds (simulated)").all()
    assert (p["last loss"] < p["first loss"]).all() and p["90% region coverage %"].between(0, 100).all()
    q = pd.read_csv(tmp_path / "09_psm_variance.csv")
    assert list(q["variance quintile"]) == ["Q1", "Q2", "Q3", "Q4", "Q5"]
    assert "simulated" in (tmp_path / "09_psm_variance.md").read_text().splitlines()[0]
    # simulated clip -> map through AG-CLIP: six clips, labelled simulated, numbers in range
    c = pd.read_csv(tmp_path / "09_clip_maps.csv")
    assert len(c) == 6 and c["peak km"].between(0, 20_016).all() and (c["90% region km2"] > 0).all()
    assert c["true place in 90% region"].dtype == bool
    assert "simulated" in (tmp_path / "09_clip_maps.md").read_text().splitlines()[0]
    html = tmp_path / "09_species_months.html"
    assert "July" in html.read_text() and html.stat().st_size < 3_000_000
    html = tmp_path / "09_richness_months.html"
    assert "December" in html.read_text() and html.stat().st_size < 3_000_000
