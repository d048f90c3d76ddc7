"""Credible regions as GeoJSON, decoders, expected distances and coverage on hand-made posteriors (soundloc.regions)."""
import json

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from soundloc import calibration as C, sphere, regions as RG


def _fiji_posterior(step=1.0):
    g = sphere.uniform_grid(step)
    d = sphere.haversine(-17.5, 179.5, g[:, 0], g[:, 1])
    p = np.exp(-0.5 * (d / 150.0) ** 2)  # a 150 km bump centred on the 179.5 E cell, so both sides of 180 hold mass
    return g, p / p.sum()


def test_grid_step_reads_galleries_and_rejects_scattered_points():
    assert RG.grid_step(sphere.uniform_grid(0.5)) == 0.5
    assert RG.grid_step(sphere.uniform_grid(2.0)[::7]) == 2.0
    with pytest.raises(ValueError, match="not centres"):
        RG.grid_step(np.array([[10.0, 20.0], [30.0, 40.0]]))


def test_fiji_region_is_valid_rfc7946_split_at_the_antimeridian(tmp_path):
    g, p = _fiji_posterior()
    (r,) = RG.credible_regions(g, p, levels=[0.9])
    geom = RG.cells_geometry(g, r.cells, 1.0)
    feat = RG.region_feature("fiji", geom, r.level, r.area_km2)
    RG.write_geojson([feat], tmp_path / "r.geojson")
    fc = json.loads((tmp_path / "r.geojson").read_text())
    assert fc["type"] == "FeatureCollection" and fc["features"][0]["properties"] == {"id": "fiji", "level": 0.9,
                                                                                     "area_km2": r.area_km2}
    back = shape(fc["features"][0]["geometry"])
    assert back.is_valid and back.geom_type == "MultiPolygon" and len(back.geoms) == 2
    xs = np.concatenate([np.asarray(q.exterior.coords)[:, 0] for q in back.geoms])
    ys = np.concatenate([np.asarray(q.exterior.coords)[:, 1] for q in back.geoms])
    assert xs.min() == -180 and xs.max() == 180 and np.all(np.abs(ys) < 40)  # lon first, split at +-180
    east, west = sorted(back.geoms, key=lambda q: q.bounds[0])[::-1]
    assert east.bounds[2] == 180 and west.bounds[0] == -180
    assert all(q.exterior.is_ccw for q in back.geoms)  # RFC 7946: exterior rings counter-clockwise
    # the polygon covers exactly the region's cells: planar area in degrees^2 equals the cell count
    assert back.area == pytest.approx(len(r.cells))
    assert r.area_km2 == pytest.approx(sphere.cell_areas(g[r.cells], 1.0).sum()) and r.mass >= 0.9


def test_region_geometry_has_holes_and_merged_runs():
    g = sphere.uniform_grid(1.0)
    ring = (np.abs(g[:, 0] - 10.5) <= 1) & (np.abs(g[:, 1] - 20.5) <= 1) & ~((g[:, 0] == 10.5) & (g[:, 1] == 20.5))
    geom = RG.cells_geometry(g, np.flatnonzero(ring), 1.0)
    (poly,) = geom.geoms
    assert poly.is_valid and len(poly.interiors) == 1 and poly.area == pytest.approx(8.0)


def test_coverage_on_hand_made_posteriors():
    g = sphere.uniform_grid(10.0)  # 648 cells
    areas = sphere.cell_areas(g, 10.0)
    eq = np.flatnonzero(np.abs(g[:, 0] - 5) < 1e-9)[:4]  # four equal-area cells on the 5 N row
    P = np.zeros((4, len(g)))
    P[:, eq] = areas[eq] * np.array([0.4, 0.3, 0.2, 0.1])  # densities in that order, masses 0.4/0.3/0.2/0.1
    P /= P.sum(1, keepdims=True)
    truth = g[eq]  # recording r's truth lies in the r-th densest cell
    above = RG.mass_above_truth(g, P, truth[:, 0], truth[:, 1])
    assert above == pytest.approx([0.0, 0.4, 0.7, 0.9])
    cov = RG.coverage_table(g, P, truth[:, 0], truth[:, 1], levels=(0.3, 0.5, 0.8, 0.95)).set_index("level")
    # 0.3: {c0} -> 1/4; 0.5: {c0, c1} -> 2/4; 0.8: {c0, c1, c2} -> 3/4; 0.95: all -> 4/4
    assert cov.coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert cov.median_area_km2.loc[0.5] == pytest.approx(2 * areas[eq[0]])
    # agrees with membership in sphere.credible_set for every level
    for lv in (0.3, 0.5, 0.8, 0.95):
        inside = sphere.credible_set(RG.log_density(P, areas), areas, lv)[np.arange(4), eq]
        assert (above < lv).tolist() == inside.tolist()


def test_truth_in_a_cell_missing_from_the_gallery_uses_the_nearest_point():
    g = sphere.uniform_grid(1.0)
    g = g[~((g[:, 0] == 0.5) & (g[:, 1] == 0.5))]
    idx = RG.true_cells(g, [0.7, 45.2], [0.6, -3.9])
    assert sphere.haversine(g[idx[0], 0], g[idx[0], 1], 0.7, 0.6) < 120 and tuple(g[idx[1]]) == (45.5, -3.5)


def test_decoders_and_expected_distance_on_a_bimodal_posterior():
    g = sphere.uniform_grid(1.0)
    a, b = np.flatnonzero((g[:, 0] == 0.5) & (g[:, 1] == 0.5))[0], np.flatnonzero((g[:, 0] == 0.5) & (g[:, 1] == 20.5))[0]
    near_b = np.flatnonzero((sphere.haversine(0.5, 20.5, g[:, 0], g[:, 1]) < 200) & (np.arange(len(g)) != b))
    p = np.zeros(len(g))
    p[a] = 0.3  # one sharp peak ...
    p[near_b] = 0.7 / len(near_b)  # ... against a wider, heavier mode
    assert RG.decode(g, p, "argmax") == (0.5, 0.5)
    lat, lon = RG.decode(g, p, "mass_within", radius_km=300)
    assert sphere.haversine(lat, lon, 0.5, 20.5) < 200
    # expected distance at the argmax: 0.7 x (distance to the wide mode's cells, about 2,220 km)
    d_a = RG.expected_distance_km(g, p, 0.5, 0.5)[0]
    assert d_a == pytest.approx(0.7 * sphere.haversine(0.5, 0.5, g[near_b, 0], g[near_b, 1]).mean(), rel=1e-6)
    lat, lon = RG.decode(g, p, "min_distance")
    assert RG.expected_distance_km(g, p, lat, lon)[0] < d_a and sphere.haversine(lat, lon, 0.5, 20.5) < 200
    with pytest.raises(ValueError, match="decoder"):
        RG.decode(g, p, "mean")


def test_temperature_widens_regions():
    g, p = _fiji_posterior(2.0)
    areas = sphere.cell_areas(g, 2.0)
    P = np.stack([p, RG.temper(p[None], 2.0, areas)[0]])
    a = RG.coverage_table(g, P, [-17.0, -17.0], [179.0, 179.0], levels=(0.9,)).median_area_km2.iloc[0]
    r0, r1 = (RG.credible_regions(g, q, [0.9])[0].area_km2 for q in P)
    assert r1 > 1.5 * r0 and a == pytest.approx((r0 + r1) / 2)
    assert RG.temper(p[None], 1.0, areas)[0] == pytest.approx(p)


def test_crossfit_temperature_recovers_an_overconfident_posterior():
    """Truths drawn from a posterior twice as wide as the one reported: T chosen on one fold fixes the other's coverage."""
    g = sphere.uniform_grid(2.0)
    areas = sphere.cell_areas(g, 2.0)
    rng = np.random.default_rng(0)
    R = 400
    centres = g[rng.choice(np.flatnonzero(np.abs(g[:, 0]) < 50), R)]
    d = sphere.pairwise_km(centres, g)
    reported = np.exp(-0.5 * (d / 300.0) ** 2) * areas  # the posterior says 300 km ...
    truth_p = np.exp(-0.5 * (d / 600.0) ** 2) * areas  # ... the truth spreads 600 km (log density / 4: T = 4)
    truth = g[[rng.choice(len(g), p=p / p.sum()) for p in truth_p]]
    folds = np.arange(R) % 2
    tab, above = C.crossfit_temperature(g, reported / reported.sum(1, keepdims=True), truth[:, 0], truth[:, 1], folds,
                                        [1.0, 2.0, 4.0, 8.0])
    assert set(tab.temperature) == {4.0}
    assert (tab.coverage_raw < tab.level - 0.15).all() and (abs(tab.coverage_calibrated - tab.level) < 0.08).all()
    rel = C.reliability(above[0], [0.5, 0.9])
    assert rel.coverage.tolist() == [(above[0] < 0.5).mean(), (above[0] < 0.9).mean()]


def test_list_temperature_grows_with_redundancy():
    """T(k, g) = T1 + b log k + c max(0, -log max(g/k, floor)): one species and informative lists get no extra term."""
    k, g = np.array([1, 10, 10, 10]), np.array([0.01, 10.0, 1.0, 0.0])
    r = C.redundancy(k, g)
    assert r[0] == 0 and r[1] == 0 and r[2] == pytest.approx(np.log(10)) and r[3] == pytest.approx(-np.log(C.GAIN_FLOOR))
    T = C.list_temperature(k, 0.9, 0.5, g, 1.0)
    assert T == pytest.approx(0.9 + 0.5 * np.log(k) + r)
    assert C.list_temperature(k, 0.9, 0.5) == pytest.approx(0.9 + 0.5 * np.log(k))
