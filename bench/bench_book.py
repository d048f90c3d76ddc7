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

Memory: a sampling thread sums the resident set size of this process and all its descendants (the
papermill kernel and any workers it starts) every 0.2 s, and each chapter's peak is printed beside
the 8 GB budget of the spec (a sum of RSS counts shared pages once per process: an upper bound).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import psutil


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


BUDGET_GB = 8.0  # SPEC section 7: make book on 2 CPU cores and 8 GB of memory


class TreeRSS:
    """Background sampler of the summed RSS (bytes) of this process and its descendants; ``reset()`` -> peak so far."""

    def __init__(self, every: float = 0.2):
        self._me, self._every, self._peak = psutil.Process(), every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> int:
        total = 0
        for p in [self._me, *self._me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:  # a child that exited between listing and reading
                pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._peak = max(self._peak, self.sample())

    def reset(self) -> int:
        """Peak bytes since the last reset (one last sample included), then start afresh."""
        peak, self._peak = max(self._peak, self.sample()), 0
        return peak

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


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
    peaks: list[float] = []
    rss = TreeRSS()
    with tempfile.TemporaryDirectory(prefix="soundloc-bench-book-") as tmp:
        for src in srcs:
            out = Path(tmp) / src.stem
            rss.reset()
            t0 = time.perf_counter()
            try:
                run_notebook(src, {"SMALL": True, "OUT": str(out)}, out_dir=out / "executed",
                             timeout=args.timeout, progress=False)
                status = "ok"
            except Exception as e:  # a failing chapter is reported, the others still run
                status = f"FAILED ({type(e).__name__}: {str(e).strip().splitlines()[-1][:160] if str(e).strip() else ''})"
                traceback.print_exc(limit=1)
            dt = time.perf_counter() - t0
            peaks.append(rss.reset() / 1e9)
            results.append((src.stem, dt, status))
            print(f"{src.stem}: {dt:.1f} s ({dt / cal0:.1f} calibration units), peak RSS {peaks[-1]:.2f} GB {status}",
                  flush=True)
    rss.close()
    cal1, r1 = time_calibration(args.calib_rounds)
    load1 = _load()
    cal = (cal0 + cal1) / 2
    print(f"calibration after: best {cal1:.3f} s, rounds {[round(t, 3) for t in r1]}; load average {load1:.2f}; "
          f"drift after/before {cal1 / cal0:.2f}x", flush=True)
    print(f"{'chapter':<22s} {'seconds':>8s} {'units':>7s} {'peak GB':>8s}  status")
    for (stem, dt, status), gb in zip(results, peaks):
        print(f"{stem:<22s} {dt:8.1f} {dt / cal:7.1f} {gb:8.2f}  {status}")
    total = sum(dt for _, dt, _ in results)
    n_ok = sum(s == "ok" for _, _, s in results)
    per = ", ".join(f"{stem.split('_')[0]} {dt:.0f} s = {dt / cal:.0f} u" + ("" if s == "ok" else " (failed)")
                    for stem, dt, s in results)
    print(f"SUMMARY book bench (SMALL, {n_ok}/{len(results)} chapters ok): {per}; total {total:.0f} s = "
          f"{total / cal:.0f} calibration units (1 u = {cal:.2f} s here, drift {cal1 / cal0:.2f}x, "
          f"load {load0:.1f} -> {load1:.1f}); peak RSS {max(peaks):.2f} GB (chapter "
          f"{results[int(np.argmax(peaks))][0].split('_')[0]}) = {max(peaks) / BUDGET_GB:.2f}x the {BUDGET_GB:.0f} GB budget")
    return 0 if n_ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
