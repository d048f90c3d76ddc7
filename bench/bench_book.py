"""Benchmark: wall time of each book chapter in SMALL mode, as a ratio to a fixed reference workload.

Run: ``.venv/bin/python bench/bench_book.py [CHAPTER ...] [--calib-rounds 3]``.
Each chapter runs headlessly through ``soundloc.runner.run_notebook`` with ``SMALL=True`` and
``OUT`` a temporary folder (figures/ is not touched; data caches are used as found, so a first
run after a clean checkout also pays for building them). Shared, noisy machines make seconds
incomparable across runs, so a fixed numpy/BLAS calibration task (matrix products, FFTs, a sort:
about one second on one core) is timed before and after the chapters in the same process, and
every chapter's time is also printed in "calibration units" (chapter seconds / calibration
seconds). The drift of the calibration between before and after says how much the machine's load
changed during the run; the 1-minute load average is printed at both ends.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np


def calibration_task() -> float:
    """A fixed CPU workload (BLAS matmul, FFT, sort; single-threaded BLAS is not forced) -> checksum."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((384, 384))
    acc = 0.0
    for _ in range(12):
        a = np.tanh(a @ a.T / 384.0)
        acc += float(a[0, 0])
    x = rng.standard_normal(1 << 20)
    for _ in range(6):
        acc += float(np.abs(np.fft.rfft(x)).sum() * 1e-9)
    acc += float(np.sort(rng.standard_normal(2_000_000))[1000])
    return acc


def time_calibration(rounds: int) -> tuple[float, list[float]]:
    """Best of ``rounds`` timings of the calibration task -> (best seconds, all rounds)."""
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        calibration_task()
        ts.append(time.perf_counter() - t0)
    return min(ts), ts


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def main(argv=None) -> int:
    from soundloc.runner import chapters, find_chapter, run_notebook

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("chapters", nargs="*", help="chapter numbers/stems (default: every chapter)")
    ap.add_argument("--calib-rounds", type=int, default=3, help="calibration rounds before and after (best is used)")
    ap.add_argument("--timeout", type=int, default=1800, help="per-cell timeout (s) passed to papermill")
    args = ap.parse_args(argv)
    srcs = [find_chapter(k) for k in args.chapters] if args.chapters else chapters()

    load0 = _load()
    cal0, r0 = time_calibration(args.calib_rounds)
    print(f"calibration before: best {cal0:.3f} s, rounds {[round(t, 3) for t in r0]}; load average {load0:.2f}; "
          f"cpu count {os.cpu_count()}", flush=True)
    results: list[tuple[str, float | None, str]] = []
    with tempfile.TemporaryDirectory(prefix="soundloc-bench-book-") as tmp:
        for src in srcs:
            out = Path(tmp) / src.stem
            t0 = time.perf_counter()
            try:
                run_notebook(src, {"SMALL": True, "OUT": str(out)}, out_dir=out / "executed",
                             timeout=args.timeout, progress=False)
                status = "ok"
            except Exception as e:  # a failing chapter is reported, the others still run
                status = f"FAILED ({type(e).__name__}: {str(e).strip().splitlines()[-1][:160] if str(e).strip() else ''})"
                traceback.print_exc(limit=1)
            dt = time.perf_counter() - t0
            results.append((src.stem, dt, status))
            print(f"{src.stem}: {dt:.1f} s ({dt / cal0:.1f} calibration units) {status}", flush=True)
    cal1, r1 = time_calibration(args.calib_rounds)
    load1 = _load()
    cal = (cal0 + cal1) / 2
    print(f"calibration after: best {cal1:.3f} s, rounds {[round(t, 3) for t in r1]}; load average {load1:.2f}; "
          f"drift after/before {cal1 / cal0:.2f}x", flush=True)
    print(f"{'chapter':<22s} {'seconds':>8s} {'units':>7s}  status")
    for stem, dt, status in results:
        print(f"{stem:<22s} {dt:8.1f} {dt / cal:7.1f}  {status}")
    total = sum(dt for _, dt, _ in results)
    n_ok = sum(s == "ok" for _, _, s in results)
    per = ", ".join(f"{stem.split('_')[0]} {dt:.0f} s = {dt / cal:.0f} u" + ("" if s == "ok" else " (failed)")
                    for stem, dt, s in results)
    print(f"SUMMARY book bench (SMALL, {n_ok}/{len(results)} chapters ok): {per}; total {total:.0f} s = "
          f"{total / cal:.0f} calibration units (1 u = {cal:.2f} s here, drift {cal1 / cal0:.2f}x, "
          f"load {load0:.1f} -> {load1:.1f})")
    return 0 if n_ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
