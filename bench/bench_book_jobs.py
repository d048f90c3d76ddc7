"""The book runner two chapters at a time (``--jobs 2``, one thread each) vs one after the other, in one run.

Run: ``.venv/bin/python bench/bench_book_jobs.py [--chapters 00 08 11]`` (a few minutes, after ``make data``). The
chapters run once untimed (so both timed passes find the same warm caches), then one after the other with torch's
default threads, then two at a time; each pass writes into its own temporary OUT folder, and the Markdown tables of the
two passes must be identical (the default chapters use real data only).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from soundloc.runner import run_book


def _pass(chapters: list[str], jobs: int, out: Path) -> float:
    """Run ``chapters`` into ``out`` with ``jobs`` at a time -> seconds."""
    t = time.perf_counter()
    run_book(chapters, {"OUT": str(out)}, jobs=jobs, out_dir=out / "executed")
    return time.perf_counter() - t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chapters", nargs="+", default=["00", "08", "11"], help="chapter numbers (default: 00 08 11)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        _pass(a.chapters, 2, d / "warm")
        seq = _pass(a.chapters, 1, d / "seq")
        par = _pass(a.chapters, 2, d / "par")
        tables = sorted(p.name for p in (d / "seq").glob("*.md"))
        same = tables == sorted(p.name for p in (d / "par").glob("*.md")) and all(
            (d / "seq" / n).read_text() == (d / "par" / n).read_text() for n in tables)
    print(f"chapters {' '.join(a.chapters)}: one after the other {seq:.1f} s, two at a time {par:.1f} s")
    print(f"SUMMARY book runner, chapters {' '.join(a.chapters)}: two at a time {seq / par:.2f}x faster than one after "
          f"the other ({seq:.0f} s -> {par:.0f} s); {len(tables)} Markdown tables {'identical' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()
