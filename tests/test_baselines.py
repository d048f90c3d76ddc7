"""The naive baseline: each random draw scored by the benchmark metric, then the scores averaged."""
import numpy as np
import pytest

from soundloc.baselines import naive_errors, naive_row


def test_naive_row_scores_each_draw_before_averaging_on_a_hand_case():
    # one query at (0, 0); references on the equator at 100 km and 5,000 km away
    km_per_deg = np.pi * 6371.0 / 180
    true = np.array([[0.0, 0.0]])
    ref = np.array([[0.0, 100 / km_per_deg], [0.0, 5000 / km_per_deg]])
    seeds = [0, 1, 2, 3, 4, 5]
    picks = np.array([naive_errors(true, ref, s)[0] for s in seeds])
    near = np.isclose(picks, 100, atol=1e-6)
    assert near.any() and (~near).any()  # the seeds draw both references
    row = naive_row("naive", true, ref, seeds)
    # each draw: median = its one distance; region (200 km) accuracy 100 % or 0 %
    assert row["median_km"] == pytest.approx(np.mean(picks))
    assert row["region_%"] == pytest.approx(100 * near.mean())
    assert row["region_% sd"] == pytest.approx(100 * np.std(near, ddof=1))
    assert row["median_km sd"] == pytest.approx(np.std(picks, ddof=1))
    assert row["n"] == 1 and row["draws"] == 6
    # averaging the errors over draws first (the old chapter 05) would give one distance, never within 200 km
    assert np.mean(picks) > 200 and row["region_%"] > 0


def test_naive_row_single_draw_has_zero_spread_and_no_seeds_is_an_error():
    true = np.array([[10.0, 10.0], [20.0, 20.0]])
    row = naive_row("n", true, true, [3], exclude_self=True)
    assert row["median_km sd"] == 0 and row["draws"] == 1
    assert row["median_km"] == pytest.approx(np.median(naive_errors(true, true, 3, exclude_self=True)))
    with pytest.raises(ValueError, match="seed"):
        naive_row("n", true, true, [])


def test_chapters_00_and_05_draw_the_same_xcdc_naive_row():
    """Both chapters call naive_row(XCDC truth, iNatSounds test locations, seeds SEED..SEED+2): same row."""
    import re
    from pathlib import Path

    nb = Path(__file__).resolve().parents[1] / "notebooks"
    c00, c05 = (nb / "00_data.py").read_text(), (nb / "05_xcdc.py").read_text()
    assert "naive_errors" not in c05 and "naive_row(" in c00 and "naive_row(" in c05
    assert re.search(r"seeds = range\(ch\.seed, ch\.seed \+ NAIVE_SEEDS\)", c00) and "NAIVE_SEEDS = 3" in c00
    assert re.search(r"naive_row\(\"Naive: random iNatSounds test location\", truth, inat\[\[\"lat\", \"lon\"\]\]"
                     r"\.to_numpy\(\), range\(SEED, SEED \+ 3\)\)", c05)
    from soundloc.data import load_inat, load_xcdc

    xcdc, inat = load_xcdc(), load_inat()
    a = naive_row("x", xcdc[["lat", "lon"]].to_numpy(), inat[["lat", "lon"]].to_numpy(), range(0, 3))
    # chapter 00's committed XCDC row before this fix (it already scored each draw): 7,647 km, 5.84 / 22.92 %
    assert a["median_km"] == pytest.approx(7646.73, abs=0.01) and a["continent_%"] == pytest.approx(22.92, abs=0.01)
    assert a["country_%"] == pytest.approx(5.84, abs=0.01) and a["median_km sd"] == pytest.approx(265.8, abs=0.1)


def test_best_on_val_picks_by_validation_not_test():
    """A family's best member is the one best on the validation split, whatever the test split says."""
    import pandas as pd

    from soundloc.table1 import BaselineResult

    test = {"a": np.full(10, 100.0), "b": np.full(10, 900.0)}  # on the test split a looks best
    val = {"a": np.array([150.0] * 4 + [300.0] * 6),        # validation median 300 km, 4 of 10 within 200 km
           "b": np.array([120.0] * 3 + [3000.0] * 7)}       # median 3,000 km, 3 of 10 within 200 km
    val["c"] = np.array([100.0] * 5 + [4000.0] * 5)         # median 2,050 km, 5 of 10 within 200 km
    r = BaselineResult(pd.DataFrame(), test, {}, {}, 0.0, val_errors=val)
    assert r.best_on_val(["a", "b", "c"]) == "a"
    assert r.best_on_val(["a", "b", "c"], "region") == "c"  # higher is better for accuracies
    assert r.best_on_val(["b", "c"]) == "c"
    assert r.best_on_val(["a", "a"]) == "a"
    with pytest.raises(KeyError, match=r"no validation errors for \['z'\]"):
        r.best_on_val(["a", "z"])
