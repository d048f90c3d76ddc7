"""Cell areas of lat/lon grids and the mass/credible-set helpers built on them (soundloc.sphere)."""
import numpy as np
import pytest

from soundloc import sphere


def test_full_grid_areas_sum_to_the_sphere():
    for step in (1.0, 2.5, 10.0):
        g = sphere.uniform_grid(step)
        assert sphere.cell_areas(g, step).sum() == pytest.approx(4 * np.pi * sphere.EARTH_RADIUS_KM ** 2, rel=1e-12)


def test_cell_area_agrees_with_pyproj_geodesic_on_a_sphere():
    from pyproj import Geod
    from shapely.geometry import box

    geod = Geod(a=sphere.EARTH_RADIUS_KM * 1000, b=sphere.EARTH_RADIUS_KM * 1000)
    pts = np.array([[0.5, 10.5], [45.5, -120.5], [-80.5, 3.5], [89.5, 0.5]])
    ours = sphere.cell_areas(pts, 1.0)
    for (la, lo), a in zip(pts, ours):
        ref = abs(geod.geometry_area_perimeter(box(lo - 0.5, la - 0.5, lo + 0.5, la + 0.5).segmentize(0.01))[0]) / 1e6
        assert a == pytest.approx(ref, rel=1e-4)


def test_uniform_density_gives_equal_mass_per_km2_at_equator_and_80_degrees():
    g = sphere.uniform_grid(1.0)
    areas = sphere.cell_areas(g, 1.0)
    m = np.exp(sphere.log_masses(np.zeros(len(g)), areas))
    assert m.sum() == pytest.approx(1.0)
    eq, pole = np.abs(g[:, 0] - 0.5) < 1e-9, np.abs(g[:, 0] + 79.5) < 1e-9
    assert (m[eq] / areas[eq]).mean() == pytest.approx((m[pole] / areas[pole]).mean(), rel=1e-12)
    assert m[pole].sum() / m[eq].sum() == pytest.approx(np.cos(np.deg2rad(79.5)), rel=1e-3)


def test_credible_set_ranks_by_density_on_a_hand_case():
    areas = np.array([1.0, 10.0, 1.0, 1.0])
    dens = np.log(np.array([0.30, 0.04, 0.20, 0.10]))  # masses 0.3, 0.4, 0.2, 0.1
    assert sphere.credible_set(dens, areas, 0.5).tolist() == [True, False, True, False]  # 0.3 + 0.2 = 0.5
    assert sphere.credible_set(dens, areas, 0.55).tolist() == [True, False, True, True]  # + 0.1 = 0.6
    assert sphere.credible_set(dens, areas, 0.65).tolist() == [True, True, True, True]
    batch = sphere.credible_set(np.stack([dens, dens[::-1]]), areas, 0.5)
    assert batch[0].tolist() == [True, False, True, False] and batch.shape == (2, 4)
    with pytest.raises(ValueError, match="level"):
        sphere.credible_set(dens, areas, 0.0)
