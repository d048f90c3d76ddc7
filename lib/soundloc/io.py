"""Atomic file writes and small table helpers shared by caches, figures and CLIs."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

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


@contextlib.contextmanager
def file_lock(path: str | os.PathLike):
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the block (POSIX flock).

    Caches that several processes may build at once (parallel test workers, two notebooks) take it
    around "check, else build": the second process waits, then finds the work done. No locking
    where fcntl is missing (Windows).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no inter-process lock
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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


def save_table(df: pd.DataFrame, stem: str | os.PathLike, *, title: str | None = None, floatfmt: str = ".1f") -> tuple[Path, Path]:
    """Write ``stem.csv`` and ``stem.md`` (a Markdown table with an optional title line)."""
    stem = Path(stem)
    csv_path, md_path = stem.with_suffix(".csv"), stem.with_suffix(".md")
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    md = df.to_markdown(index=False, floatfmt=floatfmt)
    with atomic_path(md_path) as tmp:
        tmp.write_text((f"**{title}**\n\n" if title else "") + md + "\n")
    return csv_path, md_path
