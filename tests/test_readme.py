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


# ---- every number the README's results quote is in the committed table they cite ---------------
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from soundloc.provenance import quoted_numbers, section, unbacked_numbers  # noqa: E402

RESULTS = "Latest measured results"


def _tables(tmp_path):
    pd.DataFrame({"method": ["ours", "paper-style"], "median_km": [987.6, 3160.2], "region_%": [9.43, 2.3],
                  "median_km 95% CI": ["[912, 1,043]", "[3,050, 3,270]"]}).to_csv(tmp_path / "02_annotated.csv", index=False)
    pd.DataFrame({"grouping": ["res 5"], "median_km": [581.2], "coverage": [0.734]}).to_csv(tmp_path / "04_real_table4.csv", index=False)
    return tmp_path


GOOD = """## Latest measured results
<!-- tables: 02_annotated -->
Ours reaches **988 km** (95 % CI 912 to 1,043 km), 9.4 % region; like for like 3,160 km. Settings such as
the <= 900 km target, ~60 km site uncertainty, `200 km` in code and within 200 km are not results.

| method | median km | region % |
|---|---|---|
| ours | 988 | 9.4 |

Grouped (see `figures/04_real_table4.md`): 581 km, sets cover 73 %.
"""


def test_provenance_accepts_backed_numbers(tmp_path):
    assert unbacked_numbers(GOOD, _tables(tmp_path)) == []
    got = [(q.text, q.unit) for q in quoted_numbers(GOOD)]
    assert got == [("988", "km"), ("912", "km"), ("1,043", "km"), ("9.4", "%"), ("3,160", "km"),
                   ("988", "km"), ("9.4", "%"), ("581", "km"), ("73", "%")]


@pytest.mark.parametrize("old,new", [("988 km", "989 km"), ("| 9.4 |", "| 9.5 |"), ("3,160 km", "3,161 km"),
                                     ("581 km", "582 km"), ("1,043 km", "1,044 km")])
def test_provenance_fails_when_a_number_is_changed(tmp_path, old, new):
    bad = unbacked_numbers(GOOD.replace(old, new, 1), _tables(tmp_path))
    assert len(bad) == 1 and new.strip("| ").split()[0] in bad[0]


def test_provenance_needs_a_citation_and_an_existing_table(tmp_path):
    bad = unbacked_numbers("## R\nOurs: 988 km.\n", _tables(tmp_path))
    assert bad == ["line 2: 988 km quoted in a scope that cites no table"]
    with pytest.raises(FileNotFoundError, match="09_missing"):
        unbacked_numbers("<!-- tables: 09_missing -->\n988 km\n", _tables(tmp_path))


def test_readme_results_come_from_the_tables_they_cite():
    first, text = section(README.read_text(), RESULTS)
    bad = unbacked_numbers(text, ROOT / "figures", first)
    assert not bad, "README numbers not backed by the tables they cite:\n" + "\n".join(bad)


def _package_map_names(text: str) -> set[str]:
    """README text -> the backticked names in its "Package map" section (``agclip/`` -> ``agclip``)."""
    section = re.search(r"^## Package map.*?(?=^## )", text, re.S | re.M)
    return {n.rstrip("/") for n in re.findall(r"`([A-Za-z_][\w/]*)`", section.group(0))} if section else set()


def test_package_map_parser_on_a_hand_written_case():
    text = "## Intro\n`intro_only`\n## Package map (x)\n| a | `sphere` (haversine), `agclip/` |\n## Next\n`later`\n"
    assert _package_map_names(text) == {"sphere", "agclip"}


def test_package_map_names_every_module():
    pkg = ROOT / "lib" / "soundloc"
    modules = {p.stem for p in pkg.glob("*.py") if not p.stem.startswith("__")}
    modules |= {p.parent.name for p in pkg.glob("*/__init__.py")}
    missing = sorted(modules - _package_map_names(README.read_text()))
    assert not missing, f"README's package map does not name {missing}: a newcomer would not know which room holds them"


def test_readme_is_a_front_door_of_at_most_150_lines():
    # issue 19's diet: measurement history and full tables live in docs/performance.md and figures/RESULTS.md
    n = len(README.read_text().splitlines())
    assert n <= 150, f"README.md has {n} lines; move detail to docs/performance.md or the book's pages"
