"""Chapter config resolved once: ``book.start``'s SMALL / paper presets, and the recipes of ``soundloc.recipe``."""
import pytest

from soundloc import agclip, book, recipe, table1


@pytest.mark.parametrize("small", [True, False])
def test_presets_fill_only_parameters_left_none(tmp_path, small):
    ch = book.start("07", SMALL=small, SEED=3, DEVICE="cpu", OUT=str(tmp_path), GALLERY=None, N_VAL=None, N_TEST=42,
                    MAX_FALSE_RATE=0.05, types={"MAX_FALSE_RATE": float})
    assert ch.resolved("GALLERY", "N_VAL", "N_TEST") == (("land2", 150, 42) if small else ("land1", 500, 42))
    assert ch.resolved("MAX_FALSE_RATE") == 0.05  # no preset: as given
    other = book.start("05", SMALL=small, SEED=3, DEVICE="cpu", OUT=str(tmp_path), N_VAL=None)
    assert other.resolved("N_VAL") == (250 if small else None)  # presets are per chapter: 05's N_VAL is not 07's
    with pytest.raises(KeyError):
        ch.resolved("N_EVAL")  # a parameter the chapter did not declare


@pytest.mark.parametrize("small", [True, False])
def test_recipes_are_the_chapters_presets(tmp_path, small):
    ch = book.start("04", SMALL=small, SEED=5, DEVICE="cpu", OUT=str(tmp_path))
    want = (table1.BaselineConfig.small if small else table1.BaselineConfig.paper)(5, "cpu")
    assert recipe.baseline_config(ch) == want  # same config -> same zoo keys: nothing retrains
    assert recipe.baseline_config(ch, small=not small) != want
    assert recipe.baseline_config(ch, range_gallery="land2").range_gallery == "land2"
    assert recipe.agclip_config(ch) == (agclip.AGCLIPRunConfig.small if small else agclip.AGCLIPRunConfig.paper)(5, "cpu")
