"""`soundloc species-locate`: benchmark output, unknown species on stderr, fallbacks, bad input."""
import pandas as pd
import pytest

from soundloc.cli import main


def _run(tmp_path, text, *extra):
    inp, out = tmp_path / "in.csv", tmp_path / "out.csv"
    inp.write_text(text)
    return main(["species-locate", str(inp), "-o", str(out), "--gallery", "land2", "--quiet", *extra]), out


def test_species_locate_writes_benchmark_csv_and_reports(tmp_path, capsys):
    rc, out = _run(tmp_path, "audio_id,species,date\n"
                   "a,Gymnorhina tibicen;Dacelo novaeguineae;Notus species,2023-05-10\n"
                   "b,Notus species,2023-05-10\n"
                   "c,Coloeus monedula;Erithacus rubecula;Fringilla coelebs,2023-05-12\n", "--week-from-date")
    assert rc == 0
    err = capsys.readouterr().err
    assert "unknown species (not in birdnet_meta_v2.4): Notus species x2" in err
    assert "1 queries had no species the range model covers" in err and "e.g. b" in err
    assert "taxonomy: Coloeus monedula -> Corvus monedula" in err
    p = pd.read_csv(out)
    assert list(p.columns) == ["audio_id", "latitude", "longitude"] and list(p.audio_id) == ["a", "b", "c"]
    a, c = p.iloc[0], p.iloc[2]
    assert -45 < a.latitude < -10 and 110 < a.longitude < 155  # Australia
    assert 35 < c.latitude < 65 and -12 < c.longitude < 40  # Europe


@pytest.mark.parametrize("text,msg", [
    ("audio_id,species,date\na,Turdus merula,10/05/2023\n", "row 2: date '10/05/2023' is not YYYY-MM-DD"),
    ("audio_id,date\na,2023-05-10\n", "missing column(s) ['species']"),
    ("audio_id,species\na,Turdus merula\na,Turdus merula\n", "row 3: duplicate audio_id 'a' (first on row 2)"),
    ("", "in.csv: empty file (no header row)"),
])
def test_species_locate_bad_input_is_one_line_exit_2(tmp_path, capsys, text, msg):
    rc, _ = _run(tmp_path, text, "--week-from-date")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and msg in err and err.count("\n") == 0


def test_species_locate_details_adds_the_batch_columns(tmp_path, capsys):
    rc, out = _run(tmp_path, "audio_id,species,date\n"
                   "a,Gymnorhina tibicen;Dacelo novaeguineae,2023-05-10\n"
                   "b,Notus species,2023-05-10\n"
                   "c,Turdus migratorius,2023-05-12\n", "--week-from-date", "--details")
    assert rc == 0
    p = pd.read_csv(out, keep_default_na=False)
    assert list(p.columns) == ["audio_id", "latitude", "longitude", "area_km2_90", "expected_error_km", "decoder",
                               "top_species", "warnings"]
    assert p.warnings.tolist()[1] == "no_known_species" and p.top_species[0] == "Gymnorhina tibicen"
    # one species (American Robin) spreads wider than two Australian endemics together
    assert 0 < p.area_km2_90[0] < p.area_km2_90[2] and (p.expected_error_km > 0).all() and set(p.decoder) == {"argmax"}
    assert main(["eval", str(out), "--gold", str(out)]) == 0  # the benchmark scorer still reads it


def test_an_output_that_cannot_be_written_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "out.csv").mkdir()  # the output path is a folder
    rc, out = _run(tmp_path, "audio_id,species\na,Turdus merula\n")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1] == f"soundloc species-locate: error: {out}: Is a directory", err


LISTS = ("audio_id,species,date\n"
         "a,Gymnorhina tibicen;Dacelo novaeguineae,2023-05-10\n"
         "b,Notus species,2023-05-10\n"
         "c,Turdus migratorius,2023-05-12\n"
         "d,Erithacus rubecula;Fringilla coelebs,2023-06-01\n")


@pytest.mark.parametrize("details", [False, True])
def test_a_killed_species_locate_resumes_to_the_uninterrupted_table(tmp_path, capsys, details):
    """As `locate DIR -o` (soundloc.batch): finished rows are journaled; a rerun does only the rest."""
    extra = ["--week-from-date", "--gallery", "land2", "--quiet"] + (["--details"] if details else [])
    full, part = tmp_path / "full", tmp_path / "part"
    full.mkdir(), part.mkdir()
    (full / "in.csv").write_text(LISTS)
    assert main(["species-locate", str(full / "in.csv"), "-o", str(full / "out.csv"), *extra]) == 0
    # a run killed after two rows leaves those two in the journal: run on them, then on the whole list
    (part / "in.csv").write_text("".join(LISTS.splitlines(keepends=True)[:3]))
    assert main(["species-locate", str(part / "in.csv"), "-o", str(part / "out.csv"), *extra]) == 0
    (part / "in.csv").write_text(LISTS)
    capsys.readouterr()
    assert main(["species-locate", str(part / "in.csv"), "-o", str(part / "out.csv"), *extra]) == 0
    assert ", 2 already done" in capsys.readouterr().err.splitlines()[-1]
    assert (part / "out.csv").read_bytes() == (full / "out.csv").read_bytes()
    # other options on the same output: refused, not mixed
    assert main(["species-locate", str(part / "in.csv"), "-o", str(part / "out.csv"), *extra, "--decoder", "geomedian"]) == 2
    assert "this output was started with other options" in capsys.readouterr().err


def test_fresh_discards_the_journal_and_computes_every_row(tmp_path, capsys):
    """--fresh: a rerun after a change (other options, or the book's chapter 05 after a code change) starts over."""
    extra = ["--week-from-date", "--gallery", "land2", "--quiet"]
    (tmp_path / "in.csv").write_text(LISTS)
    out = tmp_path / "out.csv"
    assert main(["species-locate", str(tmp_path / "in.csv"), "-o", str(out), *extra]) == 0
    first = out.read_bytes()
    capsys.readouterr()
    assert main(["species-locate", str(tmp_path / "in.csv"), "-o", str(out), *extra, "--fresh"]) == 0
    assert ", 0 already done" in capsys.readouterr().err.splitlines()[-1]  # nothing resumed
    assert out.read_bytes() == first
    # other options are refused on resume, but start over with --fresh
    assert main(["species-locate", str(tmp_path / "in.csv"), "-o", str(out), *extra, "--decoder", "geomedian"]) == 2
    assert main(["species-locate", str(tmp_path / "in.csv"), "-o", str(out), *extra, "--decoder", "geomedian",
                 "--fresh"]) == 0
    assert out.read_bytes() != first
