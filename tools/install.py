"""Install the project into a virtual environment: uv when it can be had, pip otherwise.

Usage: ``python tools/install.py VENV_PYTHON [REQUIREMENT ...]`` (default requirement ``-e .[dev]``).

uv installs the pinned stack (torch with its CUDA libraries, about 6.7 GB unpacked, bytecode
compiled as pip does) in about 30 s where pip takes about 2 min. uv does not read pip's
configuration, so the index settings pip would use (``pip config list``: files and ``PIP_*`` variables) are passed on as uv options
and uv resolves across all indexes the way pip does (``unsafe-best-match``). If uv cannot be
installed or fails, the same requirements go through pip, so the result never depends on uv.
Set ``SOUNDLOC_INSTALLER=pip`` to skip uv.

Whatever the route, the install ends with ``tools/native_check.py``: every compiled library the dependencies load
must come from the venv. A package whose wheel lacks its library (uv once took soundfile's pure wheel, without
libsndfile) is reinstalled as its platform wheel through pip; if that does not mend it, the install fails with one
line per package naming what was found and the fix.
"""
from __future__ import annotations

import ast
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pip_settings(python: str) -> dict[str, list[str]]:
    """pip's effective index settings as ``{"index-url": [...], "extra-index-url": [...], "find-links": [...]}``."""
    out = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False).stdout
    rank = {":env:": 0, "install": 1, "global": 2}  # as pip: PIP_* variables, then [install], then [global]
    best: dict[str, tuple[int, list[str]]] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        section, _, name = key.rpartition(".")
        if not sep or section not in rank:
            continue
        if name in ("index-url", "extra-index-url", "find-links", "default-timeout", "constraint"):
            values = shlex.split(ast.literal_eval(value.strip()))  # printed as a Python literal: '\nfile:///x'
            if name not in best or rank[section] < best[name][0]:
                best[name] = (rank[section], values)
    return {name: values for name, (_, values) in best.items() if values}


def uv_args(settings: dict[str, list[str]]) -> tuple[list[str], dict[str, str]]:
    """uv command-line options and environment equivalent to pip's settings."""
    # --compile-bytecode: pip writes .pyc files at install time, uv does not by default; where
    # PYTHONDONTWRITEBYTECODE is set (as on these machines) every process would then compile torch,
    # pandas ... from source at each import (measured: +6 s CPU per process, +2 min on `make test`).
    args = ["--compile-bytecode", "--index-strategy", "unsafe-best-match"]
    for url in settings.get("index-url", [])[:1]:
        args += ["--index-url", url]
    for url in settings.get("extra-index-url", []):
        args += ["--extra-index-url", url]
    for link in settings.get("find-links", []):
        args += ["--find-links", link]
    for constraint in settings.get("constraint", []):  # e.g. the machine's cap on torch's version
        args += ["--constraint", constraint]
    env = {}
    if settings.get("default-timeout"):
        env["UV_HTTP_TIMEOUT"] = settings["default-timeout"][0]
    return args, env


def run(cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Run a command from the repository root; its exit status."""
    print("install:", " ".join(shlex.quote(c) for c in cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, check=False).returncode


def install(python: str, reqs: list[str]) -> int:
    """Install ``reqs`` into ``python``'s environment, through uv when it can be had, else pip; exit status."""
    if os.environ.get("SOUNDLOC_INSTALLER", "uv") != "pip":
        uv = str(Path(python).parent / "uv")
        if Path(uv).exists() or run([python, "-m", "pip", "install", "-q", "uv"]) == 0:
            args, env = uv_args(pip_settings(python))
            if run([uv, "pip", "install", "-q", "--python", python, *args, *reqs], env) == 0:
                return 0
        print("install: uv unavailable or failed; installing with pip", file=sys.stderr)
    return run([python, "-m", "pip", "install", "-q", *reqs])


def native_problems(python: str) -> list[dict]:
    """tools/native_check.py run in the target environment -> its problems (empty when every library is the venv's)."""
    out = subprocess.run([python, str(ROOT / "tools" / "native_check.py"), "--json"], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return [{"dist": "native_check", "version": "", "module": "", "kind": "crash",
                 "detail": (out.stderr.strip().splitlines() or ["no output"])[-1]}]


def repair_native(python: str) -> int:
    """Check the native libraries; reinstall each flagged distribution's platform wheel through pip, check again.

    pip ranks a wheel's platform tags and takes the most specific (manylinux with the bundled library) across all
    indexes, where uv may have taken a pure ``none-any`` wheel from the first index that had the version.
    """
    problems = native_problems(python)
    dists = sorted({(p["dist"], p["version"]) for p in problems if p["kind"] != "crash"})
    for name, version in dists:
        print(f"install: {name} {version} has no usable native library in the venv; reinstalling its platform wheel",
              flush=True)
        run([python, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", "--only-binary=:all:",
             f"{name}=={version}"])
    if dists:
        problems = native_problems(python)
    for p in problems:
        print(f"install: FAILED: {p['dist']} {p['version']} (import {p['module']}): {p['detail']}; fix: install a "
              f"wheel of {p['dist']} that bundles its native library (pip install --force-reinstall --no-deps "
              f"--only-binary=:all: {p['dist']}=={p['version']}), or report the package", file=sys.stderr)
    if not problems:
        print(f"install: every native library of soundloc's dependencies loads from {Path(python).parent.parent} "
              "(tools/native_check.py)", flush=True)
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    python, reqs = argv[0], argv[1:] or ["-e", ".[dev]"]
    status = install(python, reqs)
    return status or repair_native(python)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
