"""The package's shape: the layers contract in .importlinter holds, and no soundloc module takes part in an
import cycle (imports inside functions included)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import grimp

from soundloc import paths

ROOT = paths.repo_root()
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")  # the venv's import-linter


def _lint_imports(config: Path, pythonpath: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", str(config)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def import_cycles(package: str) -> list[list[str]]:
    """Modules of ``package`` that import each other, directly or through others -> one chain per cycle found
    (``[a, b, ..., a]``), each edge checked once; [] when the import graph is acyclic."""
    g = grimp.build_graph(package, cache_dir=None)
    found, seen = [], set()
    for m in sorted(g.modules):
        for d in sorted(g.find_modules_directly_imported_by(m)):
            chain = g.find_shortest_chain(importer=d, imported=m)
            if chain and frozenset(chain) not in seen:
                seen.add(frozenset(chain))
                found.append([m, *chain])
    return found


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


def test_layers_contract_is_kept():
    r = _lint_imports(ROOT / ".importlinter", ROOT / "lib", ROOT)
    assert r.returncode == 0, f"lint-imports: a layer imports from above it (see .importlinter):\n{r.stdout}\n{r.stderr}"
    assert "1 kept, 0 broken" in r.stdout


def test_layers_contract_fails_on_an_upward_import(tmp_path):
    _write_package(tmp_path, {"toy/__init__.py": "", "toy/high.py": "from . import low\n",
                              "toy/low.py": "def f():\n    from . import high  # an upward import, hidden in a function\n"})
    cfg = _write_package(tmp_path, {"toy.ini": """\
        [importlinter]
        root_package = toy

        [importlinter:contract:layers]
        name = toy layers
        type = layers
        containers =
            toy
        layers =
            high
            low
        """}) / "toy.ini"
    r = _lint_imports(cfg, tmp_path, tmp_path)
    assert r.returncode != 0 and "toy.low -> toy.high" in r.stdout


def test_no_import_cycle_among_soundloc_modules():
    cycles = import_cycles("soundloc")
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_import_cycles_finds_a_cycle_through_a_function_level_import(tmp_path, monkeypatch):
    _write_package(tmp_path, {"cyc/__init__.py": "", "cyc/a.py": "from . import b\n", "cyc/b.py": "from . import c\n",
                              "cyc/c.py": "def f():\n    from . import a\n", "cyc/d.py": "from . import a\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("cyc") == [["cyc.a", "cyc.b", "cyc.c", "cyc.a"]]


def test_rooms_stay_small_enough_to_read():
    """Issue 19's bars: no module over ~600 lines and no function over ~80, so a newcomer reads a room in one go."""
    import ast

    too_long = []
    for p in sorted((ROOT / "lib" / "soundloc").rglob("*.py")):
        text = p.read_text()
        name = p.relative_to(ROOT / "lib").as_posix()
        if len(text.splitlines()) > 600:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                too_long.append(f"{name}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, "split these by concern:\n" + "\n".join(too_long)
