"""Benchmark: BirdNET's acoustic model on one thread vs every core, alone and beside a one-thread neighbour.

`make book` runs two chapters at a time and `make test` two pytest workers, each process told one core
(``OMP_NUM_THREADS=1``); a batch with N workers gives each its share. The TFLite interpreter used to take every
core whatever the process's share (`soundloc.devices.cpu_threads` now follows it). This times the detector on
the same real Jura clips (data mirror, detection cache off) with 1 thread and with every core, each alone and
each beside a neighbour process (a one-thread matrix-product loop standing for the other chapter), and reports
the detector's wall time and the neighbour's work rate in each case.

    .venv/bin/python bench/bench_detect_threads.py           # 8 clips, 2 interleaved repeats
    .venv/bin/python bench/bench_detect_threads.py --clips 2 --repeats 1
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from soundloc import paths
from soundloc.detect import BirdNETDetector
from soundloc.devices import usable_cores

# The neighbour: one-thread float32 products until the stop file appears, then its products per second.
NEIGHBOUR = """
import os, sys, time
os.environ["OMP_NUM_THREADS"] = "1"
import torch
torch.set_num_threads(1)
a, b = torch.randn(512, 512), torch.randn(512, 512)
a @ b
print("ready", flush=True)
stop, n = sys.argv[1], 0
t0 = time.perf_counter()
while not os.path.exists(stop):
    for _ in range(20):
        a @ b
    n += 20
print(n / (time.perf_counter() - t0))
"""


def clips(n: int) -> list[Path]:
    """The first ``n`` real Jura clips of the data mirror (raw data folder otherwise)."""
    files = sorted((paths.real_audio_dir() / "jura_2019-05-22").glob("*.wav"))[:n]
    if not files:
        raise SystemExit(f"no Jura clips under {paths.real_audio_dir()}")
    return files


def detect_wall(det: BirdNETDetector, files: list[Path]) -> float:
    """Seconds to score every window of ``files``."""
    t0 = time.perf_counter()
    for f in files:
        det.detect(f)
    return time.perf_counter() - t0


def beside_neighbour(det: BirdNETDetector, files: list[Path]) -> tuple[float, float]:
    """(detector wall s, neighbour products/s) with the neighbour running throughout."""
    with tempfile.TemporaryDirectory() as d:
        stop = Path(d) / "stop"
        p = subprocess.Popen([sys.executable, "-c", NEIGHBOUR, str(stop)], stdout=subprocess.PIPE, text=True)
        p.stdout.readline()  # the neighbour has imported torch and is multiplying
        wall = detect_wall(det, files)
        stop.touch()
        rate = float(p.communicate(timeout=60)[0])
    return wall, rate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args(argv)
    files, cores = clips(a.clips), usable_cores()
    if cores < 2:
        print(f"SUMMARY detector threads: skipped, {cores} usable core (nothing to oversubscribe)")
        return 0
    dets = {n: BirdNETDetector(cache=False, num_threads=n) for n in (1, cores)}
    for det in dets.values():
        det.detect(files[0])  # warm-up: interpreter allocation, file cache
    alone = {n: [] for n in dets}
    side = {n: [] for n in dets}
    for _ in range(a.repeats):  # interleaved: the shared machine's other load falls on both
        for n, det in dets.items():
            alone[n].append(detect_wall(det, files))
            side[n].append(beside_neighbour(det, files))
    for n in dets:
        print(f"{n} thread(s): alone {min(alone[n]):.2f} s; beside the neighbour {min(w for w, _ in side[n]):.2f} s, "
              f"neighbour {max(r for _, r in side[n]):.0f} products/s")
    w1, wn = min(w for w, _ in side[1]), min(w for w, _ in side[cores])
    r1, rn = max(r for _, r in side[1]), max(r for _, r in side[cores])
    print(f"SUMMARY detector threads, {len(files)} Jura clips, beside a one-thread neighbour: 1 thread {w1:.2f} s vs "
          f"{cores} threads {wn:.2f} s (1 thread {wn / w1:.2f}x faster), the neighbour {r1 / rn:.2f}x faster beside the "
          f"1-thread detector; alone: 1 thread {min(alone[1]):.2f} s, {cores} threads {min(alone[cores]):.2f} s "
          f"(load {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
