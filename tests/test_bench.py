"""Pieces of the bench scripts that their numbers rest on."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import time

from soundloc import paths


def _bench_book():
    spec = importlib.util.spec_from_file_location("bench_book", paths.repo_root() / "bench" / "bench_book.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tree_rss_counts_a_child_process_and_resets():
    """A child holding 400 MB of touched memory shows in the peak; after it exits, the next peak is lower."""
    rss = _bench_book().TreeRSS(every=0.05)
    try:
        base = rss.reset()
        child = subprocess.Popen([sys.executable, "-c",
                                  "import sys, time; b = bytearray(400 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
                                  "print('ready', flush=True); time.sleep(1.0)"], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        child.wait(timeout=30)
        with_child = rss.reset()
        after = rss.reset()
    finally:
        rss.close()
    assert with_child - base >= 380 * 2**20
    assert after < with_child - 300 * 2**20
