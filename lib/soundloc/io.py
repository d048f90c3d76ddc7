"""Atomic file writes and small table helpers shared by caches, figures and CLIs."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; finished files get the usual mode
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file guarding ``path``'s construction: ``<path>.lock`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, blocking: bool = True):
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the block (POSIX flock).

    Caches that several processes may build at once (parallel test workers, two notebooks) take it
    around "check, else build": the second process waits, then finds the work done. With
    ``blocking=False`` the block runs at once and the context value says whether the lock is held
    (False: another process has it). No locking where fcntl is missing (Windows): the value is True.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no inter-process lock
        yield True
        return
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            held = False
        try:
            yield held
        finally:
            if held:
                fcntl.flock(f, fcntl.LOCK_UN)


def build_parts(parts: Sequence[Path], build: Callable[[int, Path], None], done: Callable[[int, Path], bool]) -> int:
    """Make every file of ``parts`` complete, sharing the work with other processes doing the same -> parts built here.

    Part ``i`` is complete when ``done(i, path)``; otherwise it is built under its own lock by
    ``build(i, tmp)`` into a temporary file renamed onto it (:func:`atomic_path`). A part another
    process is building is skipped and taken up after the others (waiting for it then), so two
    processes asking for the same parts at once build about half each; a part left incomplete by a
    killed process is built again.
    """
    parts = [Path(p) for p in parts]
    pending = [i for i, p in enumerate(parts) if not done(i, p)]
    built = 0
    while pending:
        busy = []
        for i in pending:
            p = parts[i]
            with file_lock(lock_path(p), blocking=False) as held:
                if not held:
                    busy.append(i)
                elif not done(i, p):
                    with atomic_path(p) as tmp:
                        build(i, tmp)
                    built += 1
        if busy:  # only parts other processes hold are left: wait for the first, then look again
            with file_lock(lock_path(parts[busy[0]])):
                pass
        pending = [i for i in busy if not done(i, parts[i])]
    return built


def write_parquet(df: pd.DataFrame, path) -> Path:
    """Write a DataFrame to parquet atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def write_json(obj, path) -> Path:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str))
    return Path(path)


def _fmt_float(v: float, decimals: int) -> str:
    """A float at ``decimals`` places, or at 2 significant digits when those places would hide it (0.03, not 0.0)."""
    if not np.isfinite(v):
        return "" if np.isnan(v) else str(v)
    if v != 0 and abs(v) < 10 ** (1 - decimals):
        return f"{v:.2g}"
    return f"{v:.{decimals}f}"


def markdown_table(df: pd.DataFrame, floatfmt: str = ".1f") -> str:
    """DataFrame -> Markdown table; float columns at ``floatfmt`` (".Nf"), never rounding a small value to 0."""
    m = re.fullmatch(r"\.(\d+)f", floatfmt)
    if m is None:
        return df.to_markdown(index=False, floatfmt=floatfmt)
    out = df.copy()
    num = [c for c in out if pd.api.types.is_float_dtype(out[c])]
    for c in num:
        out[c] = [_fmt_float(v, int(m.group(1))) for v in out[c]]
    align = ["right" if (c in num or pd.api.types.is_numeric_dtype(df[c])) else "left" for c in out]
    return out.to_markdown(index=False, disable_numparse=True, colalign=align)


def save_table(df: pd.DataFrame, stem: str | os.PathLike, *, title: str | None = None, floatfmt: str = ".1f") -> tuple[Path, Path]:
    """Write ``stem.csv`` and ``stem.md`` (a Markdown table with an optional title line)."""
    stem = Path(stem)
    csv_path, md_path = stem.with_suffix(".csv"), stem.with_suffix(".md")
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    md = markdown_table(df, floatfmt)
    with atomic_path(md_path) as tmp:
        tmp.write_text((f"**{title}**\n\n" if title else "") + md + "\n")
    return csv_path, md_path


def digest(obj) -> str:
    """12 hex characters of the SHA-1 of ``obj`` as sorted-key JSON (``str`` for what JSON lacks): a cache key."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]
