"""The README a newcomer reads: every figure it shows exists, and every chapter has one."""
from __future__ import annotations

import re

from soundloc import paths
from soundloc.runner import chapters

ROOT = paths.repo_root()
README = ROOT / "README.md"


def _figure_refs(text: str) -> set[str]:
    return set(re.findall(r"figures/([0-9]{2}_[A-Za-z0-9_]+\.(?:png|html|md|csv))", text))


def test_every_figure_the_readme_names_exists():
    refs = _figure_refs(README.read_text())
    assert len(refs) >= 9
    missing = sorted(r for r in refs if not (ROOT / "figures" / r).is_file())
    assert not missing, f"README names figures that make book did not write: {missing}"


def test_every_chapter_has_an_embedded_figure():
    shown = re.findall(r'<img src="figures/([0-9]{2})_[^"]+\.png"', README.read_text())
    want = sorted(src.stem[:2] for src in chapters())
    assert sorted(shown) == want


def test_figure_refs_parser_on_a_hand_written_case():
    text = "see `figures/03_posterior_maps.png` and figures/04_real_error_vs_grouping.md, not figures/x.png"
    assert _figure_refs(text) == {"03_posterior_maps.png", "04_real_error_vs_grouping.md"}
