"""Crash safety of the spectrogram cache (SPEC section 7; issue 7 item 2): SIGKILL a subprocess that is
building ``soundloc.spectrogram.SpectrogramCache`` at random times and at the dangerous instants of its
atomic writes, check after each kill that nothing partial is read as complete, rerun, and compare the
cache with an uninterrupted build byte for byte.

Training is covered by tests/test_train.py::test_resume_after_sigkill_matches_uninterrupted (SIGKILL
mid-run, resume, same metrics log and weights).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundloc import spectrogram as S

from subproc import wait_until

SHARD = 3

# The child builds the cache; KILL_AT="<what>:<n>" makes it SIGKILL itself at the n-th such event:
#   save:n     halfway through writing the n-th shard's data (a partial temporary file is left)
#   replace:n  just before the n-th atomic rename (2 per shard: data, then its index)
# STEP=1 makes it print "replaced" after each atomic rename and wait for a line on stdin before going on,
# so that the parent can kill it at a chosen event, or at a random instant after it, without timing it.
CHILD = textwrap.dedent("""
    import json, os, signal, sys
    import numpy as np
    from soundloc import spectrogram as S

    root, items_json = sys.argv[1], sys.argv[2]
    items = [tuple(x) for x in json.loads(open(items_json).read())]
    kill_at = os.environ.get("KILL_AT", "")
    what, _, n = kill_at.partition(":")
    count = {"save": 0, "replace": 0}

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if what == "save":
        real_save = np.save
        def save(f, arr, *a, **k):
            count["save"] += 1
            if count["save"] == int(n):
                raw = arr.tobytes()
                f.write(raw[: len(raw) // 2]); f.flush(); os.fsync(f.fileno())
                die()
            return real_save(f, arr, *a, **k)
        S.np.save = save
    elif what == "replace":
        real_replace = os.replace
        def replace(src, dst):
            count["replace"] += 1
            if count["replace"] == int(n):
                die()
            return real_replace(src, dst)
        os.replace = replace
    if os.environ.get("STEP") == "1":
        step_replace = os.replace
        def replace(src, dst):
            step_replace(src, dst)
            print("replaced", flush=True)
            sys.stdin.readline()
        os.replace = replace
    cache = S.SpectrogramCache(root, shard_size=%d, device="cpu")
    print("building", flush=True)
    report = cache.build(items, progress=False)
    print("done", report, flush=True)
""" % SHARD)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """25 recordings of different lengths (4-10 s) at 16 kHz (resampled on load), one unreadable, and the
    uninterrupted cache built from them."""
    d = tmp_path_factory.mktemp("crash")
    rng = np.random.default_rng(7)
    items = []
    for i in range(24):
        p = d / "audio" / f"r{i:02d}.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(p, (0.1 * rng.standard_normal(int(rng.uniform(4.0, 10.0) * 16000))).astype(np.float32), 16000)
        items.append((f"r{i:02d}", str(p)))
    bad = d / "audio" / "bad.wav"
    bad.write_text("not audio")
    items.insert(5, ("bad", str(bad)))
    (d / "items.json").write_text(json.dumps(items))
    ref = S.SpectrogramCache(d / "reference", shard_size=SHARD, device="cpu")
    ref.build(items, progress=False)
    return d, items, ref


def _child(root: Path, items_json: Path, kill_at: str = "", step: bool = False) -> subprocess.Popen:
    env = {**os.environ, "KILL_AT": kill_at, "OMP_NUM_THREADS": "1", "STEP": "1" if step else ""}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(items_json)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _files(root: Path) -> dict[str, bytes]:
    """The cache's shard files by name (leftover hidden temporaries are not part of the cache)."""
    return {p.name: p.read_bytes() for p in sorted(root.glob("shard_*"))}


def _check_consistent(root: Path, ref: S.SpectrogramCache, items) -> int:
    """Whatever a fresh reader of a killed build's folder serves equals the reference; the rest is absent.

    Returns how many recordings the killed build had finished."""
    cache = S.SpectrogramCache(root, shard_size=SHARD, device="cpu")
    served = cache.ids()
    for a in served:
        np.testing.assert_array_equal(cache.get(a), ref.get(a), err_msg=f"{a} served from {root} differs")
    for a, _ in items:
        if a not in served and a != "bad":
            with pytest.raises((KeyError, S.CacheError)):
                cache.get(a)
    # a shard counts as done only with its index, and then its data file is exactly the reference's
    for ip in root.glob("shard_*.json"):
        dp = ip.with_suffix(".npy")
        if cache._read_index(int(ip.stem.split("_")[1])) is not None:
            assert dp.read_bytes() == (ref.root / dp.name).read_bytes()
            assert ip.read_bytes() == (ref.root / ip.name).read_bytes()
    return len(served)


def _rerun_and_compare(root: Path, ref: S.SpectrogramCache, items) -> list[int]:
    cache = S.SpectrogramCache(root, shard_size=SHARD, device="cpu")
    report = cache.build(items, progress=False)
    assert report.total == len(items) and dict(report.skipped) == {"unreadable": 1}
    assert _files(root) == _files(ref.root)  # byte for byte: every shard's data and index
    return cache.last_computed


@pytest.mark.parametrize("kill_at", ["save:2", "replace:3", "replace:4"])
def test_kill_at_the_atomic_write_steps(corpus, tmp_path, kill_at):
    """SIGKILL mid-write of shard data, before its rename, between the data and the index rename."""
    d, items, ref = corpus
    root = tmp_path / "cache"
    p = _child(root, d / "items.json", kill_at)
    out, err = p.communicate(timeout=120)
    assert p.returncode == -signal.SIGKILL, (out, err)
    n_write = int(kill_at.split(":")[1])
    done_shards = (n_write - 1) // 2 if kill_at.startswith("replace") else n_write - 1
    assert len(list(root.glob("shard_*.json"))) == done_shards
    if kill_at.startswith("save"):
        assert list(root.glob(".shard_*.npy.*.tmp")), "the partial write should be left in a temporary file"
    n_served = _check_consistent(root, ref, items)
    assert n_served == sum(a != "bad" for a, _ in items[: done_shards * SHARD])
    computed = _rerun_and_compare(root, ref, items)
    assert computed == list(range(done_shards, -(-len(items) // SHARD)))  # finished shards are kept


def test_kill_at_random_times_then_resume(corpus, tmp_path):
    """Several SIGKILLs of successive runs in the same folder, after a random number of atomic renames (the first
    while the child waits there, the others at a random instant of the work that follows), then a full rerun."""
    d, items, ref = corpus
    root = tmp_path / "cache"
    n_shards = -(-len(items) // SHARD)
    rng = np.random.default_rng(2024)
    served = []
    interrupted = 0
    for run in range(3):
        left = n_shards - len(list(root.glob("shard_*.json")))  # successive runs skip finished shards
        k = int(rng.integers(1, 2 * left))  # kill after the k-th of this run's 2 * left renames: work remains
        p = _child(root, d / "items.json", step=True)
        assert p.stdout.readline().strip() == "building"
        for i in range(k):
            assert p.stdout.readline().strip() == "replaced", f"run {run}: the child stopped before rename {i + 1}"
            if i < k - 1 or run > 0:  # run 0 is killed while it waits after its k-th rename
                p.stdin.write("\n")
                p.stdin.flush()
        if run > 0:
            time.sleep(rng.uniform(0, 0.05))  # a random instant of the next shard's work (not a speed claim)
        p.send_signal(signal.SIGKILL)
        out, _ = p.communicate(timeout=60)
        interrupted += "done" not in out
        served.append(_check_consistent(root, ref, items))
    assert interrupted >= 1, "no kill landed inside a build"
    assert served == sorted(served)  # a rerun never loses finished work
    _rerun_and_compare(root, ref, items)


def test_file_lock_makes_a_second_process_wait(tmp_path):
    """Two processes building one cache: the second blocks on ``io.file_lock`` until the first is done."""
    lock, log = tmp_path / "cache.lock", tmp_path / "log.txt"
    child = textwrap.dedent(f"""
        import time
        from soundloc.io import file_lock
        with file_lock({str(lock)!r}):
            open({str(log)!r}, "a").write("child in\\n")
            time.sleep(0.5)  # holds the lock a while after saying so: the parent must wait, whatever its speed
            open({str(log)!r}, "a").write("child out\\n")
    """)
    p = subprocess.Popen([sys.executable, "-c", child])
    wait_until(log.exists, p, "taking the lock")  # from here the child holds the lock
    from soundloc.io import file_lock

    with file_lock(lock):
        log.open("a").write("parent in\n")
    assert p.wait(60) == 0
    assert log.read_text().splitlines() == ["child in", "child out", "parent in"]


def test_build_parts_shares_the_work_between_two_processes(tmp_path):
    """Two processes asking for the same 8 parts at once build about half each, none twice; every part is
    complete afterwards and a part left incomplete (a killed builder) is built again."""
    parts_dir, log, go = tmp_path / "parts", tmp_path / "log.txt", tmp_path / "go"
    worker = textwrap.dedent(f"""
        import os, time
        from pathlib import Path
        from soundloc.io import build_parts
        parts = [Path({str(parts_dir)!r}) / f"p{{i}}" for i in range(8)]
        def build(i, tmp):
            time.sleep(0.3)
            tmp.write_text(str(i))
            with open({str(log)!r}, "a") as f:
                f.write(f"{{i}} {{os.getpid()}}\\n")
        while not Path({str(go)!r}).exists():
            time.sleep(0.01)
        build_parts(parts, build, lambda i, p: p.exists() and p.read_text() == str(i))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", worker]) for _ in range(2)]
    time.sleep(1.0)  # both imported and waiting
    go.write_text("")
    assert [p.wait(60) for p in procs] == [0, 0]
    built = [line.split() for line in log.read_text().splitlines()]
    assert sorted(int(i) for i, _ in built) == list(range(8))  # each part built exactly once
    by = {pid for _, pid in built}
    assert len(by) == 2, built  # by both processes
    assert all((parts_dir / f"p{i}").read_text() == str(i) for i in range(8))

    from soundloc.io import build_parts

    (parts_dir / "p3").write_text("partial")
    rebuilt = []
    n = build_parts([parts_dir / f"p{i}" for i in range(8)], lambda i, tmp: rebuilt.append(i) or tmp.write_text(str(i)),
                    lambda i, p: p.exists() and p.read_text() == str(i))
    assert n == 1 and rebuilt == [3] and (parts_dir / "p3").read_text() == "3"
