"""Atomic file writes, the disk-cache helper (:func:`cached`) and small table helpers shared by caches,
figures and CLIs.

Every disk cache of the package goes through :func:`cached` (one file), :func:`read_cached` (its read half,
for a cache written later elsewhere) or :func:`build_parts` (a file in parts shared by several processes;
folders of many files -- the SimSounds world, spectrogram shards -- lock and write each file the same way):
a key digest in the file name (:func:`digest`, :func:`bytes_digest`),
a file lock around "load, else build" (:func:`file_lock`), an atomic write (:func:`atomic_path`), and a
corrupt file rebuilt with a :class:`CacheWarning` naming it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Sequence, TypeVar

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


class CacheWarning(UserWarning):
    """A cache file was unreadable or held something else; it is being built again (the message names it)."""


# what reading a damaged or foreign cache file raises (numpy, torch, pickle, zip, a load's own checks)
CORRUPT = (OSError, ValueError, KeyError, EOFError, RuntimeError, zipfile.BadZipFile, pickle.UnpicklingError)

T = TypeVar("T")


def cached(path: str | os.PathLike, build: Callable, load: Callable[[Path], T],
           save: Callable[[T, Path], None] | None = None, *, lock: str | os.PathLike | None = None,
           rebuild: bool = False, corrupt: tuple = CORRUPT) -> tuple[T, bool]:
    """The value cached in the file ``path`` -> (value, built by this call).

    ``load(path)`` reads it; when the file is missing (or ``rebuild``) the value is made under an
    exclusive lock (``lock``, default ``<path>.lock``; a second process asking at once waits, then
    loads what the first wrote) and written atomically (no partial file, even when the build raises):
    ``save(build(), tmp)``, or with ``save=None`` ``build(tmp)`` writes the file itself and the value is
    ``load(path)``. A file whose ``load`` raises one of ``corrupt`` (a load signals "not what I expect"
    with a ValueError) is built again with a :class:`CacheWarning` naming it; ``corrupt=()`` lets the
    error through (a cache too costly to rebuild silently).
    """
    path = Path(path)
    if not rebuild and path.exists():
        try:  # files are only ever renamed into place whole: reading without the lock is safe
            return load(path), False
        except corrupt:
            pass  # decided below, under the lock (another process may be replacing it)
    with file_lock(lock if lock is not None else lock_path(path)):
        if not rebuild and path.exists():
            try:
                return load(path), False
            except corrupt as e:
                warnings.warn(f"{path}: unreadable cache ({type(e).__name__}: {e}); building it again",
                              CacheWarning, stacklevel=2)
        with atomic_path(path) as tmp:
            if save is None:
                build(tmp)
            else:
                value = build()
                save(value, tmp)
        return (load(path) if save is None else value), True


def read_cached(path: str | os.PathLike, load: Callable[[Path], T], corrupt: tuple = CORRUPT) -> T | None:
    """``load(path)``, or None when the file is missing or unreadable (then with a :class:`CacheWarning`
    naming it): the read half of :func:`cached`, for a cache whose value is written later, elsewhere."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return load(path)
    except corrupt as e:
        warnings.warn(f"{path}: unreadable cache ({type(e).__name__}: {e}); building it again", CacheWarning,
                      stacklevel=2)
        return None


def bytes_digest(*arrays, n: int = 12, seed: bytes = b"") -> str:
    """``n`` hex characters of the SHA-1 of ``seed`` then each array's C-contiguous bytes (None skipped): a cache key."""
    h = hashlib.sha1(seed)
    for a in arrays:
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:n]


def npy_save(value: np.ndarray, path: Path) -> None:
    """Save one array as ``.npy`` at exactly ``path`` (``np.save`` would append a suffix to a temporary name)."""
    with open(path, "wb") as f:
        np.save(f, value)


def npy_loader(shape: tuple, dtype=None) -> Callable[[Path], np.ndarray]:
    """A :func:`cached` load reading a ``.npy`` that must have ``shape`` (and ``dtype``), else ValueError."""
    def load(path: Path) -> np.ndarray:
        v = np.load(path)
        if v.shape != tuple(shape) or (dtype is not None and v.dtype != dtype):
            raise ValueError(f"holds a {v.dtype} {v.shape} array, expected {np.dtype(dtype) if dtype else ''} {tuple(shape)}")
        return v
    return load


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
