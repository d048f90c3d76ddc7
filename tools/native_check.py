"""Check that every compiled library soundloc's dependencies load comes from the virtual environment.

Usage: ``VENV_PYTHON tools/native_check.py [--json] [--reuse]`` -> exit 0 when clean, 1 with one line per problem.

A clean check is recorded in ``<venv>/.native-check.json`` under a digest of every installed distribution (name,
version, RECORD file); ``--reuse`` answers from that record when the digest still matches (the install's own
check, reused by the test suite) and checks afresh otherwise.

A wheel that should bundle its native library can reach a machine without it: uv, resolving across several
package indexes, once picked soundfile's pure ``py2.py3-none-any`` wheel (no libsndfile) where pip picks the
manylinux wheel that bundles it. On a machine whose system happens to have the library (Debian's chromium pulls
in libsndfile1) everything still works, so the bug hides until a newcomer runs the book. This check imports
every top-level module of every distribution in soundloc's dependency closure (its ``dev`` extra included),
credits each shared object that the import newly maps (``/proc/self/maps``) to that distribution, and reports:

- a library mapped from outside the venv that is neither the interpreter's own (mapped before any third-party
  import: libc, libpython, libssl ...) nor on the manylinux policy's list of system libraries a wheel may use;
- an import that fails because a shared library cannot be loaded.

It runs in the venv's interpreter (``tools/install.py`` calls it after installing) and needs Linux.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata as md
import json
import os
import re
import sys
from pathlib import Path

# Libraries a manylinux wheel may take from the system (PEP 600's policy list), plus the dynamic loader.
MANYLINUX_SYSTEM = re.compile(
    r"^(ld-linux.*|libc|libm|libdl|librt|libpthread|libutil|libnsl|libresolv|libgcc_s|libstdc\+\+|libcrypt|"
    r"libX11|libXext|libXrender|libICE|libSM|libGL|libgobject-2\.0|libgthread-2\.0|libglib-2\.0|libexpat|libz|"
    r"libmvec)\.so.*")
# Optional system libraries that a wheel probes for and works without (Pillow's complex text layout).
OPTIONAL_SYSTEM = re.compile(r"^(libfribidi|libraqm)\.so.*")
# Modules whose import starts servers, GUIs or test collection, or that only exist for other platforms.
SKIP_MODULES = {"_pytest", "pytest", "py", "pip", "setuptools", "_distutils_hack", "pkg_resources", "wheel",
                "test", "tests", "conftest", "uv", "ipykernel_launcher", "pythonwin", "win32", "winpty", "pywin32_system32",
                "appnope", "debugpy", "__editable__", "soundloc"}
LIB_ERROR = re.compile(r"cannot (open shared object|load library)|\.so[.\d]*: |undefined symbol|library not found", re.I)


def _mapped() -> set[str]:
    """Paths of the shared objects this process has mapped now."""
    out = set()
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            path = fields[5].strip() if len(fields) == 6 else ""  # anonymous mappings have no path
            if ".so" in Path(path).name:
                out.add(os.path.realpath(path))
    return out


def _requirement_names(dist: md.Distribution, extras: set[str]) -> list[str]:
    """Names of ``dist``'s requirements that apply here (markers evaluated, with ``extras``)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip vendors it
        from pip._vendor.packaging.requirements import Requirement
    names = []
    for spec in dist.requires or []:
        req = Requirement(spec)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
            names.append(req.name)
    return names


def closure(root: str = "soundloc", extras: tuple[str, ...] = ("dev",)) -> list[md.Distribution]:
    """The installed distributions ``root`` needs, itself excluded, each once, every one after its own requirements.

    Dependencies come first so that a library is credited to the package that ships (or should ship) it: with
    geoclip checked before soundfile, importing geoclip would map a system libsndfile and blame geoclip.
    """
    def key(name):
        return re.sub(r"[-_.]+", "-", name).lower()

    state, out = {}, []

    def visit(name: str, ex: set[str]) -> None:  # depth-first, post-order: requirements before their dependants
        k = key(name)
        if k in state:
            return
        state[k] = "open"
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            return  # a requirement for another platform or an extra nobody installed
        for req in sorted(_requirement_names(dist, ex), key=key):
            visit(req, set())
        if k != key(root):
            out.append(dist)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    visit(root, set(extras))
    return out


def top_modules(dist: md.Distribution) -> list[str]:
    """Importable top-level module names of a distribution (from its top_level.txt or RECORD)."""
    text = dist.read_text("top_level.txt")
    names = set(text.split()) if text else set()
    if not names:
        for f in dist.files or []:
            parts = f.parts
            if len(parts) == 1 and parts[0].endswith(".py"):
                names.add(parts[0][:-3])
            elif len(parts) > 1 and parts[1] == "__init__.py" and not parts[0].endswith((".dist-info", ".data")):
                names.add(parts[0])
            elif len(parts) == 1 and ".cpython-" in parts[0] and parts[0].endswith(".so"):
                names.add(parts[0].split(".")[0])
    return sorted(n for n in names if n.isidentifier() and n not in SKIP_MODULES and not n.startswith("__"))


def _raised_by(exc: BaseException, dists: list[md.Distribution]) -> md.Distribution | None:
    """The distribution owning the innermost traceback frame of ``exc`` that belongs to one of ``dists``."""
    tb, frames = exc.__traceback__, []
    while tb is not None:
        frames.append(os.path.realpath(tb.tb_frame.f_code.co_filename))
        tb = tb.tb_next
    roots = {}
    for d in dists:
        for mod in top_modules(d):
            roots[os.path.realpath(d.locate_file(mod))] = d
    for path in reversed(frames):
        for root, d in roots.items():
            if path == root + ".py" or path.startswith(root + os.sep):
                return d
    return None


def _blame_system(libs: list[str], modules: list[str], dists: list[md.Distribution]) -> md.Distribution | None:
    """The distribution among ``dists`` one of whose ``modules``, imported alone in a fresh interpreter, maps one
    of ``libs`` while mapping the fewest shared objects in all (the most specific importer); None if none does."""
    import subprocess

    owner = {}
    for d in dists:
        for m in top_modules(d):
            owner.setdefault(m, d)
    probe = ("import importlib, sys\nimportlib.import_module(sys.argv[1])\n"
             "print('\\n'.join(sorted({l.split()[-1] for l in open('/proc/self/maps') if '.so' in l.split()[-1]})))")
    best = None
    for m in modules:
        if m not in owner:
            continue
        out = subprocess.run([sys.executable, "-c", probe, m], capture_output=True, text=True, timeout=120, check=False)
        maps = {os.path.realpath(x) for x in out.stdout.split()}
        if out.returncode == 0 and maps & set(libs) and (best is None or len(maps) < best[0]):
            best = (len(maps), owner[m])
    return best[1] if best else None


def allowed_outside(path: str, prefix: str) -> bool:
    """Whether a library mapped from outside the venv is acceptable."""
    name = Path(path).name
    return (path.startswith(prefix) or bool(MANYLINUX_SYSTEM.match(name)) or bool(OPTIONAL_SYSTEM.match(name)))


def check() -> list[dict]:
    """Import the closure's modules -> problems: {dist, version, module, kind: 'system'|'missing', detail}."""
    prefix = os.path.realpath(sys.prefix) + os.sep
    # The standard library's extension modules (lib-dynload) and what they load (libssl, libsqlite3 ...) belong to
    # the interpreter, wherever it was installed: map them all before any third-party import.
    import sysconfig

    for so in sorted(Path(sysconfig.get_config_var("DESTSHARED") or "/nonexistent").glob("*.so")):
        try:
            importlib.import_module(so.name.split(".")[0])
        except Exception:  # noqa: BLE001 - e.g. a GUI module without its system library: not ours to check
            pass
    interpreter = _mapped()  # the interpreter's own libraries, wherever they live
    problems, dists = [], closure()
    for dist in dists:
        name, version = dist.metadata["Name"], dist.version
        for mod in top_modules(dist):
            before, before_mods = _mapped(), set(sys.modules)
            try:
                importlib.import_module(mod)
            except Exception as e:  # noqa: BLE001 - any import error is inspected, not raised
                if isinstance(e, OSError) or LIB_ERROR.search(str(e)):
                    # Blame the distribution whose code raised it (geoclip importing a broken soundfile is soundfile's).
                    culprit = _raised_by(e, dists) or dist
                    problems.append({"dist": culprit.metadata["Name"], "version": culprit.version, "module": mod,
                                     "kind": "missing", "detail": f"{type(e).__name__}: {e}".splitlines()[0]})
                continue
            new = _mapped() - before - interpreter
            outside = sorted(p for p in new if not allowed_outside(p, prefix))
            if outside:
                # The import may have pulled in another package that maps the library (geoclip -> soundfile):
                # blame the one whose own import maps it with the fewest other libraries.
                pulled = {m.partition(".")[0] for m in set(sys.modules) - before_mods} - {mod}
                culprit = _blame_system(outside, sorted(pulled), dists) or dist
                problems.append({"dist": culprit.metadata["Name"], "version": culprit.version, "module": mod,
                                 "kind": "system",
                                 "detail": "loads " + ", ".join(outside) + f", not a library inside {sys.prefix}"})
    return problems


def describe(p: dict) -> str:
    """One line per problem: the package, what was found, the fix."""
    return (f"{p['dist']} {p['version']} (import {p['module']}): {p['detail']}; fix: reinstall its platform wheel, "
            f"e.g. `{sys.executable} -m pip install --force-reinstall --no-deps --only-binary=:all: "
            f"{p['dist']}=={p['version']}`")


RECORD = Path(sys.prefix) / ".native-check.json"


def environment_digest() -> str:
    """sha256 over every installed distribution's name, version and RECORD file: any install, upgrade or
    reinstall (a wheel swapped for another of the same version included) changes it."""
    h = hashlib.sha256()
    for dist in sorted(md.distributions(), key=lambda d: (d.metadata["Name"] or "", d.version)):
        record = dist.read_text("RECORD") or ""
        h.update(f"{dist.metadata['Name']}=={dist.version}:{hashlib.sha256(record.encode()).hexdigest()}\n".encode())
    return h.hexdigest()


def main(argv: list[str]) -> int:
    digest = environment_digest()
    try:
        reused = "--reuse" in argv and json.loads(RECORD.read_text()).get("environment") == digest
    except (OSError, ValueError):
        reused = False
    problems = [] if reused else check()
    if not problems and not reused:
        try:  # atomic: a reader sees the old record or the new one
            tmp = RECORD.with_suffix(".tmp")
            tmp.write_text(json.dumps({"environment": digest, "problems": []}))
            os.replace(tmp, RECORD)
        except OSError:
            pass  # a read-only venv: the next run checks again
    if "--json" in argv:
        print(json.dumps(problems))
    else:
        for p in problems:
            print("native_check:", describe(p))
        if not problems:
            print(f"native_check: every native library of soundloc's dependencies loads from {sys.prefix}"
                  + (f" (recorded for this environment in {RECORD})" if reused else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
