"""Chapter 00 (the real data) runs headlessly in SMALL mode; the numbers it writes are checked."""
import pandas as pd
import pytest

from nb_chapters import audio_players, run_chapter


@pytest.mark.slow
def test_00_data(tmp_path):
    nb = run_chapter("00_data", tmp_path)
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


def test_parameter_of_wrong_type_is_a_clear_error(tmp_path):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match="parameter SMALL='yes' should be bool"):
        run_chapter("00_data", tmp_path, SMALL="yes")
