"""Table writing and generated readings: small values keep 2 significant digits, readings land in NN_*.md."""
import numpy as np
import pandas as pd
import pytest

from soundloc import book
from soundloc.io import markdown_table, save_table


def test_small_values_keep_two_significant_digits(tmp_path):
    df = pd.DataFrame({"method": ["a", "b"], "threshold": [0.1, 0.03], "n": [3, 4], "km": [1234.56, np.nan]})
    md = markdown_table(df, ".1f")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines()[2:]]
    assert rows == [["a", "0.1", "3", "1234.6"], ["b", "0.03", "4", ""]]  # NaN is a blank cell
    csv, mdp = save_table(df, tmp_path / "t", title="T")
    assert " 0.03 " in mdp.read_text() and mdp.read_text().startswith("**T**")
    assert pd.read_csv(csv).threshold.tolist() == [0.1, 0.03]  # the CSV keeps full precision


def test_zero_stays_zero_and_other_formats_pass_through():
    md = markdown_table(pd.DataFrame({"x": [0.0, 0.004, 12.25]}), ".1f")
    cells = [line.strip("| ").strip() for line in md.splitlines()[2:]]
    assert cells == ["0.0", "0.004", "12.2"]
    assert "0.1235" in markdown_table(pd.DataFrame({"x": [0.123456]}), ".4g")


def test_reading_writes_generated_sentences(tmp_path):
    ch = book.start("99", SMALL=True, SEED=0, OUT=str(tmp_path))
    t = pd.DataFrame({"method": ["a", "b"], "median_km": [900.0, 1200.0]})
    best = t.loc[t.median_km.idxmin()]
    text = ch.reading("reading", [f"{best.method} is the best at {best.median_km:,.0f} km."], title="Reading")
    assert (tmp_path / "99_reading.md").read_text() == text
    assert "a is the best at 900 km." in text
    with pytest.raises(ValueError, match="non-empty"):
        ch.reading("empty", [])


def test_say_compare_calls_a_tie_a_tie():
    tie = {"metric": "median_error", "diff": -12.0, "lo": -40.0, "hi": 15.0, "verdict": "tie"}
    assert "tie" in book.say_compare(tie, "A", "B") and "includes 0" in book.say_compare(tie, "A", "B")
    win = {"metric": "region", "diff": 0.021, "lo": 0.01, "hi": 0.03, "verdict": "better"}
    assert book.say_compare(win, "A", "B", unit="%") == "A is better than B on the region (+2.1 points, 95 % CI [+1.0, +3.0])."
