"""Chapter 11 (teaching) in SMALL mode: the explorers' default views are written and every exercise answer is checked."""
import json

import numpy as np
import pandas as pd
import pytest

from nb_chapters import run_chapter

SEATTLE, PARIS, JURA = (47.6766, -122.294), (48.8566, 2.3522), (46.6, 6.1)


@pytest.mark.slow
def test_11_teaching(tmp_path):
    from haversine import haversine as reference_haversine

    from soundloc.detect import NON_SPECIES
    from soundloc.locator import range_geolocator

    executed = run_chapter("11_teaching", tmp_path)
    nb = json.loads(executed.read_text())
    a = pd.read_csv(tmp_path / "11_answers.csv").set_index("question").answer
    # exercise 1: against the haversine package on the same sphere
    assert float(a["1 Seattle-Paris km"]) == pytest.approx(reference_haversine(SEATTLE, PARIS, normalize=True) * 6371.0
                                                           / 6371.0088, rel=1e-9)
    # exercise 2: by hand, errors 3 ... 15000 km
    hand = {"median_error": 480.0, "mean_error": 2839.5, "street": 0.0, "city": 0.2, "region": 0.4, "country": 0.6,
            "continent": 0.8, "mean change km": 500.0, "median change km": 0.0}
    assert {k: float(a[f"2 {k}"]) for k in hand} == pytest.approx(hand)
    # exercise 3: the range model's own ranking at the Jura in week 20, sounds left out
    m = range_geolocator("land2", "lists", "cpu").model
    p = m.prob([JURA[0]], [JURA[1]], 20)[0]
    p[np.isin(m.species, list(NON_SPECIES))] = -1
    assert a["3 species"] == m.species[int(np.argmax(p))] and float(a["3 prob"]) == pytest.approx(p.max(), rel=1e-5)
    # exercise 4: a lower level gives a smaller region; the 90 % one is the explorer's default
    rec = pd.read_csv(tmp_path / "11_recording.csv").iloc[0]
    r90, r50 = float(a["4 region_km2 at 90%"]), float(a["4 region_km2 at 50%"])
    assert r90 == pytest.approx(rec.region_km2) and 0 < r50 < r90 and float(a["4 km2 lost"]) == pytest.approx(r90 - r50)
    assert a["4 Seattle inside at 50%"] in ("True", "False")
    # answers sit in collapsed cells (code and output); the explorers' widgets were displayed and their default views written
    hidden = [c for c in nb["cells"] if c["metadata"].get("jupyter") == {"outputs_hidden": True, "source_hidden": True}]
    assert len(hidden) == 5 and all("answers" in "".join(c["source"]) for c in hidden)
    views = [o for c in nb["cells"] for o in c.get("outputs", []) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 3
    comp = pd.read_csv(tmp_path / "11_species_companions.csv")
    assert len(comp) == 10 and "Turdus merula" not in set(comp.scientific_name) and comp.expected_prob.is_monotonic_decreasing
    assert rec["true place in region"] and rec.error_km < 1000
    assert "Junco hyemalis" in set(pd.read_csv(tmp_path / "11_recording_species.csv").scientific_name)
    assert pd.read_csv(tmp_path / "11_place.csv").scientific_name.iloc[0] == a["3 species"]
    heard = pd.read_csv(tmp_path / "11_listen.csv")
    assert (heard.score >= 0.3).all() and "Dark-eyed Junco" in set(heard.common_name)
    # the static page (for a screenshot without widget JavaScript): controls with their values, outputs inline
    from soundloc.explore import static_notebook

    static = static_notebook(executed, widgets_only=True)
    outs = [o for c in static.cells for o in c.outputs]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outs)
    assert len(static.cells) == 3 and 'value="Turdus merula"' in html and "Seattle soundscape, XC563936</option>" in html
    assert sum("image/png" in o.get("data", {}) for o in outs) == 3 and html.count("<audio") == 1
    for name in ("listen", "species_range", "recording_posterior"):
        assert (tmp_path / f"11_{name}.png").stat().st_size > 10_000
