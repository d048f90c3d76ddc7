"""Run a chapter headlessly in SMALL mode into a test's folder (shared by the tests/notebooks/test_*.py files)."""
from soundloc.runner import chapters, run_notebook

CHAPTERS = {p.stem: p for p in chapters()}


def run_chapter(stem, out, **params):
    """Execute chapter ``stem`` (e.g. "03_agclip") with SMALL=True, OUT=out and ``params``."""
    return run_notebook(CHAPTERS[stem], {"SMALL": True, "OUT": str(out), **params}, out_dir=out / "executed",
                        timeout=900, progress=False)


def audio_players(executed) -> int:
    """Executed .ipynb path -> number of embedded audio players (IPython Audio) among its cells' outputs."""
    import json
    from pathlib import Path

    nb = json.loads(Path(executed).read_text())
    return sum("<audio" in "".join(o.get("data", {}).get("text/html", "")) for c in nb["cells"] for o in c.get("outputs", []))
