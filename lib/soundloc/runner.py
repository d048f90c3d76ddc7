"""Execute the book: jupytext py:percent source -> papermill -> executed .ipynb (git-ignored).

``make book`` and the notebook tests both call ``run_notebook``.
"""
from __future__ import annotations

import time
from pathlib import Path

from . import paths
from .io import atomic_path

KERNEL = "python3"


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


def run_book(keys: list[str] | None = None, parameters: dict | None = None, **kw) -> dict[str, float]:
    """Run the chapters (all by default) in order -> {chapter: seconds}."""
    times = {}
    for src in [find_chapter(k) for k in keys] if keys else chapters():
        t0 = time.perf_counter()
        print(f"== {src.name}", flush=True)
        run_notebook(src, parameters, **kw)
        times[src.stem] = time.perf_counter() - t0
        print(f"== {src.name} done in {times[src.stem]:.0f} s", flush=True)
    if not (parameters or {}).get("OUT"):  # the chapters wrote into figures/: the page follows them, one or all
        print(f"== results page: {write_results_page()}", flush=True)
    return times


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
    import json

    ap = argparse.ArgumentParser(description="run book chapters with papermill")
    ap.add_argument("chapters", nargs="*", help="chapter numbers/stems (default: all)")
    ap.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                    help="parameter override, value parsed as JSON when possible (e.g. -p SMALL false)")
    a = ap.parse_args()

    def _val(v):
        try:
            return json.loads(v.lower() if v in ("True", "False") else v)
        except json.JSONDecodeError:
            return v

    t = run_book(a.chapters or None, {k: _val(v) for k, v in a.p})
    print(json.dumps({k: round(v, 1) for k, v in t.items()}))
