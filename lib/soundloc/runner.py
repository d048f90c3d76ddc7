"""Execute the book: jupytext py:percent source -> papermill -> executed .ipynb (git-ignored).

``make book`` and the notebook tests both call ``run_notebook``; ``run_book(..., jobs=2)`` (``make book``) runs
chapters two at a time, each in its own process, in :data:`PARALLEL_ORDER`.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import paths
from .io import atomic_path

KERNEL = "python3"


class BookError(RuntimeError):
    """Chapters of a parallel run failed (each named with its log)."""

# The order a parallel run starts chapters in (by number; others follow in book order). Chapter 04 builds the SimSounds
# world and chapter 01's models that every SimSounds chapter loads, so it starts first; the real-data chapters fill the
# other slot meanwhile (a SimSounds chapter started then would only wait on the world's file lock); the SimSounds
# chapters follow heaviest first, so the last ones to start are short.
PARALLEL_ORDER = ("04", "02", "12", "08", "11", "00", "03", "10", "05", "09", "07", "06", "01")


def chapters() -> list[Path]:
    """The numbered chapter sources, in order (``notebooks/NN_*.py``)."""
    return sorted(p for p in paths.notebooks_dir().glob("[0-9][0-9]_*.py"))


def find_chapter(key: str) -> Path:
    """Chapter by number or stem prefix ("00", "00_data", or a path)."""
    p = Path(key)
    if p.suffix == ".py" and p.exists():
        return p.resolve()
    hits = [c for c in chapters() if c.stem.startswith(key)]
    if len(hits) != 1:
        raise ValueError(f"{key!r} matches {[h.name for h in hits]} among {[c.name for c in chapters()]}")
    return hits[0]


def run_notebook(source: str | Path, parameters: dict | None = None, out_dir: Path | None = None,
                 timeout: int = 1800, kernel: str = KERNEL, progress: bool = True) -> Path:
    """Run one py:percent notebook headlessly with papermill; return the executed .ipynb path.

    Parameters are injected after the cell tagged ``parameters`` (papermill's rule); the
    working directory is the notebooks folder, but chapters take paths from ``soundloc.paths``.
    """
    import jupytext
    import papermill as pm

    source = find_chapter(str(source))
    out_dir = Path(out_dir) if out_dir is not None else paths.data_dir() / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(source)
    if not any("parameters" in c.metadata.get("tags", []) for c in nb.cells):
        raise ValueError(f"{source.name}: no cell tagged 'parameters'")
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3", "language": "python"}
    src_ipynb = out_dir / f"{source.stem}.src.ipynb"
    jupytext.write(nb, src_ipynb)
    out = out_dir / f"{source.stem}.ipynb"
    pm.execute_notebook(str(src_ipynb), str(out), parameters=parameters or {}, kernel_name=kernel,
                        cwd=str(source.parent), execution_timeout=timeout, progress_bar=progress)
    src_ipynb.unlink(missing_ok=True)
    return out


def run_book(keys: list[str] | None = None, parameters: dict | None = None, jobs: int = 1, results_page: bool = True,
             **kw) -> dict[str, float]:
    """Run the chapters (all by default) -> {chapter: seconds}: in book order, or ``jobs`` at a time in
    :data:`PARALLEL_ORDER` (each in its own process, logging to ``<executed>/<chapter>.log``).

    ``kw`` goes to :func:`run_notebook`; a parallel run passes on only ``out_dir`` (its children use their
    defaults for the rest). It lets the other chapters finish when one fails, then raises naming every failed
    chapter."""
    srcs = [find_chapter(k) for k in keys] if keys else chapters()
    if jobs > 1 and len(srcs) > 1:
        times = _run_parallel(srcs, parameters or {}, jobs, Path(kw.get("out_dir") or paths.data_dir() / "executed"))
    else:
        times = {}
        for src in srcs:
            t0 = time.perf_counter()
            print(f"== {src.name}", flush=True)
            run_notebook(src, parameters, **kw)
            times[src.stem] = time.perf_counter() - t0
            print(f"== {src.name} done in {times[src.stem]:.0f} s", flush=True)
    if results_page and not (parameters or {}).get("OUT"):  # the chapters wrote into figures/: the page follows them
        print(f"== results page: {write_results_page()}", flush=True)
    return times


def parallel_order(srcs: list[Path]) -> list[Path]:
    """Chapter sources -> the order a parallel run starts them (:data:`PARALLEL_ORDER`, then the rest in book order)."""
    rank = {n: i for i, n in enumerate(PARALLEL_ORDER)}
    return sorted(srcs, key=lambda p: (rank.get(p.stem[:2], len(rank)), p.stem))


def _run_parallel(srcs: list[Path], parameters: dict, jobs: int, log_dir: Path, status_every_s: float = 60.0
                  ) -> dict[str, float]:
    """Run each chapter in a child ``python -m soundloc.runner`` process, ``jobs`` at a time -> {chapter: seconds};
    every ``status_every_s`` a line says which cell each running chapter has reached."""
    log_dir.mkdir(parents=True, exist_ok=True)
    # One OpenMP/BLAS thread per chapter process (inherited by its kernel): chapters side by side on few cores run
    # faster single-threaded than with spin-waiting thread pools competing for the same cores.
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    args = [a for k, v in parameters.items() for a in ("-p", k, json.dumps(v))] + ["--executed", str(log_dir)]
    queue, running, times, failed = parallel_order(srcs), {}, {}, []
    next_status = time.perf_counter() + status_every_s
    print(f"== {len(queue)} chapters, {jobs} at a time: {' '.join(p.stem[:2] for p in queue)}", flush=True)
    try:
        while queue or running:
            while queue and len(running) < jobs:
                src = queue.pop(0)
                log = log_dir / f"{src.stem}.log"
                fh = open(log, "w")
                proc = subprocess.Popen([sys.executable, "-m", "soundloc.runner", str(src), "--no-results-page", *args],
                                        stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
                running[proc] = (src, log, fh, time.perf_counter())
                print(f"== {src.name} started (log: {log})", flush=True)
            time.sleep(0.2)
            if running and time.perf_counter() >= next_status:
                next_status = time.perf_counter() + status_every_s
                print("== running: " + ", ".join(f"{src.name} {_cell_progress(log)} ({time.perf_counter() - t0:.0f} s)"
                                                 for src, log, _, t0 in running.values()), flush=True)
            for proc in [p for p in running if p.poll() is not None]:
                src, log, fh, t0 = running.pop(proc)
                fh.close()
                times[src.stem] = time.perf_counter() - t0
                if proc.returncode == 0:
                    print(f"== {src.name} done in {times[src.stem]:.0f} s", flush=True)
                else:
                    failed.append((src, log))
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
                    print(f"== {src.name} FAILED after {times[src.stem]:.0f} s (exit {proc.returncode}); end of {log}:\n"
                          f"{tail}", flush=True)
    finally:  # interrupted: stop the chapters still running, as Ctrl-C would (papermill then shuts their kernels down)
        _stop(list(running))
        for _, _, fh, _ in running.values():
            fh.close()
    if failed:
        raise BookError("chapters failed: " + ", ".join(f"{s.name} (log: {log})" for s, log in failed))
    return times


def _cell_progress(log: Path) -> str:
    """The last papermill progress count in a chapter's log ("cell 6/31"), or "starting"."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            hits = re.findall(rb"\| (\d+)/(\d+) \[", fh.read())
    except OSError:
        hits = []
    return f"cell {int(hits[-1][0])}/{int(hits[-1][1])}" if hits else "starting"


def _stop(procs: list[subprocess.Popen], grace_s: float = 15.0) -> None:
    """Interrupt child runners (SIGINT to each one's process group), then kill those still alive after ``grace_s``."""
    for sig in (signal.SIGINT, signal.SIGKILL):
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace_s
        while sig == signal.SIGINT and time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.1)


def write_results_page(out: Path | None = None) -> Path:
    """Gather every chapter's Markdown tables (``figures/NN_*.md``) into one page, ``figures/RESULTS.md``.

    The README quotes headline numbers only; the full tables live on this page, in chapter order, each under the
    name of the file it came from, as each chapter last wrote it (``make book``, or the runner for some chapters).
    """
    figs = paths.figures_dir()
    out = out or figs / "RESULTS.md"
    parts = ["# Results of the book", "",
             "Every table the chapters wrote, in chapter order, as each chapter last wrote it (`make book`, or "
             "`python -m soundloc.runner NN` for one; `figures/NN_*.md`, CSV beside each). Tables on "
             "SimSounds say *simulated* in their titles; columns named `paper ...` hold the paper's published values.",
             ""]
    chapter = None
    for md in sorted(figs.glob("[0-9][0-9]_*.md")):
        if md.name[:2] != chapter:
            chapter = md.name[:2]
            src = next(iter(paths.notebooks_dir().glob(f"{chapter}_*.py")), None)
            parts += [f"## Chapter {chapter}" + (f" ({src.stem})" if src else ""), ""]
        parts += [f"### `{md.name}`", "", md.read_text().strip(), ""]
    with atomic_path(out) as tmp:
        Path(tmp).write_text("\n".join(parts))
    return out


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="run book chapters with papermill")
    ap.add_argument("chapters", nargs="*", help="chapter numbers/stems (default: all)")
    ap.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                    help="parameter override, value parsed as JSON when possible (e.g. -p SMALL false)")
    ap.add_argument("-j", "--jobs", type=int, default=1,
                    help="chapters run at a time, each in its own process with one thread (make book: 2)")
    ap.add_argument("--no-results-page", action="store_true", help="leave figures/RESULTS.md as it is")
    ap.add_argument("--executed", type=Path, default=None, help="folder for the executed notebooks (default: data/executed)")
    a = ap.parse_args()
    # A shell starts background jobs with SIGINT ignored, and children inherit that: restore Ctrl-C's KeyboardInterrupt
    # so that an interrupted parallel run can stop its chapters (and papermill their kernels) cleanly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if a.jobs < 1:
        ap.error(f"--jobs {a.jobs}: need at least 1")

    def _val(v):
        try:
            return json.loads(v.lower() if v in ("True", "False") else v)
        except json.JSONDecodeError:
            return v

    try:
        t = run_book(a.chapters or None, {k: _val(v) for k, v in a.p}, jobs=a.jobs, results_page=not a.no_results_page,
                     out_dir=a.executed)
    except BookError as e:
        sys.exit(f"runner: {e}")
    except KeyboardInterrupt:
        print("runner: interrupted (chapters still running were stopped)", file=sys.stderr)
        sys.exit(130)
    print(json.dumps({k: round(v, 1) for k, v in t.items()}))
