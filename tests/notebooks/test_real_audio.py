"""Chapters 07 (geo-forensics) and 08 (real audio) in SMALL mode: the numbers they write are checked."""
import numpy as np
import pandas as pd
import pytest

from nb_chapters import run_chapter

from soundloc.geo import haversine

SEATTLE = (47.6766, -122.294)
JURA = (46.6, 6.1)


@pytest.mark.slow
def test_07_geoforensics(tmp_path):
    run_chapter("07_geoforensics", tmp_path)
    claims = pd.read_csv(tmp_path / "07_seattle_claims.csv").set_index("claim")
    t, f = claims.loc["true place (Seattle)"], claims.loc["false claim"]
    assert t.verdict == "consistent" and t["out of range"] == 0 and t.hpd_mass <= 0.95
    assert f.verdict == "inconsistent" and f["out of range"] >= 2 and f.hpd_mass > 0.95
    assert f["km to best place"] > 5000 > t["km to best place"]
    sp = pd.read_csv(tmp_path / "07_seattle_false_species.csv")
    assert "Junco hyemalis" in set(sp.scientific_name[sp.out_of_range]) and (sp.p_claim[sp.out_of_range] < 0.03).all()
    cases = pd.read_csv(tmp_path / "07_sim_cases.csv")
    assert len(cases) == 3 * 12 and cases.audio_id.nunique() == 12
    assert set(cases.verdict) <= {"consistent", "suspicious", "inconsistent"}
    spl = cases[cases.case == "spliced, true place"]
    assert (spl.planted.str.count(";") == 1).all() and spl.planted_flagged.between(0, 2).all()
    v = pd.read_csv(tmp_path / "07_sim_verdicts.csv")
    assert (v.data == "simulated (SimSounds)").all()
    counts = v[["consistent", "suspicious", "inconsistent"]].sum(axis=1)
    assert (counts == 12).all()
    np.testing.assert_allclose(v["flagged_%"], 100 * (v.suspicious + v.inconsistent) / counts)
    for case, grp in cases.groupby("case"):
        row = v.set_index("case").loc[case]
        assert row.inconsistent == (grp.verdict == "inconsistent").sum()
    for name in ("07_seattle_claims.png", "07_seattle_claims.html"):
        assert (tmp_path / name).stat().st_size > 1000
    assert "false claim" in (tmp_path / "07_seattle_claims.html").read_text()


@pytest.mark.slow
def test_08_real_audio(tmp_path):
    from soundloc.locate import LocateOptions, locate

    run_chapter("08_real_audio", tmp_path)
    tab = pd.read_csv(tmp_path / "08_real_audio.csv").set_index("method")
    assert (tab.data == "real").all()
    sea = tab.loc["Seattle XC563936, 72 s, with date", "median_km"]
    mirror = __import__("soundloc.paths", fromlist=["x"]).mirror_dir()
    loc = locate(str(mirror / "audio" / "XC563936_soundscape.mp3"), date="2020-03-15", opts=LocateOptions(gallery="land2"))[0]
    assert sea == pytest.approx(loc.error_km(*SEATTLE), abs=1e-6) and sea < 500
    species = pd.read_csv(tmp_path / "08_seattle_species.csv")
    assert species.scientific_name.iloc[0] == "Junco hyemalis" and species.max_score.is_monotonic_decreasing
    clips = pd.read_csv(tmp_path / "08_jura_clips.csv")
    assert len(clips) == 48 and clips.file.str.startswith("S4A03895_20190522_").all()  # every 2nd of 96 clips
    np.testing.assert_allclose(clips.error_km, haversine(clips.pred_lat, clips.pred_lon, *JURA), rtol=1e-9)
    has = clips.n_species > 0
    assert tab.loc["Jura: each clip alone (all clips)", "n_clips"] == 48
    assert tab.loc["Jura: each clip alone (clips with species)", "n_clips"] == has.sum() >= 30
    assert tab.loc["Jura: each clip alone (clips with species)", "median_km"] == pytest.approx(clips.error_km[has].median())
    hour = clips.time.str[:2].astype(int)
    assert tab.loc["Jura: mean posterior, dawn 04-08 h", "n_clips"] == (has & (hour >= 4) & (hour < 8)).sum()
    assert tab.loc["Jura: mean posterior, whole day", "n_clips"] == has.sum()
    agg = tab[tab.index.str.contains("mean posterior|pooled")]
    assert len(agg) == 4 and (agg.n == 1).all() and np.isfinite(agg.median_km).all()
    assert ((agg.median_km <= 2500) == (agg["continent_%"] == 100)).all()
    for name in ("08_seattle_posterior.png", "08_seattle_posterior.html", "08_jura.png", "08_jura_day_posterior.html"):
        assert (tmp_path / name).stat().st_size > 1000
    assert "leaflet" in (tmp_path / "08_jura_day_posterior.html").read_text().lower()
