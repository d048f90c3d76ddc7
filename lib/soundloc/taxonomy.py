"""Taxonomy reconciliation: map species names a range model lacks onto its own taxonomy.

Datasets and models follow different checklists (XCDC: recent IOC/eBird names such as
*Coloeus monedula*; BirdNET V2.4: eBird 2021, *Corvus monedula*). A name the model does not
know is mapped by, in order: (1) a curated split/lump table (``data/taxonomy_synonyms.csv``,
e.g. *Setophaga auduboni* -> *S. coronata*); (2) a curated genus move with the same epithet
stem (*Leuconotopicus villosus* -> *Dryobates villosus*); (3) an equal common name *and* the
same genus or epithet stem (common names alone collide across continents: "Green Tree Frog").
Everything mapped is returned for reporting; nothing is mapped silently.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pandas as pd

SYNONYMS_CSV = Path(__file__).parent / "data" / "taxonomy_synonyms.csv"


@lru_cache(maxsize=1)
def curated() -> tuple[dict, dict]:
    """(genus moves {genus: [equivalent genera]} both ways, species {other name: model name})."""
    t = pd.read_csv(SYNONYMS_CSV)
    moves: dict[str, list[str]] = {}
    for a, b in zip(t.name[t.kind == "genus"], t.model_name[t.kind == "genus"]):
        moves.setdefault(a, []).append(b)
        moves.setdefault(b, []).append(a)
    sp = t[t.kind == "species"]
    return moves, dict(zip(sp.name, sp.model_name))


def _stem(epithet: str) -> str:
    """Epithet without its Latin gender ending (cinerea / cinereus -> cinere)."""
    e = epithet.casefold()
    for suffix in ("us", "um", "is", "a", "e"):
        if e.endswith(suffix) and len(e) - len(suffix) >= 4:
            return e[:-len(suffix)]
    return e


def _key(common: str) -> str:
    """Common name -> matching key (case, hyphens, apostrophes and spaces folded)."""
    return re.sub(r"[^a-z]", "", str(common).casefold())


def reconcile(model, names, common_names=None) -> pd.DataFrame:
    """Names (+ their common names) unknown to ``model`` -> DataFrame(name, common, mapped_to, rule).

    ``model`` needs ``species`` and ``common_names``; rows with ``mapped_to`` None stay unknown.
    """
    commons = dict(zip(names, common_names)) if common_names is not None else {}
    _, unknown = model.match(sorted(set(names)))
    genus_moves, species_map = curated()
    known = set(model.species)
    by_common = {}
    for sci, com in zip(model.species, model.common_names):
        by_common.setdefault(_key(com), sci)
    by_genus_stem = {}
    for sci in model.species:
        parts = sci.split()
        if len(parts) >= 2:
            by_genus_stem[(parts[0], _stem(parts[1]))] = sci
    rows = []
    for n in unknown:
        com, parts = commons.get(n), n.split()
        hit, rule = None, None
        if species_map.get(n) in known:
            hit, rule = species_map[n], "curated split/lump"
        elif len(parts) >= 2 and any((g, _stem(parts[1])) in by_genus_stem for g in genus_moves.get(parts[0], [])):
            g = next(g for g in genus_moves[parts[0]] if (g, _stem(parts[1])) in by_genus_stem)
            hit, rule = by_genus_stem[(g, _stem(parts[1]))], "curated genus move"
        elif com and _key(com) in by_common:
            cand = by_common[_key(com)].split()
            if len(parts) >= 2 and (cand[0] == parts[0] or _stem(cand[1]) == _stem(parts[1])):
                hit, rule = by_common[_key(com)], "common name + genus/epithet"
        rows.append({"name": n, "common": com, "mapped_to": hit, "rule": rule})
    return pd.DataFrame(rows, columns=["name", "common", "mapped_to", "rule"])


def apply(model, table: pd.DataFrame) -> int:
    """Register the mapped rows of a ``reconcile`` table as synonyms on ``model`` -> number mapped."""
    ok = table.dropna(subset=["mapped_to"])
    model.add_synonyms(dict(zip(ok["name"], ok["mapped_to"])))
    return len(ok)
