"""The book runner: results page, one chapter or all, in order or several at a time."""
import functools
import json
import re
import subprocess
import sys
import time

import pytest

from soundloc import runner

# A stand-in chapter that returns only once the other one has started too: both finish only if they run side by side.
PAIR = """# %% tags=["parameters"]
FLAGS = ""
ME, OTHER = {me!r}, {other!r}

# %%
import os
import time
from pathlib import Path

(Path(FLAGS) / ME).write_text(os.environ.get("OMP_NUM_THREADS", "unset"))
t0 = time.monotonic()
while not (Path(FLAGS) / OTHER).exists():
    if time.monotonic() - t0 > 300:
        raise RuntimeError("the other chapter never ran beside this one")
    time.sleep(0.05)
"""
FAIL = """# %% tags=["parameters"]
FLAGS = ""

# %%
raise ValueError("a planted failure")
"""


def test_results_page_gathers_every_chapter_table_in_order(figures_tmp):
    figures_tmp.mkdir(parents=True)
    (figures_tmp / "02_b.md").write_text("**B**\n\n| x |\n|---|\n| 2 |\n")
    (figures_tmp / "00_a.md").write_text("**A**\n\n| x |\n|---|\n| 1 |\n")
    (figures_tmp / "bench.md").write_text("not a chapter table")
    page = runner.write_results_page().read_text()
    assert page.index("### `00_a.md`") < page.index("| 1 |") < page.index("## Chapter 02") < page.index("| 2 |")
    assert "## Chapter 00 (00_data)" in page and "not a chapter table" not in page


def test_running_one_chapter_refreshes_the_results_page(figures_tmp, monkeypatch):
    """`python -m soundloc.runner NN` rewrites figures/RESULTS.md from the tables on disk, so the page never keeps a
    rerun chapter's old tables; a run with its own OUT folder leaves the page alone."""
    figures_tmp.mkdir(parents=True)
    (figures_tmp / "00_a.md").write_text("**A**\n\n| x |\n|---|\n| 1 |\n")
    runner.write_results_page()
    ran = []

    def fake_run(src, parameters, **kw):  # the chapter "rewrites" its table
        ran.append(src.stem)
        (figures_tmp / "00_a.md").write_text("**A**\n\n| x |\n|---|\n| 7 |\n")

    monkeypatch.setattr(runner, "run_notebook", fake_run)
    runner.run_book(["00"], {"OUT": str(figures_tmp / "elsewhere")})
    assert "| 1 |" in (figures_tmp / "RESULTS.md").read_text()  # OUT elsewhere: page untouched
    runner.run_book(["00"])
    page = (figures_tmp / "RESULTS.md").read_text()
    assert ran == ["00_data", "00_data"] and "| 7 |" in page and "| 1 |" not in page


def test_parallel_order_starts_the_world_builder_then_the_real_chapters():
    srcs = runner.chapters()
    order = [p.stem[:2] for p in runner.parallel_order(srcs)]
    assert sorted(order) == sorted(p.stem[:2] for p in srcs)  # every chapter once
    assert order[0] == "04" and order.index("02") < order.index("03") and order.index("12") < order.index("10")
    assert [p.stem for p in runner.parallel_order([runner.find_chapter("01"), runner.find_chapter("04")])] == \
        ["04_aggregation", "01_baselines"]


def test_parallel_run_runs_chapters_side_by_side_and_names_the_failed_one(tmp_path, monkeypatch, capsys):
    """Two chapters that each wait for the other finish only when run at the same time; a chapter that fails first
    does not stop them and is named, with its log, in the error; each child gets one OpenMP thread unless told
    otherwise."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    src, flags, out = tmp_path / "src", tmp_path / "flags", tmp_path / "executed"
    src.mkdir(), flags.mkdir()
    (src / "90_a.py").write_text(PAIR.format(me="a", other="b"))
    (src / "91_b.py").write_text(PAIR.format(me="b", other="a"))
    (src / "89_fail.py").write_text(FAIL)
    keys = [str(src / n) for n in ("91_b.py", "90_a.py", "89_fail.py")]
    monkeypatch.setattr(runner, "_run_parallel", functools.partial(runner._run_parallel, status_every_s=0.5))
    with pytest.raises(runner.BookError, match=r"89_fail\.py \(log: .*89_fail\.log\)") as err:
        runner.run_book(keys, {"FLAGS": str(flags), "OUT": str(tmp_path / "figs")}, jobs=2, out_dir=out)
    assert "90_a" not in str(err.value) and "91_b" not in str(err.value)
    assert (flags / "a").read_text() == "1" and (flags / "b").read_text() == "1"
    assert (out / "90_a.ipynb").is_file() and (out / "91_b.ipynb").is_file()
    assert "a planted failure" in (out / "89_fail.log").read_text()
    printed = capsys.readouterr().out
    assert "90_a.py done in" in printed and "89_fail.py FAILED" in printed
    assert re.search(r"== running: .*9[01]_[ab]\.py (starting|cell \d+/\d+) \(\d+ s\)", printed)
    executed = json.loads((out / "90_a.ipynb").read_text())
    assert any("FLAGS" in "".join(c["source"]) and "injected-parameters" in c["metadata"].get("tags", [])
               for c in executed["cells"])


def _child(code: str, folder) -> subprocess.Popen:
    """A child in its own session (as the runner starts chapters) that writes folder/ready once its handler is set."""
    folder.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], start_new_session=True)
    t0 = time.monotonic()
    while not (folder / "ready").exists() and time.monotonic() - t0 < 120:
        time.sleep(0.05)
    return proc


def test_cell_progress_reads_the_last_papermill_count(tmp_path):
    log = tmp_path / "c.log"
    assert runner._cell_progress(log) == "starting"  # no log yet
    log.write_text("Executing:   0%|          | 0/26 [00:00<?, ?cell/s]\rExecuting:  23%|##  | 6/26 [00:07<00:21]")
    assert runner._cell_progress(log) == "cell 6/26"


def test_stopping_interrupts_each_chapter_then_kills_the_stubborn_ones(tmp_path):
    """An interrupted parallel run sends SIGINT (papermill then shuts its kernel down), and SIGKILL after the grace."""
    # Like the runner CLI, the polite child restores Ctrl-C's handler: CI starts pytest with SIGINT ignored, and
    # children inherit that.
    polite = _child("import pathlib, signal, sys, time\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
                    "try:\n    pathlib.Path(sys.argv[1], 'ready').write_text('')\n"
                    "    time.sleep(300)\nexcept KeyboardInterrupt:\n"
                    "    pathlib.Path(sys.argv[1], 'interrupted').write_text('yes')\n    sys.exit(130)\n", tmp_path / "polite")
    runner._stop([polite], grace_s=120.0)  # returns as soon as the child has exited
    assert polite.wait(timeout=30) == 130 and (tmp_path / "polite" / "interrupted").read_text() == "yes"
    stubborn = _child("import pathlib, signal, sys, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                      "pathlib.Path(sys.argv[1], 'ready').write_text('')\ntime.sleep(300)\n", tmp_path / "stubborn")
    runner._stop([stubborn], grace_s=0.5)
    assert stubborn.wait(timeout=30) == -9


def test_an_interrupted_parallel_run_stops_its_chapters_and_closes_their_logs(tmp_path, monkeypatch):
    """Ctrl-C in the parent (here: raised while it announces the second chapter) stops every chapter started so far
    and closes their log files, so a Python caller of run_book is not left holding them."""
    procs, logs = [], []
    real_popen, real_open = subprocess.Popen, open

    def child(cmd, **kw):  # a chapter stand-in that sleeps until interrupted
        procs.append(real_popen([sys.executable, "-c", "import signal, time\n"
                                 "signal.signal(signal.SIGINT, signal.default_int_handler)\ntime.sleep(300)"], **kw))
        return procs[-1]

    def log_open(*a, **kw):
        logs.append(real_open(*a, **kw))
        return logs[-1]

    def announce(msg, **kw):
        if "started" in msg and len(procs) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner.subprocess, "Popen", child)
    monkeypatch.setattr(runner, "open", log_open, raising=False)
    monkeypatch.setattr(runner, "print", announce, raising=False)
    srcs = [tmp_path / f"9{i}_x.py" for i in range(3)]
    with pytest.raises(KeyboardInterrupt):
        runner._run_parallel(srcs, {}, 2, tmp_path / "executed")
    assert len(procs) == 2 and all(p.wait(timeout=60) is not None for p in procs)
    assert len(logs) == 2 and all(fh.closed for fh in logs)
