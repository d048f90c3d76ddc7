"""`soundloc locate` you can trust: robust evidence against a spurious species, credible regions in JSON/GeoJSON/maps,
weak evidence said (soundloc.locator, soundloc.evidence, soundloc.cli)."""
import json

import numpy as np
import pytest
import soundfile as sf
from shapely.geometry import Point, shape

from soundloc import sphere
from soundloc import locator as L
from soundloc.cli import main

SEATTLE = (47.6766, -122.294)
SPURIOUS = "Turdus merula"  # Eurasian Blackbird: absent from North America


@pytest.fixture(scope="module")
def seattle(mirror):
    return str(mirror / "audio" / "XC563936_soundscape.mp3")


@pytest.fixture(scope="module")
def seattle_species(seattle):
    from soundloc.detect import get_detector

    s = get_detector().detect(seattle, 0.0, 1.0).summary(0.1)
    return s.scientific_name.tolist(), s.max_score.tolist()


def test_a_spurious_species_moves_the_estimate_less_than_the_credible_radius(seattle_species, one_thread):
    names, w = seattle_species
    opts = L.LocateOptions(gallery="land1")
    clean, spiked = L.locate_species([names, names + [SPURIOUS]], [w, w + [0.69]], [11, 11], opts)
    a = L.describe("clean", "ranges", 11, clean.points, clean.posterior, 5, opts, prior=clean.prior)
    b = L.describe("spiked", "ranges", 11, spiked.points, spiked.posterior, 5, opts, prior=spiked.prior)
    moved = sphere.haversine(a.lat, a.lon, b.lat, b.lon)
    print(f"clean {a.lat, a.lon} ({a.error_km(*SEATTLE):.0f} km off), with {SPURIOUS}: {b.lat, b.lon} "
          f"({b.error_km(*SEATTLE):.0f} km off), moved {moved:.0f} km, 90 % radius {a.region(0.9).radius_km:.0f} km")
    assert moved < a.region(0.9).radius_km and b.error_km(*SEATTLE) < 1000
    # the injected species, and only it, is reported as disagreeing with the rest
    assert spiked.p_spurious[SPURIOUS] > L.SPURIOUS_P > max(v for k, v in spiked.p_spurious.items() if k != SPURIOUS)
    (wn,) = [x for x in spiked.warnings if x["code"] == "conflicting_species"]
    assert SPURIOUS in wn["message"] and not any(x["code"] == "conflicting_species" for x in clean.warnings)
    # eps = 0 is the plain product of ranges (no detection can be spurious)
    (plain,) = L.locate_species([names + [SPURIOUS]], [w + [0.69]], [11], L.LocateOptions(gallery="land1", fp_rate=0.0))
    assert set(plain.p_spurious.values()) == {0.0}


def test_locate_json_geojson_and_map_carry_the_credible_region(seattle, tmp_path, capsys, one_thread):
    gj, html = tmp_path / "r.geojson", tmp_path / "m.html"
    assert main(["locate", seattle, "--date", "2020-03-15", "--gallery", "land2", "--json", "--regions", str(gj),
                 "--decoder", "min_distance", "--map", str(html)]) == 0
    r = json.loads(capsys.readouterr().out)["results"][0]
    assert r["decoder"] == "min_distance" and [x["level"] for x in r["regions"]] == [0.5, 0.9]
    r50, r90 = r["regions"]
    assert 0 < r50["area_km2"] < r90["area_km2"] and r90["mass"] >= 0.9 and r["expected_error_km"] > 0
    assert r["info_gain_nats"] > L.WEAK_KL_NATS and r["warnings"] == [] and r["lat"] is not None
    # nine species: the list temperature T(9, g) = T1 + b log 9 + c redundancy >= T(9) of chapter 12, wider than one species'
    assert r["temperature"] >= L.list_temperature(9) - 1e-12 and r["temperature"] > L.list_temperature(1)
    fc = json.loads(gj.read_text())
    (f,) = fc["features"]
    assert f["properties"]["id"] == "XC563936_soundscape" and f["properties"]["level"] == 0.9
    assert f["properties"]["area_km2"] == pytest.approx(r90["area_km2"])
    g = shape(f["geometry"])
    assert g.is_valid and g.contains(Point(SEATTLE[1], SEATTLE[0]))  # lon first: the true place is inside
    assert not g.contains(Point(SEATTLE[0], SEATTLE[1]))
    text = html.read_text()
    assert "90 % credible region" in text and len(text) < 5e6


def test_noise_gives_no_point_a_warning_and_the_prior_region(tmp_path, capsys, one_thread):
    noise = tmp_path / "noise.wav"
    sf.write(noise, 0.01 * np.random.default_rng(0).standard_normal(48000 * 6), 48000)
    # BirdNET hears woodpeckers in white noise (max score 0.52): none passes a 0.9 threshold
    assert main(["locate", str(noise), "--gallery", "land2", "--min-conf", "0.9", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)["results"][0]
    assert r["species"] == [] and r["lat"] is None and r["lon"] is None
    assert [w["code"] for w in r["warnings"]] == ["no_species"]
    assert r["regions"][1]["area_km2"] > 1e7  # the prior's region spans continents
    assert main(["locate", str(noise), "--gallery", "land2", "--min-conf", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "no location (no usable evidence)" in out and "WARNING (no_species)" in out and "best location" not in out


def test_weak_evidence_is_said_on_hand_made_posteriors():
    g = sphere.uniform_grid(10.0)
    prior = np.full(len(g), 1.0 / len(g))
    opts = L.LocateOptions()
    weak = prior * (1 + 0.1 * np.cos(np.deg2rad(g[:, 0])))
    near = sphere.haversine(45.0, 5.0, g[:, 0], g[:, 1]) < 1500
    strong = np.where(near, 1.0, 1e-3)
    lw = L.describe("w", "x", None, g, weak, 3, opts, prior=prior)
    ls = L.describe("s", "x", None, g, strong, 3, opts, prior=prior)
    assert lw.info_gain_nats < L.WEAK_KL_NATS < ls.info_gain_nats
    assert [w["code"] for w in lw.warnings] == ["weak_evidence"] and ls.warnings == []
    assert lw.region(0.9).area_km2 > 3 * ls.region(0.9).area_km2
    # a gallery that is not a lat/lon grid: no region, said
    pts = np.array([[10.0, 20.0], [30.0, 40.0]])
    ln = L.describe("n", "x", None, pts, np.array([0.25, 0.75]), 2, opts)
    assert ln.regions == [] and ln.warnings[0]["code"] == "no_region" and (ln.lat, ln.lon) == (30.0, 40.0)


def test_calibrated_regions_are_wider_than_raw(seattle, capsys, one_thread):
    base = ["locate", seattle, "--date", "2020-03-15", "--gallery", "land2", "--json"]
    assert main(base) == 0
    cal = json.loads(capsys.readouterr().out)["results"][0]
    locs = L.locate(seattle, "2020-03-15", opts=L.LocateOptions(gallery="land2", calibrate=False))
    raw = locs[0].to_dict()
    assert raw["temperature"] == 1.0 and cal["regions"][1]["area_km2"] > 1.5 * raw["regions"][1]["area_km2"]
