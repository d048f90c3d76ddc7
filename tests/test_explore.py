"""soundloc.explore: each explorer's view against a hand computation, and each widget's callback driven once."""
import numpy as np
import pytest

from soundloc import explore
from soundloc.detect import NON_SPECIES
from soundloc.sphere import cell_areas
from soundloc.locator import week_from_date

pytestmark = pytest.mark.usefixtures("one_thread")
CFG = explore.ExploreConfig()


def _mimes(out):
    return [m for o in out.outputs for m in o["data"]]


def test_species_explorer_companions_are_range_weighted_means_and_the_week_callback_redraws():
    ex = explore.species_explorer("Turdus merula", 20, CFG)
    v = ex.view
    assert v.species == "Turdus merula" and v.week == 20 and "image/png" in _mimes(ex.widget.children[1])
    g = explore._model(CFG)
    k = g.model.species.index("Turdus merula")
    j = g.model.species.index(v.companions.scientific_name.iloc[0])
    P = g.model.prob(g.points[:, 0], g.points[:, 1], 20, [k, j]).astype(np.float64)  # (N, 2)
    w = np.where(P[:, 0] >= CFG.min_occurrence, P[:, 0], 0.0)  # its range: p >= 0.01
    assert v.companions.expected_prob.iloc[0] == pytest.approx((w * P[:, 1]).sum() / w.sum(), rel=1e-5)
    assert "Turdus merula" not in set(v.companions.scientific_name) and not set(v.companions.scientific_name) & NON_SPECIES
    assert v.companions.expected_prob.is_monotonic_decreasing and len(v.companions) == CFG.top
    with pytest.raises(ValueError, match="no place with range probability >= 1.01"):
        explore.species_view("Turdus merula", 20, explore.ExploreConfig(min_occurrence=1.01))
    ex.controls["week"].value = 0  # the slider's callback: year-round
    assert ex.view.week is None and ex.view is not v
    ex.controls["name"].value = "Eurasian Blackbird"  # a common name resolves to the same species
    assert ex.view.species == "Turdus merula"
    last = ex.view
    ex.controls["name"].value = "no such bird"
    assert ex.view is last and "unknown species 'no such bird'" in ex.errors[-1]


def test_place_explorer_click_updates_once_and_ranks_the_range_model():
    ex = explore.place_explorer(46.6, 6.1, 20, CFG)
    assert ex.view.scientific_name.iloc[0] and "text/html" in _mimes(ex.widget.children[-1])
    calls = []
    update = ex.update
    ex.update = lambda **kw: calls.append(kw) or update(**kw)
    ex.parts["on_click"](type="click", coordinates=[47.6766, -122.294 + 360])  # a click on the wrapped map copy
    assert len(calls) == 1 and ex.controls["lon"].value == pytest.approx(-122.294) and ex.controls["lat"].value == 47.677
    assert ex.parts["marker"].location == pytest.approx((47.6766, -122.294))
    t = ex.view
    m = explore._model(CFG).model
    p = m.prob([ex.controls["lat"].value], [ex.controls["lon"].value], 20)[0]  # the clicked place, rounded to 3 decimals
    ok = ~np.isin(m.species, list(NON_SPECIES))
    best = np.flatnonzero(ok)[np.argsort(-p[ok])[:CFG.top]]
    assert t.scientific_name.tolist() == [m.species[i] for i in best] and t.prob.to_numpy() == pytest.approx(p[best])
    with pytest.raises(ValueError, match="not a lat/lon"):
        explore.place_view(120, 0, 20, CFG)


def test_recording_explorer_region_holds_the_level_and_the_dropdown_switches(mirror):
    recs = explore.real_recordings()
    assert recs[0].path.name == "XC563936_soundscape.mp3" and len(recs) == 9
    ex = explore.recording_explorer([recs[0], recs[5]], 0.9, CFG)
    v = ex.view
    s = v.summary.iloc[0]
    areas = cell_areas(v.location.points, CFG.step)
    mass = v.location.posterior  # each cell's mass (density x cell area), as locate returns it
    assert mass.sum() == pytest.approx(1.0, abs=1e-6) and np.allclose(v.location.areas, areas)
    last = np.argmin((mass / areas)[v.region])  # the region's least dense cell, the last one a density ranking adds
    assert mass[v.region].sum() >= 0.9 and mass[v.region].sum() - mass[v.region][last] < 0.9  # smallest such set
    assert s.region_km2 == pytest.approx(areas[v.region].sum()) and s["true place in region"]
    assert s.error_km < 1000 and v.species.scientific_name.iloc[0] == "Junco hyemalis"
    assert v.species.range_prob_true.iloc[0] > 0.5  # the junco's range covers Seattle in March
    mimes = _mimes(ex.widget.children[1])
    assert "text/html" in mimes and mimes.count("image/png") == 2  # player (html), spectrogram, posterior, tables
    ex.controls["level"].value = 0.5  # the slider's callback: a smaller region
    assert ex.view.region.sum() < v.region.sum()
    ex.controls["name"].value = recs[5].name
    assert ex.view.recording.name == "Jura forest, 2019-05-22 07:00" and ex.view.summary.week.iloc[0] == week_from_date("2019-05-22")
