"""Benchmark: BirdNET meta range model over the 0.5 deg global land gallery, all 6,522 species.

Times the TFLite interpreter and the torch port in the same run, on the same points and week,
and reports both times, the speed-up (tflite time / torch time) and the max abs difference.

    .venv/bin/python bench/bench_ranges.py            # full gallery (~86K points)
    .venv/bin/python bench/bench_ranges.py --small    # 2,000 points, a few seconds
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from soundloc import birdnet_meta as BM, ranges as R
from soundloc.sphere import land_grid


def run(small: bool = False, week: int | None = 20, device: str | None = None, step: float = 0.5) -> dict:
    """Time both backends on the land gallery -> dict of sizes, seconds, speed-up and max abs diff."""
    pts = land_grid(step)
    if small:
        pts = pts[np.random.default_rng(0).choice(len(pts), 2000, replace=False)]
    lat, lon = pts[:, 0], pts[:, 1]
    tfl = BM.BirdNETMetaTFLite()
    tor = BM.load_birdnet_meta_torch(device=device)
    for m in (tfl, tor):  # warm-up: allocation, weight packing, BLAS thread pools
        m.prob(lat[:512], lon[:512], week)
    if tor.device.type == "cuda":
        torch.cuda.synchronize()

    t0 = time.perf_counter()
    a = tfl.prob(lat, lon, week)
    t_tfl = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = tor.prob(lat, lon, week)  # returns host numpy, so includes the device->host copy
    t_tor = time.perf_counter() - t0

    diff = max(float(np.abs(a[i:i + 8192] - b[i:i + 8192]).max()) for i in range(0, len(a), 8192))
    return {
        "points": len(pts), "species": a.shape[1], "week": week,
        "gallery": f"land {step} deg" + (" (subset)" if small else ""),
        "tflite_s": t_tfl, "torch_s": t_tor, "speedup": t_tfl / t_tor, "max_abs_diff": diff,
        "torch_device": str(tor.device), "tflite_threads": tfl.num_threads, "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "cores": len(os.sched_getaffinity(0)),
    }


def main(argv=None) -> dict:
    """CLI entry: parse args, run, print the table and a one-line summary."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="2,000 random gallery points instead of all")
    ap.add_argument("--week", type=int, default=20, help="week 1-48, or -1 for year-round (default 20)")
    ap.add_argument("--device", default=None, help="torch device: cpu (default), cuda, auto")
    args = ap.parse_args(argv)
    r = run(args.small, args.week, args.device)
    n = r["points"]
    print(f"gallery: {r['gallery']}, {n} points x {r['species']} species, week {r['week']}")
    print(f"tflite ({r['tflite_threads']} threads): {r['tflite_s']:.2f} s  ({n / r['tflite_s']:,.0f} points/s)")
    print(f"torch  ({r['torch_device']}, {r['torch_threads']} threads): {r['torch_s']:.2f} s  "
          f"({n / r['torch_s']:,.0f} points/s)")
    print(f"ranges: {n} pts x {r['species']} spp | tflite {r['tflite_s']:.2f} s | torch[{r['torch_device']}] "
          f"{r['torch_s']:.2f} s | speed-up torch/tflite {r['speedup']:.2f}x | max abs diff {r['max_abs_diff']:.2e}")
    return r


if __name__ == "__main__":
    main()
