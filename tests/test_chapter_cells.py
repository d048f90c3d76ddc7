"""Chapters narrate and call the package: no code cell longer than about 20 lines (the style rule of the book)."""
from soundloc.runner import chapters

MAX_LINES = 20
PENDING: dict[str, int] = {}  # chapters whose longest cell is still being cut, with that cell's length


def code_cells(text: str) -> list[tuple[int, int]]:
    """py:percent source -> (first line, code lines) per code cell; blank and comment lines do not count."""
    cells, kind, start, n = [], None, 0, 0
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith("# %%"):
            if kind == "code":
                cells.append((start, n))
            kind, start, n = ("markdown" if "[markdown]" in line else "code"), i, 0
        elif kind == "code" and line.strip() and not line.lstrip().startswith("#"):
            n += 1
    if kind == "code":
        cells.append((start, n))
    return cells


def test_code_cells_count_code_lines_only():
    src = "# %% [markdown]\n# text\n# %%\nimport x\n\n# why\nx.f(\n    1)\n# %% tags=['parameters']\nA = 1\n"
    assert code_cells(src) == [(3, 3), (9, 1)]


def test_no_chapter_cell_is_longer_than_the_limit():
    long = {}
    for p in chapters():
        worst = max(n for _, n in code_cells(p.read_text()))
        if worst > PENDING.get(p.stem, MAX_LINES):
            long[p.stem] = [(line, n) for line, n in code_cells(p.read_text()) if n > MAX_LINES]
    assert not long, f"code cells over {MAX_LINES} lines (first line, code lines): {long}"
