"""The book as a whole: every chapter has its own notebook test file, named after it."""
import re
from pathlib import Path

from nb_chapters import CHAPTERS


def test_every_chapter_is_tested():
    """Each chapter NN_name has ``test_chapter_NN_name.py`` here, holding a ``test_NN_name``."""
    here = Path(__file__).parent
    missing = [c for c in CHAPTERS if not (here / f"test_chapter_{c}.py").exists()
               or not re.search(rf"^def test_{c}\(", (here / f"test_chapter_{c}.py").read_text(), flags=re.M)]
    assert not missing, f"chapters without their notebook test file test_chapter_NN_name.py: {missing}"
    strays = [p.name for p in here.glob("test_*.py") if p.name != "test_book.py"
              and p.stem.removeprefix("test_chapter_") not in CHAPTERS]
    assert not strays, f"notebook test files not named after a chapter: {strays}"
