"""Every chapter runs headlessly in SMALL mode and writes tables whose numbers we check."""
import pandas as pd
import pytest

from soundloc.book import ParameterError
from soundloc.runner import chapters, run_notebook

CHAPTERS = {p.stem: p for p in chapters()}


def _run(stem, out, **params):
    return run_notebook(CHAPTERS[stem], {"SMALL": True, "OUT": str(out), **params}, out_dir=out / "executed",
                        timeout=900, progress=False)


@pytest.mark.slow
def test_00_data(tmp_path):
    _run("00_data", tmp_path)
    card = pd.read_csv(tmp_path / "00_inat_card.csv").set_index("supercategory")
    assert card.loc["all", "recordings"] == 49527 and card.loc["Aves", "recordings"] == 41036
    naive = pd.read_csv(tmp_path / "00_naive.csv").set_index("method")
    r = naive.loc["Naive: test set, query left out"]
    assert r["n"] == 49527 and 6500 < r["median_km"] < 9500 and r["region_%"] < 3 and 15 < r["continent_%"] < 30
    assert naive.loc["Naive: iNatSounds test locations", "n"] == 576
    assert (tmp_path / "00_inat_hexbin.png").stat().st_size > 10_000
    assert "leaflet" in (tmp_path / "00_inat_hexbin.html").read_text().lower()


def test_parameter_of_wrong_type_is_a_clear_error(tmp_path):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match="parameter SMALL='yes' should be bool"):
        _run("00_data", tmp_path, SMALL="yes")


def test_every_chapter_is_tested():
    tested = {n[len("test_"):] for n in globals() if n.startswith("test_0")}
    assert set(CHAPTERS) <= tested, f"chapters without a notebook test: {set(CHAPTERS) - tested}"
