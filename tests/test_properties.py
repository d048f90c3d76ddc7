"""Property tests (hypothesis) for the geometry and the metrics: haversine (numpy and torch), unit
vectors, H3 round trips, threshold accuracies. Examples are derandomised (the same on every run)."""
from __future__ import annotations

import math

import h3
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from soundloc import sphere
from soundloc.metrics import THRESHOLDS_KM, geo_metrics

R = sphere.EARTH_RADIUS_KM
PI_R = math.pi * R
TOL = 1e-3  # km: float64 haversine / law of cosines / arccos agree to about 0.1 m; 1 m leaves margin

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

lats = st.floats(-90, 90, allow_nan=False)
lons = st.floats(-180, 180, allow_nan=False)
points = st.tuples(lats, lons)
# points close to the special places: the poles and both sides of the antimeridian
near_pole = st.tuples(st.sampled_from([90.0, -90.0]), st.floats(0, 1e-3)).map(lambda t: math.copysign(abs(t[0]) - t[1], t[0]))
near_antimeridian = st.one_of(st.floats(179.0, 180.0), st.floats(-180.0, -179.0))
special_points = st.tuples(st.one_of(lats, near_pole), st.one_of(lons, near_antimeridian))
any_points = st.one_of(points, special_points)


def _law_of_cosines(la1, lo1, la2, lo2) -> float:
    p1, p2, dl = math.radians(la1), math.radians(la2), math.radians(lo2 - lo1)
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return R * math.acos(max(-1.0, min(1.0, c)))


def _vincenty(la1, lo1, la2, lo2) -> float:
    """The sphere's atan2 form: well conditioned at every distance (the reference near 0 and near pi R)."""
    p1, p2, dl = math.radians(la1), math.radians(la2), math.radians(lo2 - lo1)
    y = math.hypot(math.cos(p2) * math.sin(dl), math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl))
    x = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return R * math.atan2(y, x)


def _wrap(lon: float) -> float:
    return (lon + 180.0) % 360.0 - 180.0


# --------------------------------------------------------------------------- haversine (numpy)

@SETTINGS
@given(any_points, any_points)
def test_haversine_symmetric_bounded_and_zero_on_diagonal(a, b):
    d_ab = float(sphere.haversine(*a, *b))
    assert d_ab == pytest.approx(float(sphere.haversine(*b, *a)), abs=1e-9)
    assert 0.0 <= d_ab <= PI_R + 1e-9
    assert float(sphere.haversine(*a, *a)) == 0.0


@SETTINGS
@given(any_points, any_points)
def test_haversine_equals_law_of_cosines_and_atan2_forms(a, b):
    d = float(sphere.haversine(*a, *b))
    assert d == pytest.approx(_law_of_cosines(*a, *b), abs=TOL)
    assert d == pytest.approx(_vincenty(*a, *b), abs=TOL)


@SETTINGS
@given(any_points, any_points, st.integers(-3, 3), st.integers(-3, 3), st.floats(-360, 360))
def test_haversine_longitude_shifts_and_antimeridian(a, b, k1, k2, shift):
    """Shifting a longitude by 360 k changes nothing; rotating both by the same angle (wrapped into
    [-180, 180), so pairs end up straddling the antimeridian) changes nothing."""
    d = float(sphere.haversine(*a, *b))
    assert float(sphere.haversine(a[0], a[1] + 360 * k1, b[0], b[1] + 360 * k2)) == pytest.approx(d, abs=TOL)
    rotated = float(sphere.haversine(a[0], _wrap(a[1] + shift), b[0], _wrap(b[1] + shift)))
    assert rotated == pytest.approx(d, abs=TOL)


@SETTINGS
@given(lats, st.floats(0, 10), st.floats(0, 10))
def test_haversine_across_antimeridian_is_short_way_round(lat, e1, e2):
    """(lat, 180 - e1) to (lat, -180 + e2) is the short arc of e1 + e2 degrees of longitude, not 360 - e1 - e2."""
    d = float(sphere.haversine(lat, 180.0 - e1, lat, -180.0 + e2))
    assert d == pytest.approx(float(sphere.haversine(lat, -e1 / 2 - e2 / 2, lat, e1 / 2 + e2 / 2)), abs=TOL)
    assert d <= math.radians(e1 + e2) * R * math.cos(math.radians(lat)) + TOL  # at most the parallel's arc


@SETTINGS
@given(st.sampled_from([90.0, -90.0]), lons, lons, points)
def test_haversine_at_the_poles(pole, lon_a, lon_b, p):
    """At a pole longitude means nothing, and the distance to any point is R x its colatitude."""
    d = float(sphere.haversine(pole, lon_a, *p))
    assert d == pytest.approx(float(sphere.haversine(pole, lon_b, *p)), abs=TOL)
    assert d == pytest.approx(R * math.radians(abs(pole - p[0])), abs=TOL)
    assert float(sphere.haversine(pole, lon_a, -pole, lon_b)) == pytest.approx(PI_R, abs=TOL)


@SETTINGS
@given(any_points, any_points, any_points)
def test_haversine_triangle_inequality(a, b, c):
    assert sphere.haversine(*a, *c) <= sphere.haversine(*a, *b) + sphere.haversine(*b, *c) + TOL


@SETTINGS
@given(st.lists(any_points, min_size=1, max_size=8), st.lists(any_points, min_size=1, max_size=8))
def test_pairwise_km_and_unit_vectors(a, b):
    """pairwise_km (via unit vectors, "exact to ~1 m") agrees with haversine; to_xyz / to_latlon round trip."""
    A, B = np.array(a, float), np.array(b, float)
    want = sphere.haversine(A[:, None, 0], A[:, None, 1], B[None, :, 0], B[None, :, 1])
    np.testing.assert_allclose(sphere.pairwise_km(A, B), want, atol=TOL)
    back = sphere.to_latlon(sphere.to_xyz(A[:, 0], A[:, 1]))
    np.testing.assert_allclose(np.linalg.norm(sphere.to_xyz(A[:, 0], A[:, 1]), axis=1), 1.0, atol=1e-12)
    # to_latlon takes arcsin(z), ill-conditioned within ~1e-7 deg of a pole: there the round trip is good to ~1 cm
    np.testing.assert_allclose(sphere.haversine(A[:, 0], A[:, 1], back[:, 0], back[:, 1]), 0.0, atol=1e-4)


# --------------------------------------------------------------------------- haversine (torch)

# haversine_torch clamps h to [1e-12, 1 - 1e-7] so that d/dh asin(sqrt(h)) stays finite; that bounds
# how far it may sit from the exact value: at most 2R asin(1e-6) (~13 m) near 0 and
# 2R (pi/2 - asin(sqrt(1 - 1e-7))) (~4 km) near the antipode.
TORCH_FLOOR_KM = 2 * R * math.asin(math.sqrt(1e-12))
TORCH_CAP_KM = 2 * R * (math.pi / 2 - math.asin(math.sqrt(1 - 1e-7)))


@SETTINGS
@given(st.lists(st.tuples(any_points, any_points), min_size=1, max_size=16))
def test_haversine_torch_matches_numpy(pairs):
    a = np.array([p for p, _ in pairs], float)
    b = np.array([q for _, q in pairs], float)
    want = sphere.haversine(a[:, 0], a[:, 1], b[:, 0], b[:, 1])
    got = sphere.haversine_torch(torch.tensor(a), torch.tensor(b)).numpy()
    assert got.shape == want.shape
    assert (np.abs(got - want) <= np.maximum(TORCH_FLOOR_KM, TORCH_CAP_KM * (want > PI_R - 10)) + TOL).all()
    ok = (want > 1.0) & (want < PI_R - 10)  # away from both clamps: equal to float64 precision
    np.testing.assert_allclose(got[ok], want[ok], atol=TOL)
    # symmetric, near zero on the diagonal, bounded by pi R, also in float32 (the models' dtype)
    ta, tb = torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
    d32 = sphere.haversine_torch(ta, tb)
    assert torch.allclose(d32, sphere.haversine_torch(tb, ta), atol=1e-3)
    assert (sphere.haversine_torch(ta, ta) <= TORCH_FLOOR_KM + 1e-3).all()
    assert ((d32 >= 0) & (d32 <= PI_R)).all()
    assert np.abs(d32.double().numpy() - want).max() <= TORCH_CAP_KM + 1.0  # float32: within ~1 km + the cap


@SETTINGS
@given(points, points)
def test_haversine_torch_gradient_finite(a, b):
    """The clamp's purpose: finite gradients everywhere, including a == b and antipodes."""
    for q in (b, a, (-a[0], _wrap(a[1] + 180))):
        x = torch.tensor([a], dtype=torch.float64, requires_grad=True)
        sphere.haversine_torch(x, torch.tensor([q], dtype=torch.float64)).sum().backward()
        assert torch.isfinite(x.grad).all()


# --------------------------------------------------------------------------- H3

def _cell_radius_km(cell: str) -> float:
    """Largest centre-to-vertex distance of a cell (the farthest a point inside it can be from its centre)."""
    c = h3.cell_to_latlng(cell)
    return max(float(sphere.haversine(c[0], c[1], la, lo)) for la, lo in h3.cell_to_boundary(cell))


@SETTINGS
@given(st.lists(any_points, min_size=1, max_size=6), st.integers(0, 9))
def test_h3_point_cell_centre_round_trip(pts, res):
    lat, lon = np.array(pts, float).T
    cells = sphere.h3_cells(lat, lon, res)
    centres = sphere.h3_centers(cells)
    assert centres.shape == (len(pts), 2)
    for (la, lo), cell, (cla, clo) in zip(pts, cells, centres):
        assert h3.get_resolution(cell) == res
        assert float(sphere.haversine(la, lo, cla, clo)) <= _cell_radius_km(cell) * (1 + 1e-6) + 1e-6
        assert h3.latlng_to_cell(cla, clo, res) == cell  # the centre lies in its own cell
    np.testing.assert_array_equal(sphere.h3_cells(centres[:, 0], centres[:, 1], res), cells)


@SETTINGS
@given(any_points, st.integers(1, 9), st.integers(1, 9))
def test_h3_parent_contains_child(p, res, up):
    cell = h3.latlng_to_cell(*p, res)
    parent_res = max(0, res - up)
    parent = h3.cell_to_parent(cell, parent_res)
    assert h3.get_resolution(parent) == parent_res
    pos = h3.cell_to_child_pos(cell, parent_res)  # the cell's place among the parent's descendants
    assert 0 <= pos < h3.cell_to_children_size(parent, res)
    assert h3.child_pos_to_cell(parent, res, pos) == cell
    if res - parent_res <= 2:  # listing 7**k descendants is cheap only for small k
        assert cell in h3.cell_to_children(parent, res)
    # one level up, the child's centre lies inside the parent cell (deeper, H3 nesting is only approximate)
    one_up = h3.cell_to_parent(cell, res - 1)
    assert h3.latlng_to_cell(*h3.cell_to_latlng(cell), res - 1) == one_up


def test_h3_pentagons_nest():
    """The 12 pentagons of each resolution (not drawn at random) obey the same one-level nesting."""
    for res in range(1, 6):
        for pent in h3.get_pentagons(res):
            parent = h3.cell_to_parent(pent, res - 1)
            assert h3.is_pentagon(parent)
            for child in h3.cell_to_children(parent, res):
                assert h3.latlng_to_cell(*h3.cell_to_latlng(child), res - 1) == parent


# --------------------------------------------------------------------------- metrics

errors = st.lists(st.floats(0, PI_R, allow_nan=False), min_size=1, max_size=60)


@SETTINGS
@given(errors, st.lists(st.floats(0, 5000, allow_nan=False), min_size=60, max_size=60))
def test_metric_thresholds_monotone(d, worse_by):
    m = geo_metrics(d)
    accs = [m[k] for k in sorted(THRESHOLDS_KM, key=THRESHOLDS_KM.get)]
    assert all(0.0 <= x <= 1.0 for x in accs)
    assert accs == sorted(accs)  # a larger radius never has a lower accuracy
    for k, t in THRESHOLDS_KM.items():
        assert m[k] == sum(x <= t for x in d) / len(d)  # "<=": an error equal to the threshold counts
    assert min(d) <= m["median_error"] <= max(d) and min(d) <= m["mean_error"] <= max(d) + 1e-9
    # larger errors never raise an accuracy nor lower the median
    w = geo_metrics(np.asarray(d) + np.asarray(worse_by[: len(d)]))
    assert all(w[k] <= m[k] for k in THRESHOLDS_KM)
    assert w["median_error"] >= m["median_error"]


def test_metrics_reject_empty_and_nonfinite():
    with pytest.raises(ValueError, match="^no distances to summarise$"):
        geo_metrics([])
    with pytest.raises(ValueError, match="^2 non-finite distances$"):
        geo_metrics([1.0, float("nan"), float("inf")])


@SETTINGS
@given(points, points)
def test_metrics_on_haversine_errors_are_symmetric(a, b):
    """Swapping prediction and truth gives the same error, hence the same metrics."""
    assume(a != b)
    assert geo_metrics([sphere.haversine(*a, *b)]) == geo_metrics([sphere.haversine(*b, *a)])
