"""Chapters 07 (geo-forensics) and 08 (real audio) in SMALL mode: the numbers they write are checked."""
import numpy as np
import pandas as pd
import pytest

from nb_chapters import audio_players, run_chapter

from soundloc.sphere import haversine

SEATTLE = (47.6766, -122.294)
JURA = (46.6, 6.1)


@pytest.mark.slow
def test_07_geoforensics(tmp_path):
    assert audio_players(run_chapter("07_geoforensics", tmp_path)) == 1  # the Seattle recording plays
    assert (tmp_path / "07_seattle_listen.png").stat().st_size > 10_000
    claims = pd.read_csv(tmp_path / "07_seattle_claims.csv").set_index("claim")
    t, f = claims.loc["true place (Seattle)"], claims.loc["false claim"]
    assert t.verdict == "consistent" and t["out of range"] == 0 and t.hpd_mass <= 0.95
    assert f.verdict == "inconsistent" and f["out of range"] >= 2 and f.hpd_mass > 0.95
    assert f["km to best place"] > 5000 > t["km to best place"]
    sp = pd.read_csv(tmp_path / "07_seattle_false_species.csv")
    assert "Junco hyemalis" in set(sp.scientific_name[sp.out_of_range]) and (sp.p_claim[sp.out_of_range] < 0.03).all()
    # simulated part: settings chosen on validation, read on test (60 recordings per case)
    val = pd.read_csv(tmp_path / "07_sim_validation.csv").set_index("reading")
    grid = pd.read_csv(tmp_path / "07_sim_validation_grid.csv")
    ok = grid[grid.false_flag_rate <= 0.05]
    assert set(val.index) == {"max", "mean"} and (val.false_flag_rate <= 0.05).all()
    assert val.loc["max", "planted_recall"] == ok.planted_recall.max() >= val.loc["mean", "planted_recall"]
    chosen = val.loc["max"]
    cases = pd.read_csv(tmp_path / "07_sim_cases.csv")
    assert len(cases) == 3 * 60 and cases.audio_id.nunique() == 60
    assert set(cases.verdict) <= {"consistent", "suspicious", "inconsistent"}
    v = pd.read_csv(tmp_path / "07_sim_verdicts.csv").set_index("case")
    assert (v.data == "simulated (SimSounds)").all()
    clean, spl, far = (v.loc[c] for c in ("unspliced, true place", "spliced, true place", "unspliced, false place (>= 5000 km)"))
    sp = cases[cases.case == "spliced, true place"]
    assert (sp.n_planted == 2).all() and spl["planted caught"] == f"{int(sp.planted_caught.sum())} / 120"
    recall = sp.planted_caught.sum() / 120
    assert recall == pytest.approx(spl["planted recall_%"] / 100) and recall > 1 / 24  # old: 1 of 24 at BirdNET's 0.5
    assert recall >= 0.5 * chosen.planted_recall  # test recall not far below what validation promised
    # false flags on clean clips at their true place: at most the validation bound + slack (60 recordings)
    assert clean["species_line_%"] <= 100 * (0.05 + 0.08) and clean["flagged_%"] <= 100 * (0.10 + 0.10)
    # the check separates the cases: planted and far claims are flagged more often than clean true claims
    assert spl["flagged_%"] >= clean["flagged_%"] + 15 and far["flagged_%"] >= clean["flagged_%"] + 20
    for case, grp in cases.groupby("case"):
        row = v.loc[case]
        assert row.recordings == len(grp) and row.inconsistent == (grp.verdict == "inconsistent").sum()
        assert row["flagged_%"] == pytest.approx(100 * (grp.verdict != "consistent").mean())
    assert ((cases.n_flagged > 0) == cases.flagged.fillna("").str.len().gt(0)).all()
    for name in ("07_seattle_claims.png", "07_seattle_claims.html", "07_sim_validation.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert "false claim" in (tmp_path / "07_seattle_claims.html").read_text()


@pytest.mark.slow
def test_08_real_audio(tmp_path):
    from soundloc.locator import LocateOptions, locate

    assert audio_players(run_chapter("08_real_audio", tmp_path)) == 2  # Seattle and the richest Jura clip play
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
    for name in ("08_seattle_posterior.png", "08_seattle_posterior.html", "08_jura.png", "08_jura_day_posterior.html",
                 "08_seattle_listen.png", "08_jura_listen.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert "leaflet" in (tmp_path / "08_jura_day_posterior.html").read_text().lower()
