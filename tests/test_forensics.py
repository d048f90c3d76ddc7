"""Geo-forensics: out-of-range species, the claim under the audio posterior, and the verdict."""
import numpy as np
import pandas as pd
import pytest

from soundloc.forensics import CheckConfig, check, check_species
from soundloc.locate import LocateOptions

SEATTLE = (47.6766, -122.294)
OPTS = LocateOptions(gallery="land2")


@pytest.fixture(scope="module")
def seattle(mirror):
    return mirror / "audio" / "XC563936_soundscape.mp3"


def test_true_place_is_consistent(seattle, one_thread):
    r = check(seattle, *SEATTLE, date="2020-03-15", opts=OPTS)
    assert r.verdict == "consistent" and r.week == 11
    assert len(r.species) >= 2 and not r.species.out_of_range.any()
    assert (r.species.p_claim >= 0.03).all() and (r.species.nearest_km < 250).all()
    assert r.hpd_mass <= 0.95 and r.distance_km < 1000


def test_false_continent_is_inconsistent(seattle, one_thread):
    r = check(seattle, 48.8566, 2.3522, date="2020-03-15", opts=OPTS)  # claimed: Paris
    assert r.verdict == "inconsistent"
    oor = r.out_of_range
    assert len(oor) >= 2 and "Junco hyemalis" in set(oor.scientific_name)
    assert (oor.p_claim < 0.03).all() and (oor.nearest_km > 1000).all() and (oor.nearest_lon < -30).all()
    assert r.hpd_mass > 0.95 and r.distance_km > 5000
    assert any("Junco hyemalis" in e and "out of range" in e for e in r.evidence)


def test_check_species_any_detector_and_thresholds(one_thread):
    sp = pd.DataFrame({"scientific_name": ["Gymnorhina tibicen", "Dacelo novaeguineae"], "max_score": [0.9, 0.8]})
    aus = check_species(sp, -33.87, 151.21, week=20, opts=OPTS)
    eur = check_species(sp, 50.0, 10.0, week=20, opts=OPTS)
    assert aus.verdict == "consistent" and eur.verdict == "inconsistent" and eur.out_of_range.shape[0] == 2
    assert (eur.species.nearest_lat < 0).all()  # nearest occurrence: Australia / New Guinea
    one = check_species(sp.head(1), 50.0, 10.0, week=20, config=CheckConfig(min_out=2, hpd_level=0.999999), opts=OPTS)
    assert one.verdict in ("suspicious", "inconsistent") and len(one.out_of_range) == 1
    weak = check_species(sp.assign(max_score=0.2), 50.0, 10.0, week=20, opts=OPTS)  # below min_score: no species line
    assert weak.species.empty and any("no species detected" in e for e in weak.evidence)


@pytest.mark.parametrize("lat,lon", [(95, 0), (0, 200), (np.nan, 0)])
def test_bad_claim(lat, lon):
    sp = pd.DataFrame({"scientific_name": ["Turdus merula"], "max_score": [0.9]})
    with pytest.raises(ValueError, match="latitude"):
        check_species(sp, lat, lon, opts=OPTS)


def test_bad_config():
    with pytest.raises(ValueError):
        CheckConfig(range_threshold=0)
    with pytest.raises(ValueError):
        CheckConfig(min_out=0)
