"""Per-week totals of a parameter sweep (chapter 05's grid): one range-model pass per week vs one per total, in one run.

Run: ``.venv/bin/python bench/bench_week_totals.py`` (about a minute on one CPU thread). The sweep of chapter 05
(SMALL: land2 gallery, BirdNET V2.4's 6,522 species) needs, for every week of its lists, the absence total of the
detectability it tries and the expected richness: both sums over all species of the same (N, S) probabilities.
Each form runs cold in its own empty cache folder; the totals must be identical.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch


def _cold(weeks, grid, prepare: bool) -> tuple[float, dict]:
    """Build every total ``grid`` needs for ``weeks`` in a fresh cache folder -> (seconds, totals)."""
    from soundloc.range_geolocation import RangeGeolocator, RangeLocConfig, gallery
    from soundloc.ranges import load_range_model

    with tempfile.TemporaryDirectory() as d:
        os.environ["SOUNDLOC_DATA"] = d
        loc = RangeGeolocator(load_range_model("birdnet", "torch"), gallery("land2"), RangeLocConfig(prior_weight=0.0),
                              gallery_name="land2")
        t = time.perf_counter()
        if prepare:
            loc.prepare_weeks(weeks, grid)
        for kw in grid:  # what locate asks for, per variant and week (cache hits after prepare_weeks)
            v = loc.with_config(**kw)
            for w in weeks:
                if v.config.absence_weight > 0:
                    v.absence_total(w)
                if v.config.richness_weight > 0:
                    v.richness(w)
        return time.perf_counter() - t, dict(loc._totals)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weeks", type=int, default=8, help="distinct weeks swept (chapter 05's lists span ~40)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    weeks = list(np.linspace(1, 48, a.weeks).round().astype(int))
    # chapter 05's SMALL grid: richness weight 0 or 1, presences only or absences with detectability 0.1
    grid = [dict(richness_weight=g, absence_weight=aw, detectability=dt) for g in (0.0, 1.0)
            for aw, dt in ((0.0, 1.0), (1.0, 0.1))]
    t_lazy, lazy = _cold(weeks, grid, prepare=False)
    t_ours, ours = _cold(weeks, grid, prepare=True)
    same = lazy.keys() == ours.keys() and all(np.array_equal(lazy[k], ours[k]) for k in lazy)
    print(f"SUMMARY per-week totals of chapter 05's sweep, {a.weeks} weeks x land2 x 6,522 species: one pass per "
          f"total {t_lazy:.1f} s, one pass per week (prepare_weeks) {t_ours:.1f} s, speed-up {t_lazy / t_ours:.2f}x; "
          f"totals identical: {same}")
    return {"bench": "week_totals", "lazy_s": t_lazy, "ours_s": t_ours, "speedup": t_lazy / t_ours, "identical": same}


if __name__ == "__main__":
    main()
