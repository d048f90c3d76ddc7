"""Level recalibration (split conformal on the mass above the truth, soundloc.calibration) on hand-made data."""
import numpy as np
import pytest

from soundloc import calibration as C, regions as RG, sphere


def test_conformal_level_is_the_ceil_n_plus_1_p_th_smallest():
    a = np.array([0.7, 0.1, 0.5, 0.3, 0.9, 0.2, 0.6, 0.4, 0.8])  # n = 9: (n + 1) p = 5, 8, 9, 9.5
    q = C.conformal_levels(a, [0.5, 0.8, 0.9, 0.95])
    assert q[:3] == pytest.approx([0.5, 0.8, 0.9]) and q[3] == 1.0  # k = 5, 8, 9 (not 10: rounding), then k > n
    assert (q[:3] > [0.5, 0.8, 0.9]).all()  # just above: the k-th smallest truth itself is inside (a < q)
    assert [(a < v).sum() for v in q[:3]] == [5, 8, 9]
    # the recalibrated mass above is r / (n + 1): inside iff < p, the same regions as q(p) below 1
    test = np.array([0.05, 0.5, 0.55, 0.95])
    r = C.conformal_above(a, test)
    assert r == pytest.approx(np.array([0, 4, 5, 9]) / 10)
    for p, v in zip([0.5, 0.8, 0.9], q):
        assert ((r < p) == (test < v)).all()
    assert C.conformal_levels(np.zeros(19), [0.5])[0] > 0  # ties at 0 (truth in the densest cell): all inside
    with pytest.raises(ValueError, match="levels"):
        C.conformal_levels(a, [1.0])


def _shaped(R=600, seed=0):
    """Posteriors whose truths have Beta(0.3, 0.3)-distributed mass above (not uniform): right at p = 0.5, too
    narrow at p = 0.9, a shape one temperature cannot fix."""
    g = sphere.uniform_grid(5.0)
    areas = sphere.cell_areas(g, 5.0)
    rng = np.random.default_rng(seed)
    centres = g[rng.choice(np.flatnonzero(np.abs(g[:, 0]) < 50), R)]
    P = np.exp(-0.5 * (sphere.pairwise_km(centres, g) / 1500.0) ** 2) * areas
    P /= P.sum(1, keepdims=True)
    order = np.argsort(-P / areas, axis=1, kind="stable")
    before = np.cumsum(np.take_along_axis(P, order, 1), 1) - np.take_along_axis(P, order, 1)
    target = rng.beta(0.3, 0.3, R)
    truth = g[order[np.arange(R), np.minimum((before < target[:, None]).sum(1), len(g) - 1)]]
    return g, P, truth


def test_recalibration_fixes_a_shape_the_temperature_cannot():
    g, P, truth = _shaped()
    above = RG.mass_above_truth(g, P, truth[:, 0], truth[:, 1])
    assert np.mean(above < 0.9) < 0.85  # a miscalibrated shape
    folds = np.arange(len(P)) % 5
    tab, ab = C.crossfit_temperature(g, P, truth[:, 0], truth[:, 1], folds, [0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0], recalibrate=True)
    n = tab.groupby("level").n.sum()
    pooled = lambda col: (tab[col] * tab.n).groupby(tab.level).sum() / n  # noqa: E731
    gap_t, gap_r = pooled("coverage_calibrated") - n.index, pooled("coverage_recalibrated") - n.index
    assert gap_t.abs().max() > 0.05  # the temperature alone leaves a shape error
    assert gap_r.abs().max() < 0.03  # level recalibration from the other folds brings every level within a few points
    assert tab[["coverage_recalibrated", "level_recalibrated"]].stack().between(0, 1).all()
    assert (tab.median_area_recalibrated_km2 > 0).all()
    for f, (cal, rec) in ab.items():  # reliability input agrees with the table's regions
        t = tab[tab.fold == f]
        assert [(rec < p).mean() for p in t.level] == pytest.approx(t.coverage_recalibrated.tolist())
        assert [(cal < p).mean() for p in t.level] == pytest.approx(t.coverage_calibrated.tolist())
    # this toy's Gaussian rings tie in density; a row tempered alone and in a batch can rank a ring differently in
    # the last bits, which is why the table takes the reliability input's masses (failed on an AVX-512 CPU before)


def test_coverage_interval_is_as_wide_as_the_independent_evidence():
    """400 lists that are 40 sites x 10 near-copies: the coverage interval over sites is that of 40 lists, and a
    coverage 3 points off nominal on 400 independent lists is inside its interval (not a miss)."""
    from soundloc.calibration import coverage_ci, gap_change_ci
    rng = np.random.default_rng(0)
    a40 = rng.uniform(0, 1, 40)
    by_site = coverage_ci(np.repeat(a40, 10), [0.5], np.repeat(np.arange(40), 10)).iloc[0]
    alone = coverage_ci(a40, [0.5]).iloc[0]
    assert by_site.coverage == alone.coverage and by_site.hi - by_site.lo == pytest.approx(alone.hi - alone.lo, rel=0.15)
    a = np.r_[np.full(188, 0.1), np.full(212, 0.9)]  # 47 % inside the 0.5-region
    t = coverage_ci(a, [0.5]).iloc[0]
    assert t.coverage == pytest.approx(0.47) and t.lo < 0.5 < t.hi
    g = gap_change_ci(a, a, [0.5])  # the same calibration twice: no change, a degenerate interval at 0
    assert g["diff"] == 0 and g["lo"] == g["hi"] == 0
    with pytest.raises(ValueError, match="labels for"):
        coverage_ci(a, [0.5], np.arange(3))
