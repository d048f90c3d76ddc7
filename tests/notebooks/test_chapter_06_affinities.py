"""Chapter 06 (affinities) runs headlessly in SMALL mode; its agreement table and maps."""
import pandas as pd
import pytest

from nb_chapters import run_chapter


@pytest.mark.slow
def test_06_affinities(tmp_path):
    run_chapter("06_affinities", tmp_path, SPECIES=["Anas platyrhynchos", "Sturnus vulgaris"])
    a = pd.read_csv(tmp_path / "06_agreement.csv").set_index("pairing")
    own, ctrl = a.loc["species' own range"], a.loc["another species' range (control)"]
    assert own["species"] >= 15 and own["species"] == ctrl["species"]  # species with >= 10 TEST recordings
    # from held-out recordings the affinity still follows the species' own range better than another species' range
    assert own["mean AUC in-range"] > ctrl["mean AUC in-range"] and own["mean AUC in-range"] > 0.6
    assert own["mean spearman"] > ctrl["mean spearman"]
    dens = a.loc["recording density alone (baseline, no audio)"]  # where recordings are made, no audio
    assert dens["species"] == own["species"] and 0.5 < dens["mean AUC in-range"] < 1
    reading = (tmp_path / "06_reading.md").read_text()  # generated from the same numbers
    assert f"{own['mean AUC in-range']:.3f}" in reading and f"{dens['mean AUC in-range']:.3f}" in reading
    above = "carry range information beyond" in reading
    assert above == ("is above the density baseline" in reading)
    per = pd.read_csv(tmp_path / "06_per_species.csv")
    assert len(per) == own["species"] and per["AUC in-range"].between(0, 1).all()
    assert abs(per["AUC in-range"].mean() - own["mean AUC in-range"]) < 1e-9
    for k in (0, 1):
        assert (tmp_path / f"06_species_{k}.png").stat().st_size > 10_000
        html = (tmp_path / f"06_species_{k}.html").read_text()
        assert "affinity (AG-CLIP)" in html and "range (BirdNET)" in html and "simulated" in html
    assert "Anas platyrhynchos" in (tmp_path / "06_species_0.html").read_text()
    assert not (tmp_path / "06_species_2.png").exists()


def test_06_unknown_species_is_a_clear_error(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="SPECIES: 'Homo sapiens' is not a SimSounds species"):
        run_chapter("06_affinities", tmp_path, SPECIES=["Homo sapiens"])
