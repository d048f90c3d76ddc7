"""Chapter 08 (real audio) runs headlessly in SMALL mode; the numbers it writes are checked."""
import numpy as np
import pandas as pd
import pytest

from nb_chapters import audio_players, run_chapter

from soundloc.sphere import haversine

SEATTLE = (47.6766, -122.294)
JURA = (46.6, 6.1)


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
