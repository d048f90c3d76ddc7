"""Provenance of quoted numbers: every result a Markdown text quotes must be in the table it cites.

The convention (for the README's results section and any other quoting text):

- A **scope** is the text between two headings (``#``...) or ``<!-- tables: ... -->`` comments.
- A scope cites the tables named in its ``<!-- tables: 02_annotated 04_real_* -->`` comment and any
  ``figures/NN_name.md`` / ``.csv`` it names (globs allowed); the numbers are looked up in their CSVs.
- **Checked numbers**: in prose, each number that carries a unit (``km`` or ``%``), including every
  number of a chain like ``988 to 985 km``, ``1,690 -> 1,576 km``, ``4,025 / 3,058 km``,
  ``7,948 ± 28 km``; in a Markdown table, every number in a column whose header says ``km`` or ``%``.
- **Not checked**: settings and thresholds written with ``<=``, ``>=``, ``<``, ``>``, ``~``, ``within``,
  ``over`` just before them, levels such as ``95 % CI`` / ``90 % credible``, and anything inside backticks.
- A number is backed when some value ``v`` of a cited table rounds to it at the text's precision
  (``988`` matches 987.6; ``9.4`` matches 9.43); a ``%`` number may also match ``100 * v`` (fractions).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_NUM_RE = re.compile(rf"(?<![\w.,]){NUM}")
_CHAIN = re.compile(rf"(?<![\w.,])((?:(?:{NUM})\s*(?:->|→|to|/|±|–|and|or)\s*)*(?:{NUM}))\s*(km|%)(?!\w)(?!\s*(?:CI|credible|confidence))")
_EXEMPT = re.compile(r"(?:<=|>=|≤|≥|<|>|~|\bwithin|\bover)\s*$")
_CITE = re.compile(r"<!--\s*tables:\s*(.*?)-->", re.S)
_REF = re.compile(r"figures/([0-9]{2}_[A-Za-z0-9_*]+)\.(?:md|csv)")


@dataclass(frozen=True)
class Quote:
    line: int  # 1-based line number in the text
    text: str  # the number as written, e.g. "1,263"
    unit: str  # "km" or "%"


def quoted_numbers(scope: str, first_line: int = 1) -> list[Quote]:
    """Markdown text -> the checked numbers it quotes (see the module docstring), with line numbers."""
    out, header = [], None
    for k, line in enumerate(scope.splitlines()):
        n = first_line + k
        line = re.sub(r"`[^`]*`", lambda m: " " * len(m.group()), line)  # code is not a result
        if line.lstrip().startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if all(re.fullmatch(r":?-+:?", c) for c in cells):
                continue
            if header is None:
                header = cells
                continue
            for h, c in zip(header, cells):
                unit = "%" if "%" in h else "km" if "km" in h else None
                if unit:
                    out += [Quote(n, m.group(), unit) for m in _NUM_RE.finditer(c)]
            continue
        header = None
        for m in _CHAIN.finditer(line):
            if _EXEMPT.search(line[:m.start()]):
                continue
            out += [Quote(n, x.group(), m.group(2)) for x in _NUM_RE.finditer(m.group(1))]
    return out


def scopes(text: str) -> list[tuple[int, str, list[str]]]:
    """Markdown -> [(first line, scope text, cited table names)] split at headings and tables comments."""
    lines, out = text.splitlines(), []
    cuts = [i for i, l in enumerate(lines) if l.startswith("#") or _CITE.search(l)] + [len(lines)]
    for a, b in zip([0] + cuts, cuts):
        body = "\n".join(lines[a:b])
        names = [n for m in _CITE.finditer(body) for n in m.group(1).split()] + _REF.findall(body)
        out.append((a + 1, body, [re.sub(r"\.(md|csv)$", "", n) for n in names]))
    return out


def table_values(figures: Path, names: list[str]) -> np.ndarray:
    """Cited table names (globs allowed) -> every number in their CSVs (numeric cells and numbers in text)."""
    vals = []
    for name in names:
        paths = sorted(Path(figures).glob(f"{name}.csv"))
        if not paths:
            raise FileNotFoundError(f"cited table {name!r} has no CSV in {figures}")
        for p in paths:
            df = pd.read_csv(p)
            for c in df:
                col = df[c]
                if pd.api.types.is_numeric_dtype(col):
                    vals.append(col.to_numpy(float))
                else:
                    vals.append(np.array([float(x.replace(",", "")) for s in col.dropna().astype(str)
                                          for x in _NUM_RE.findall(s)], float))
    v = np.concatenate(vals) if vals else np.zeros(0)
    return v[np.isfinite(v)]


def backed(q: Quote, values: np.ndarray) -> bool:
    """Is the quoted number some table value at the quote's precision?"""
    x = float(q.text.replace(",", ""))
    dec = len(q.text.split(".")[1]) if "." in q.text else 0
    tol = 0.5 * 10.0 ** -dec + 1e-9
    cand = np.concatenate([values, 100 * values[np.abs(values) <= 1]]) if q.unit == "%" else values
    return bool(np.any(np.abs(np.abs(cand) - x) <= tol))


def unbacked_numbers(text: str, figures: Path, first_line: int = 1) -> list[str]:
    """Markdown text -> one message per quoted number not found in the tables its scope cites."""
    bad = []
    for first, body, names in scopes(text):
        quotes = quoted_numbers(body, first + first_line - 1)
        if not quotes:
            continue
        if not names:
            bad += [f"line {q.line}: {q.text} {q.unit} quoted in a scope that cites no table" for q in quotes]
            continue
        values = table_values(figures, names)
        bad += [f"line {q.line}: {q.text} {q.unit} not in {', '.join(names)}" for q in quotes if not backed(q, values)]
    return bad


def section(text: str, heading: str) -> tuple[int, str]:
    """The ``## heading`` section of a Markdown text (up to the next ``## ``) -> (first line, text)."""
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip() == f"## {heading}"), None)
    if start is None:
        raise ValueError(f"no '## {heading}' section")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return start + 1, "\n".join(lines[start:end])
