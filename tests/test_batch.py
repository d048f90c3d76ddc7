"""Batches (soundloc.batch, `soundloc locate DIR|CSV -o`): resume after a kill, errors counted, bad rows named."""
import json
from functools import partial

import pandas as pd
import pytest

from soundloc import batch as B
from soundloc.cli import main
from soundloc.data.validate import DataError
from soundloc.devices import usable_cores


class _Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so the batch cannot count it as a per-file error."""


def _job(item):
    if "bad" in item.path:
        raise ValueError(f"{item.path}: not audio")
    return {"path": item.path, "value": len(item.path) ** 2}


def _journal_rows(out):
    """The rows of a batch's journal (after its first line, which names the job)."""
    return [json.loads(x) for x in B.journal_path(out).read_text().splitlines()[1:]]


def _items(n=8, bad=()):
    return [B.Item(f"r{i}", f"/x/{'bad' if i in bad else 'ok'}{i}.wav") for i in range(n)]


def test_a_killed_batch_rerun_gives_the_same_table(tmp_path):
    items = _items()
    B.run_batch(items, _job, tmp_path / "full.csv", progress=False)
    calls = []

    def dies_at_5(item):
        calls.append(item.id)
        if len(calls) == 5:
            raise _Killed()
        return _job(item)

    with pytest.raises(_Killed):
        B.run_batch(items, dies_at_5, tmp_path / "part.csv", progress=False)
    assert len(_journal_rows(tmp_path / "part.csv")) == 4  # finished rows kept
    calls.clear()
    rep = B.run_batch(items, dies_at_5, tmp_path / "part.csv", progress=False)
    assert calls == ["r4", "r5", "r6", "r7"] and (rep.n_resumed, rep.n_done) == (4, 4)  # the rerun skips finished rows
    assert (tmp_path / "part.csv").read_bytes() == (tmp_path / "full.csv").read_bytes()


def test_an_output_in_a_new_folder_is_written(tmp_path):
    """As the other commands' outputs (soundloc.io.atomic_path): the folder is made, not a journal's Errno 2."""
    out = tmp_path / "new" / "sub" / "r.csv"
    B.run_batch(_items(2), _job, out, progress=False)
    assert pd.read_csv(out).id.tolist() == ["r0", "r1"]


def test_a_torn_journal_line_is_redone(tmp_path):
    out = tmp_path / "t.csv"
    B.run_batch(_items(3), _job, out, progress=False)
    j = B.journal_path(out)
    lines = j.read_text().splitlines()
    j.write_text("\n".join(lines[:3]) + "\n" + lines[3][:10])  # killed in the middle of the third row's write
    rep = B.run_batch(_items(3), _job, out, progress=False)
    assert (rep.n_resumed, rep.n_done) == (2, 1) and len(pd.read_csv(out)) == 3


def test_errors_are_counted_reported_and_retried(tmp_path):
    out = tmp_path / "e.parquet"
    rep = B.run_batch(_items(6, bad={1, 4}), _job, out, progress=False)
    assert rep.errors == {"ValueError": 2} and rep.n_done == 4 and "2 errors (ValueError x2)" in rep.text()
    assert pd.read_parquet(out).id.tolist() == ["r0", "r2", "r3", "r5"]
    err = pd.read_csv(f"{out}.errors.csv")
    assert err.id.tolist() == ["r1", "r4"] and err.message.str.contains("not audio").all()
    rep = B.run_batch(_items(6), _job, out, progress=False)  # fixed files: only the failed ones run
    assert (rep.n_resumed, rep.n_done, sum(rep.errors.values())) == (4, 2, 0)
    assert pd.read_parquet(out).id.tolist() == [f"r{i}" for i in range(6)]


def test_a_rerun_with_other_options_is_refused_and_a_changed_item_redone(tmp_path):
    """The journal names the job: other options are refused, not mixed in; a row whose item changed is redone."""
    out = tmp_path / "o.csv"
    B.run_batch(_items(3), partial(_scaled, k=1), out, progress=False)
    with pytest.raises(ValueError, match=r"o.csv.journal.jsonl: this output was started with other options \(1 -> 2\)"):
        B.run_batch(_items(3), partial(_scaled, k=2), out, progress=False)
    items = _items(3)
    items[1] = B.Item("r1", "/x/ok1.wav", "2020-05-01")  # the same id, now with a date
    rep = B.run_batch(items, partial(_scaled, k=1), out, progress=False)
    assert (rep.n_resumed, rep.n_done) == (2, 1)
    assert pd.read_csv(out, keep_default_na=False).date.tolist() == ["", "2020-05-01", ""]
    assert "_item" not in pd.read_csv(out).columns


def _scaled(item, k=1):
    return {"path": item.path, "date": item.date or "", "value": k * len(item.path)}


def test_local_process_pool_matches_inline(tmp_path):
    items = _items(10, bad={3})
    B.run_batch(items, _job, tmp_path / "a.csv", progress=False)
    rep = B.run_batch(items, _job, tmp_path / "b.csv", workers=2, progress=False)
    assert rep.errors == {"ValueError": 1}
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def _threads_job(item):
    from soundloc.devices import cpu_threads
    return {"path": item.path, "threads": cpu_threads()}


def test_pool_workers_share_the_cores(tmp_path, monkeypatch):
    monkeypatch.delenv("SOUNDLOC_TORCH_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    B.run_batch(_items(4), _threads_job, tmp_path / "a.csv", workers=2, progress=False)
    assert (pd.read_csv(tmp_path / "a.csv").threads == max(1, usable_cores() // 2)).all()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's setting is kept
    B.run_batch(_items(4), _threads_job, tmp_path / "b.csv", workers=2, progress=False)
    assert (pd.read_csv(tmp_path / "b.csv").threads == 3).all()


def test_read_items_names_bad_rows(tmp_path):
    ok = tmp_path / "ok.csv"
    ok.write_text("path,date\na.wav,2020-03-15\n/abs/b.wav,\n")
    items = B.read_items(ok)
    assert items[0] == B.Item("a.wav", str(tmp_path / "a.wav"), "2020-03-15") and items[1].date is None
    for text, msg in (("path,date\na.wav,2020-03-15\nb.wav,2020-02-30\n", "row 3: date '2020-02-30' is not YYYY-MM-DD"),
                      ("path\na.wav\na.wav\n", "row 3: duplicate id 'a.wav' \\(first on row 2\\)"),
                      ("path,date\na.wav,\n,2020-01-01\n", "row 3: empty path"),
                      ("file,date\na.wav,\n", r"bad.csv: row 1: missing column\(s\) \['path'\]")):
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(DataError, match=msg):
            B.read_items(bad)
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("sub/x.mp3", "y.WAV", "notes.txt"):
        (tmp_path / "d" / name).write_text("")
    assert [i.id for i in B.read_items(tmp_path / "d")] == ["sub/x.mp3", "y.WAV"]


def test_a_batch_that_cannot_be_what_was_meant_is_one_line_exit_2(tmp_path, capsys):
    """An empty folder, two files of one name, a bad --device: named, exit 2."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in "ab":
        (tmp_path / d / "x.wav").write_text("")
    for argv, msg in (
            (["locate", str(tmp_path / "empty"), "-o", str(tmp_path / "r.csv")],
             f"{tmp_path / 'empty'}: no audio files (.wav, .flac, .ogg, .mp3, .m4a, .opus) in this folder or below"),
            (["locate", str(tmp_path / "a" / "x.wav"), str(tmp_path / "b" / "x.wav"), "-o", str(tmp_path / "r.csv")],
             "batch item ids must be unique: 'x.wav' is the id of 2 items (give a CSV with an id column)"),
            (["species-locate", str(tmp_path / "a" / "x.wav"), "-o", str(tmp_path / "r.csv"), "--device", "gpu"],
             "argument --device: 'gpu': ")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
    assert not (tmp_path / "r.csv").exists()


def test_an_audio_error_is_counted_by_its_reason(tmp_path):
    from soundloc.audio import AudioError

    def job(item):
        raise AudioError(item.path, "truncated", "its header promises 3.00 s, only 1.00 s are there")

    rep = B.run_batch(_items(2), job, tmp_path / "t.csv", progress=False)
    assert rep.errors == {"AudioError (truncated)": 2} and "2 errors (AudioError (truncated) x2)" in rep.text()


def test_cli_batch_on_a_real_recording_and_a_broken_file(mirror, tmp_path, capsys, one_thread):
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    lst = tmp_path / "list.csv"
    lst.write_text(f"path,date\n{mirror / 'audio' / 'XC563936_soundscape.mp3'},2020-03-15\n{broken},\n")
    out = tmp_path / "res.csv"
    assert main(["locate", str(lst), "-o", str(out), "--gallery", "land2", "--quiet"]) == 1  # finished, 1 skipped
    assert "2 recordings: 1 located this run, 0 already done, 1 errors" in capsys.readouterr().err
    r = pd.read_csv(out)
    assert len(r) == 1 and r.top_species[0] == "Junco hyemalis" and r.area_km2_90[0] > 0 and r.decoder[0] == "mass_within"
    assert abs(r.latitude[0] - 47.7) < 5 and pd.isna(r.warnings[0])
    assert pd.read_csv(f"{out}.errors.csv").path.tolist() == [str(broken)]
    assert main(["locate", str(lst), "-o", str(out), "--gallery", "land2", "--quiet"]) == 1
    assert "0 located this run, 1 already done, 1 errors" in capsys.readouterr().err
    lst.write_text(f"path,date\n{mirror / 'audio' / 'XC563936_soundscape.mp3'},2020-03-15\n")
    assert main(["locate", str(lst), "-o", str(out), "--gallery", "land2", "--quiet"]) == 0  # every input has its row
    assert "1 recordings: 0 located this run, 1 already done, 0 errors" in capsys.readouterr().err
    assert main(["locate", str(lst), "--gallery", "land2"]) == 2
    assert "a folder or CSV is a batch: add -o" in capsys.readouterr().err


def test_check_claims_batch_flags_the_false_claim_and_names_bad_rows(mirror, tmp_path, capsys, one_thread):
    sea = mirror / "audio" / "XC563936_soundscape.mp3"
    claims = tmp_path / "claims.csv"
    claims.write_text(f"id,path,lat,lon,date\ntrue,{sea},47.6766,-122.294,2020-03-15\nparis,{sea},48.8566,2.3522,2020-03-15\n")
    out = tmp_path / "flags.csv"
    assert main(["check", "--claims", str(claims), "-o", str(out), "--gallery", "land2", "--quiet"]) == 0
    assert "2 claims: 2 checked this run" in capsys.readouterr().err
    f = pd.read_csv(out).set_index("id")
    assert f.verdict.to_dict() == {"true": "consistent", "paris": "inconsistent"}
    assert f.flag.to_dict() == {"true": False, "paris": True} and "Junco hyemalis" in f.out_of_range["paris"]
    for text, msg in (("path,lat,lon\na.wav,95,0\n", "row 2: lat '95' outside [-90, 90]"),
                      ("path,lat,lon,date\na.wav,1,2,2020-01-01\nb.wav,north,2,\n", "row 3: lat 'north' is not a number"),
                      ("path,lat,lon,date\na.wav,1,2,2020-01-41\n", "row 2: date '2020-01-41' is not YYYY-MM-DD"),
                      ("path,lat\na.wav,1\n", "missing column(s) ['lon']")):
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        assert main(["check", "--claims", str(bad), "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("soundloc check: error: ") and msg in err, err
    assert main(["check", "--claims", str(claims)]) == 2 and "--claims needs -o" in capsys.readouterr().err


def test_exit_codes_are_one_policy_for_every_batch(tmp_path, capsys, monkeypatch):
    """0 all done, 1 finished but inputs skipped (counted in the summary), 2 bad input before any work; in --help."""
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    claims = tmp_path / "claims.csv"
    claims.write_text(f"path,lat,lon\n{broken},47.7,-122.3\n")
    assert main(["check", "--claims", str(claims), "-o", str(tmp_path / "f.csv"), "--gallery", "land2", "--quiet"]) == 1
    assert "1 claims: 0 checked this run, 0 already done, 1 errors (AudioError (unreadable) x1)" in capsys.readouterr().err
    inp = tmp_path / "lists.csv"
    inp.write_text("audio_id,species\na,Turdus merula\nb,Erithacus rubecula\n")
    real = B.SpeciesListJob.prepare

    def fails_on_b(job, items):
        if any(it.id == "b" for it in items):
            raise RuntimeError("out of memory")
        real(job, items)

    monkeypatch.setattr(B.SpeciesListJob, "prepare", fails_on_b)
    assert main(["species-locate", str(inp), "-o", str(tmp_path / "p.csv"), "--gallery", "land2", "--quiet"]) == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert "2 queries: 1 located from species, 0 fell back to the prior, 0 already done, 1 errors (RuntimeError x1)" in err
    monkeypatch.undo()
    assert main(["species-locate", str(inp), "-o", str(tmp_path / "p.csv"), "--gallery", "land2", "--quiet"]) == 0
    assert "1 located from species, 0 fell back to the prior, 1 already done;" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "  1    a batch finished and wrote its output but skipped some inputs" in out
    assert "  130  interrupted (Ctrl-C)" in out


def test_dask_local_cluster_of_two_workers_gives_the_same_table(tmp_path):
    distributed = pytest.importorskip("distributed")
    items = _items(10, bad={2})
    B.run_batch(items, _job, tmp_path / "a.csv", progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert len(cluster.workers) == 2
        rep = B.run_batch(items, _job, tmp_path / "b.csv", progress=False, scheduler=cluster.scheduler_address)
    assert rep.errors == {"ValueError": 1} and rep.n_done == 9
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


class _ChunkJob:
    """A job with shared per-chunk work (as LocateJob scores BirdNET windows of several files together)."""

    chunk = 3

    def __init__(self, fail_prepare=False, die_at=None):
        self.prepared, self.fail_prepare, self.die_at = [], fail_prepare, die_at

    def prepare(self, items):
        self.prepared.append([it.id for it in items])
        if self.fail_prepare:
            raise RuntimeError("shared work failed")

    def __call__(self, item):
        if item.id == self.die_at:
            raise _Killed
        return _job(item)


def test_a_job_with_prepare_gets_chunks_and_the_same_table(tmp_path):
    items = _items(8, bad={4})
    B.run_batch(items, _job, tmp_path / "a.csv", progress=False)
    job = _ChunkJob()
    rep = B.run_batch(items, job, tmp_path / "b.csv", progress=False)
    assert job.prepared == [["r0", "r1", "r2"], ["r3", "r4", "r5"], ["r6", "r7"]] and rep.errors == {"ValueError": 1}
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    # a failing prepare leaves every item to its own call; process workers give the same table
    B.run_batch(items, _ChunkJob(fail_prepare=True), tmp_path / "c.csv", progress=False)
    B.run_batch(items, _ChunkJob(), tmp_path / "d.csv", workers=2, progress=False)
    for x in "cd":
        assert (tmp_path / "a.csv").read_bytes() == (tmp_path / f"{x}.csv").read_bytes()
    # inline, each row is journaled as soon as it is done: a kill inside a chunk keeps the chunk's finished rows
    with pytest.raises(_Killed):
        B.run_batch(_items(8), _ChunkJob(die_at="r5"), tmp_path / "e.csv", progress=False)
    assert len(_journal_rows(tmp_path / "e.csv")) == 5


def test_a_locate_row_does_not_depend_on_the_rows_before(mirror, one_thread):
    """A batch row is the same alone, after other rows or resumed after a kill: range maps memoised for other
    species (summed in float32 with them) must not leak into it."""
    from soundloc.locator import LocateJob, LocateOptions, locate_species, range_geolocator

    job = LocateJob(LocateOptions(gallery="land2"))
    item = B.Item("s", str(mirror / "audio" / "XC563936_soundscape.mp3"), "2020-03-15")
    alone = job(item)
    loc = range_geolocator("land2")
    many = list(loc.model.species[::20])  # another row's species, 327 of them, memoised for week 11
    locate_species([many], [[1.0] * len(many)], [11], LocateOptions(gallery="land2"))
    assert job(item) == alone
    assert len(loc._pcache[11][0]) < 20  # the row's maps were computed for its own species, not with the 327


def test_fresh_reaches_every_batch_command(tmp_path, monkeypatch):
    """--fresh is wired through locate -o, check --claims and species-locate to run_batch (resume stays the default)."""
    seen = []

    def record(items, job, out, **kw):
        seen.append(kw.get("fresh"))
        return B.BatchReport(0, 0, 0)

    monkeypatch.setattr(B, "run_batch", record)
    (tmp_path / "x.wav").write_text("")
    claims = tmp_path / "claims.csv"
    claims.write_text(f"path,lat,lon\n{tmp_path / 'x.wav'},47.7,-122.3\n")
    lists = tmp_path / "lists.csv"
    lists.write_text("audio_id,species\na,Turdus merula\n")
    for fresh in ([], ["--fresh"]):
        main(["locate", str(tmp_path), "-o", str(tmp_path / "r.csv"), "--quiet", *fresh])
        main(["check", "--claims", str(claims), "-o", str(tmp_path / "f.csv"), "--quiet", *fresh])
        main(["species-locate", str(lists), "-o", str(tmp_path / "p.csv"), "--gallery", "land2", "--quiet", *fresh])
    assert seen == [False] * 3 + [True] * 3
