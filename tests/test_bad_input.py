"""Bad-input suite (SPEC section 7, issue 7 item 1): each case with the exact error it gets.

Every case in the issue's list is covered here or by the test named in ``ELSEWHERE`` (which
``test_every_case_is_covered`` checks still exists); the tests in this file cover what those miss:
the exact wording of each message (it names the file/row and the problem), batches that mix
every kind of bad item (counted by reason, nothing silently dropped), and the cases no other
file tests (notebook parameters without running a notebook, an all-ocean gallery, a corrupt
partial download, checkpoints that are not ours).

| case                                   | where                                                         |
|----------------------------------------|---------------------------------------------------------------|
| unreadable audio, empty file           | here (exact messages); test_audio.py (reason keys)            |
| truncated WAV / MP3 (header says more) | here (exact messages)                                         |
| stereo, 8 kHz, 96 kHz (converted)      | here (stereo 96 kHz int16, no imaging at 8 kHz); test_audio.py|
| NaN samples, a 0.2 s recording         | here (exact messages); test_audio.py                          |
| batch of bad recordings                | here (load_many, every reason); test_spectrogram.py (cache)   |
| JSON: NaN / out-of-range / dup / date  | here (exact, all in one skip report); test_loaders.py         |
| CSV: NaN / out-of-range / dup / column | here (exact, skip report); test_loaders.py (xcdc, gold)       |
| unknown species names                  | here (counts + summary); test_cli_species_locate.py           |
| date in the wrong format               | here (JSON, exact); test_cli_species_locate.py (CSV)          |
| download: checksum mismatch            | here (exact message); test_download.py                        |
| download truncated mid-way             | here (corrupt resumed part); test_download.py (resume)        |
| checkpoint from another model config   | test_models.py, test_train.py; here (foreign/pickled files)   |
| notebook parameter of the wrong type   | here (book.start / check_types); tests/notebooks (papermill)  |
| gallery with no land points            | here (sphere.land_grid, range_geolocation.gallery)          |
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundloc import book
from soundloc.audio import AudioError, load_audio, load_many
from soundloc.data import DataError, load_inat, read_locations
from soundloc.data import download as dl

TESTS = Path(__file__).parent

ELSEWHERE = [
    "test_audio.py::test_unreadable_file", "test_audio.py::test_zero_byte_file", "test_audio.py::test_empty_recording",
    "test_audio.py::test_stereo_is_mixed_to_mono", "test_audio.py::test_resampled_to_22050",
    "test_audio.py::test_nan_samples", "test_audio.py::test_too_short", "test_audio.py::test_load_many_counts_skips",
    "test_spectrogram.py::test_cache_round_trip_resume_and_corruption",
    "test_loaders.py::test_inat_bad_rows_name_the_row", "test_loaders.py::test_inat_missing_key",
    "test_loaders.py::test_xcdc_bad_inputs", "test_loaders.py::test_gold_csv_validation",
    "test_cli_species_locate.py::test_species_locate_writes_benchmark_csv_and_reports",
    "test_cli_species_locate.py::test_species_locate_bad_input_is_one_line_exit_2",
    "test_download.py::test_corrupted_download_leaves_no_file", "test_download.py::test_truncated_download_resumes",
    "test_download.py::test_mirror_copy_and_bad_mirror",
    "test_models.py::test_checkpoint_round_trip_and_mismatch", "test_train.py::test_resume_refuses_other_config",
    "notebooks/test_chapter_00_data.py::test_parameter_of_wrong_type_is_a_clear_error",
]


def test_every_case_is_covered():
    """The tests this suite relies on for part of a case still exist under the same names."""
    for ref in ELSEWHERE:
        path, name = ref.split("::")
        src = (TESTS / path).read_text()
        assert re.search(rf"^def {name}\(", src, flags=re.M), f"{ref} is gone: cover its case here"


# --------------------------------------------------------------------------- audio

def _tone(seconds: float, sr: int, hz: float = 1000.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _bad_audio(tmp_path: Path, case: str) -> Path:
    """Write one bad recording of kind ``case`` and return its path."""
    p = tmp_path / f"{case}.wav"
    if case == "text":
        p.write_text("RIFF? no, a text file\n" * 20)
    elif case == "zero-byte":
        p.write_bytes(b"")
    elif case == "header-only":
        sf.write(p, np.zeros(0, np.float32), 22050)
    elif case == "nan":
        x = _tone(1.0, 22050)
        x[[10, 20]] = np.nan
        x[30] = np.inf
        sf.write(p, x, 22050, subtype="FLOAT")
    elif case == "short":
        sf.write(p, _tone(0.2, 22050), 22050)
    elif case == "silent":
        sf.write(p, np.zeros((44100, 2), np.float32), 44100)
    elif case == "folder":
        p.mkdir()
    elif case in ("cut-wav", "cut-mp3"):  # a copy stopped at a third: the header still promises 3 s
        fmt = case[-3:].upper()
        p = p.with_suffix("." + case[-3:])
        sf.write(p, _tone(3.0, 48000), 48000, format=fmt)
        p.write_bytes(p.read_bytes()[:p.stat().st_size // 3])
    elif case != "missing":
        raise ValueError(case)
    return p


# (case, the message after "<path>: ") -- a regex only where libsndfile's own words follow
AUDIO_MESSAGES = [
    ("text", r"unreadable \(not a readable audio file: Error opening '.*text\.wav': .+\)"),
    ("zero-byte", r"unreadable \(not a readable audio file: Error opening '.*zero-byte\.wav': .+\)"),
    ("header-only", re.escape("empty (0 samples)")),
    ("nan", re.escape("non-finite (3 NaN/inf samples)")),
    ("short", re.escape("too-short (0.200 s < min_seconds=0.5 s)")),
    ("silent", re.escape("silent (all 44100 samples are zero (digital silence))")),
    ("missing", re.escape("missing (no such file)")),
    ("folder", re.escape("unreadable (is a folder)")),
    ("cut-wav", re.escape("truncated (its header promises 3.00 s, only 1.00 s are there; re-export it "
                          "(e.g. sox in out.wav) to use that part)")),
    ("cut-mp3", r"truncated \(its header promises 3\.00 s, only 0\.\d\d s are there; .*\)"),
]


@pytest.mark.parametrize("case,message", AUDIO_MESSAGES, ids=[c for c, _ in AUDIO_MESSAGES])
def test_audio_error_names_file_and_problem(tmp_path, case, message):
    p = _bad_audio(tmp_path, case)
    with pytest.raises(AudioError) as ei:
        load_audio(p)
    assert re.fullmatch(re.escape(str(p)) + ": " + message, str(ei.value)), str(ei.value)
    assert ei.value.path == str(p) and isinstance(ei.value, ValueError)


def test_stereo_96k_int16_is_mixed_and_resampled(tmp_path):
    """Stereo is not an error: channels are averaged, then 96 kHz is resampled to 22.05 kHz."""
    p = tmp_path / "stereo96k.wav"
    left, right = _tone(1.5, 96000, 1000.0, 0.6), _tone(1.5, 96000, 1000.0, 0.2)
    sf.write(p, np.stack([left, right], axis=1), 96000, subtype="PCM_16")
    x = load_audio(p)
    assert x.dtype == np.float32 and x.shape == (int(1.5 * 22050),)
    # the mix of two in-phase 1 kHz tones (0.6, 0.2) is one 1 kHz tone of amplitude 0.4
    core = x[2000:-2000]
    assert abs(np.sqrt(2) * core.std() - 0.4) < 0.005
    spec = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spec) * 22050 / len(x) - 1000.0) < 1.0


def test_8k_upsampled_without_imaging(tmp_path):
    """8 kHz -> 22.05 kHz adds no energy above the old Nyquist (4 kHz): soxr's anti-imaging filter."""
    p = tmp_path / "tone8k.wav"
    sf.write(p, _tone(2.0, 8000, 3000.0), 8000, subtype="FLOAT")
    x = load_audio(p)
    assert len(x) == 2 * 22050
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2  # Hann: no leakage from the tone's abrupt ends
    freqs = np.fft.rfftfreq(len(x), 1 / 22050)
    # without the filter the 5 kHz image (8000 - 3000) would carry about as much power as the tone itself
    assert power[freqs > 4100].sum() < 1e-6 * power.sum()
    assert abs(freqs[np.argmax(power)] - 3000.0) < 1.0


def test_load_many_counts_every_reason(tmp_path):
    """A batch with each kind of bad file: converted files kept, bad ones counted by reason, never dropped silently."""
    good = []
    for name, sr, ch in (("stereo44k", 44100, 2), ("mono8k", 8000, 1), ("stereo96k", 96000, 2)):
        p = tmp_path / f"{name}.wav"
        x = _tone(1.0, sr)
        sf.write(p, np.stack([x] * ch, axis=1) if ch > 1 else x, sr)
        good.append(p)
    bad = [_bad_audio(tmp_path, c) for c, _ in AUDIO_MESSAGES]
    paths = [good[0], *bad[:4], good[1], *bad[4:], good[2]]
    waves, report = load_many(paths)
    assert [w is not None for w in waves] == [p in good for p in paths]
    assert all(len(w) == 22050 for w in waves if w is not None)
    assert report.total == 13 and report.n_ok == 3
    assert dict(report.skipped) == {"unreadable": 3, "empty": 1, "non-finite": 1, "too-short": 1, "silent": 1,
                                    "missing": 1, "truncated": 2}
    assert str(report) == ("3/13 recordings ok, 10 skipped (empty: 1, missing: 1, non-finite: 1, silent: 1, "
                           "too-short: 1, truncated: 2, unreadable: 3)")
    for reason, examples in report.examples.items():
        assert all(str(tmp_path) in e and f": {reason} (" in e for e in examples), examples


# --------------------------------------------------------------------------- tables (JSON, CSV)

def _rec(i, lat=10.0, lon=20.0, date="2023-05-02T07:00:00+02:00", stem=None):
    return {"id": i, "file_name": f"test/x/{stem or i}.wav", "duration": 5.0, "date": date, "latitude": lat,
            "longitude": lon, "location_uncertainty": 10}


def _coco(tmp_path, audio, extra_annotations=()):
    d = {"audio": audio,
         "annotations": [{"id": a["id"], "audio_id": a["id"], "category_id": 0} for a in audio] + list(extra_annotations),
         "categories": [{"id": 0, "name": "Turdus merula", "common_name": "Eurasian Blackbird", "supercategory": "Aves"}]}
    p = tmp_path / "test.json"
    p.write_text(json.dumps(d))
    return p


ROW = "row 2 (audio_id='2', lat={lat}, lon={lon}, date={date!r})"
JSON_CASES = [
    ("null latitude", _rec(2, lat=None), ROW.format(lat="nan", lon="20.0", date="2023-05-02T07:00:00+02:00")
     + ": NaN or non-numeric coordinate"),
    ("NaN longitude", _rec(2, lon=float("nan")), ROW.format(lat="10.0", lon="nan", date="2023-05-02T07:00:00+02:00")
     + ": NaN or non-numeric coordinate"),
    ("latitude -90.5", _rec(2, lat=-90.5), ROW.format(lat="-90.5", lon="20.0", date="2023-05-02T07:00:00+02:00")
     + ": latitude outside [-90, 90]"),
    ("longitude 180.5", _rec(2, lon=180.5), ROW.format(lat="10.0", lon="180.5", date="2023-05-02T07:00:00+02:00")
     + ": longitude outside [-180, 180]"),
    ("day-first date", _rec(2, date="02/05/2023"), ROW.format(lat="10.0", lon="20.0", date="02/05/2023")
     + ": date not YYYY-MM-DD"),
    ("impossible date", _rec(2, date="2023-02-30"), ROW.format(lat="10.0", lon="20.0", date="2023-02-30")
     + ": date not YYYY-MM-DD"),
]


@pytest.mark.parametrize("bad,message", [c[1:] for c in JSON_CASES], ids=[c[0] for c in JSON_CASES])
def test_json_bad_row_exact_message(tmp_path, bad, message):
    p = _coco(tmp_path, [_rec(1), bad, _rec(3)])
    with pytest.raises(DataError) as ei:
        load_inat(p, cache=False)
    assert str(ei.value) == f"{p}: {message}"


def test_json_duplicates_exact_messages(tmp_path):
    p = _coco(tmp_path, [_rec(1), _rec(2, stem="1")])
    with pytest.raises(DataError) as ei:
        load_inat(p, cache=False)
    assert str(ei.value) == f"{p}: row 2 (audio_id='1', lat=10.0, lon=20.0, date='2023-05-02T07:00:00+02:00'): duplicate id"
    p = _coco(tmp_path, [_rec(1), _rec(2)], extra_annotations=[{"id": 9, "audio_id": 2, "category_id": 0}])
    with pytest.raises(DataError) as ei:
        load_inat(p, cache=False)
    assert str(ei.value) == f"{p}: recording id 2 has more than one annotation"


def test_json_skip_report_counts_every_reason(tmp_path):
    p = _coco(tmp_path, [_rec(1), _rec(2, lat=None), _rec(3, lat=91), _rec(4, lon=-181), _rec(5, stem="1"),
                         _rec(6, date="6/5/2023"), _rec(7), _rec(8, date="2023-02-30")])
    df = load_inat(p, on_invalid="skip", cache=False)
    assert list(df.audio_id) == ["1", "7"]
    rep = df.attrs["skip_report"]
    assert rep.total == 8 and rep.skipped == 6
    assert dict(rep.reasons) == {"NaN or non-numeric coordinate": 1, "latitude outside [-90, 90]": 1,
                                 "longitude outside [-180, 180]": 1, "duplicate id": 1, "date not YYYY-MM-DD": 2}
    d = "date='2023-05-02T07:00:00+02:00'"
    assert str(rep) == (
        f"{p}: skipped 6 of 8 rows: "
        f"1 NaN or non-numeric coordinate (e.g. row 2 (audio_id='2', lat=nan, lon=20.0, {d})), "
        f"1 latitude outside [-90, 90] (e.g. row 3 (audio_id='3', lat=91.0, lon=20.0, {d})), "
        f"1 longitude outside [-180, 180] (e.g. row 4 (audio_id='4', lat=10.0, lon=-181.0, {d})), "
        f"1 duplicate id (e.g. row 5 (audio_id='1', lat=10.0, lon=20.0, {d})), "
        "2 date not YYYY-MM-DD (e.g. row 6 (audio_id='6', lat=10.0, lon=20.0, date='6/5/2023'))")


CSV_HEAD = "audio_id,latitude,longitude\na,10,20\n"
CSV_CASES = [
    ("empty latitude", "b,,20\n", "row 3 (audio_id='b', lat=nan, lon=20): NaN or non-numeric coordinate"),
    ("NaN latitude", "b,NaN,20\n", "row 3 (audio_id='b', lat=nan, lon=20): NaN or non-numeric coordinate"),
    ("text latitude", "b,north,20\n", "row 3 (audio_id='b', lat='north', lon=20): NaN or non-numeric coordinate"),
    ("latitude 95", "b,95,20\n", "row 3 (audio_id='b', lat=95, lon=20): latitude outside [-90, 90]"),
    ("longitude 200", "b,10,200\n", "row 3 (audio_id='b', lat=10, lon=200): longitude outside [-180, 180]"),
    ("duplicate id", "a,11,21\n", "row 3 (audio_id='a', lat=11, lon=21): duplicate id"),
    ("missing id", ",11,21\n", "row 3 (audio_id=nan, lat=11, lon=21): missing id"),
]


@pytest.mark.parametrize("row,message", [c[1:] for c in CSV_CASES], ids=[c[0] for c in CSV_CASES])
def test_csv_bad_row_exact_message(tmp_path, row, message):
    p = tmp_path / "pred.csv"
    p.write_text(CSV_HEAD + row)
    with pytest.raises(DataError) as ei:
        read_locations(p)
    assert str(ei.value) == f"{p}: {message}"


def test_empty_prediction_csv_names_the_file(tmp_path):
    p = tmp_path / "pred.csv"
    p.write_text("")
    with pytest.raises(DataError) as ei:
        read_locations(p)
    assert str(ei.value) == f"{p}: empty file (no header row)"


def test_csv_missing_columns_and_skip_report(tmp_path):
    p = tmp_path / "pred.csv"
    p.write_text("audio_id,lat,lon\na,10,20\n")
    with pytest.raises(DataError) as ei:
        read_locations(p)
    assert str(ei.value) == f"{p}: missing column(s) ['latitude', 'longitude']; found ['audio_id', 'lat', 'lon']"
    p.write_text(CSV_HEAD + "b,,20\nc,95,0\nd,0,-181\na,1,1\ne,-91,1\nf,1,2\n")
    df = read_locations(p, on_invalid="skip")
    assert list(df.audio_id) == ["a", "f"] and df.lat.dtype == float
    rep = df.attrs["skip_report"]
    assert (rep.total, rep.skipped) == (7, 5)
    assert dict(rep.reasons) == {"NaN or non-numeric coordinate": 1, "latitude outside [-90, 90]": 2,
                                 "longitude outside [-180, 180]": 1, "duplicate id": 1}
    assert str(rep).startswith(f"{p}: skipped 5 of 7 rows: 1 NaN or non-numeric coordinate (e.g. row 3 "
                               "(audio_id='b', lat=nan, lon=20)), 2 latitude outside [-90, 90] (e.g. row 4 ")


def test_unknown_species_reported_with_counts(tmp_path, capsys, mirror):
    """species-locate keeps going on unknown names and reports each with its count, and the total."""
    from soundloc.cli import main

    inp, out = tmp_path / "in.csv", tmp_path / "out.csv"
    inp.write_text("audio_id,species\n"
                   "a,Turdus merula;Notus species;Fakeus birdus\n"
                   "b,Notus species;Erithacus rubecula\n"
                   "c,Notus species\n")
    assert main(["species-locate", str(inp), "-o", str(out), "--gallery", "land2", "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()
    unknown = [ln for ln in err if ln.startswith("unknown species")]
    assert unknown == ["unknown species (not in birdnet_meta_v2.4): Notus species x3",
                       "unknown species (not in birdnet_meta_v2.4): Fakeus birdus x1"]
    assert err[-1] == ("3 queries: 2 located from species, 1 fell back to the prior, 0 already done; 2 species "
                       f"not covered by the range model (4 mentions); wrote {out}")
    assert out.read_text().splitlines()[0] == "audio_id,latitude,longitude" and len(out.read_text().splitlines()) == 4


# --------------------------------------------------------------------------- downloads

def test_checksum_mismatch_exact_message_and_nothing_left(tmp_path, mirror):
    name = "xcdc/xcdc_gold.csv"
    bad = tmp_path / "mirror"
    (bad / "xcdc").mkdir(parents=True)
    (bad / name).write_bytes((mirror / name).read_bytes()[:-10])  # a truncated mirror copy
    dest = tmp_path / "raw"
    with pytest.raises(dl.ChecksumError) as ei:
        dl.fetch(name, dest=dest, mirror=bad)
    assert str(ei.value) == (f"{name}: checksum mismatch against {dl.registry()[name].known_hash} (mirror {bad}); "
                             "the bad file was removed")
    assert [p for p in dest.rglob("*") if p.is_file()] == []


def test_corrupt_partial_download_is_discarded_then_refetched(tmp_path, mirror):
    """A truncated download whose kept part is corrupt fails the checksum once, leaves nothing, then restarts clean."""
    import http.server
    import threading

    from test_download import _Handler

    big = "inatsounds/test.json.tar.gz"
    _Handler.body, _Handler.mode, _Handler.ranges = (mirror / big).read_bytes(), "truncate", []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/{big}"
    try:
        part = tmp_path / (big + ".part")
        with pytest.raises(dl.DownloadError) as ei:
            dl.fetch(big, url=url, dest=tmp_path, mirror=False, progressbar=False)
        got = part.stat().st_size
        assert re.fullmatch(rf"{re.escape(url)}: transfer failed after {got} bytes \(.+\); run again to resume "
                            rf"from {re.escape(str(part))}, or, offline, set SOUNDLOC_MIRROR to a folder holding "
                            r"the official files", str(ei.value)), str(ei.value)
        assert not (tmp_path / big).exists()
        with open(part, "r+b") as f:  # the kept part goes bad (disk error, another writer)
            f.seek(got // 2)
            f.write(b"\x00\x01\x02")
        _Handler.mode = "ok"
        with pytest.raises(dl.ChecksumError, match="checksum mismatch .*the bad file was removed"):
            dl.fetch(big, url=url, dest=tmp_path, mirror=False, progressbar=False)
        assert _Handler.ranges[-1] == f"bytes={got}-"
        assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # neither the part nor a bad final file
        out = dl.fetch(big, url=url, dest=tmp_path, mirror=False, progressbar=False)
        assert _Handler.ranges[-1] is None  # started over
        assert out.read_bytes() == _Handler.body
    finally:
        httpd.shutdown()


# --------------------------------------------------------------------------- checkpoints

def test_foreign_and_pickled_checkpoints_are_refused(tmp_path):
    """(Another *config* of our model: tests/test_models.py and test_train.py match the differing fields.)"""
    from soundloc.encoders import CheckpointMismatch
    from soundloc.models import read_checkpoint

    plain = tmp_path / "state_dict.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointMismatch) as ei:
        read_checkpoint(plain)
    assert str(ei.value) == (f"{plain}: not a soundloc checkpoint (use load_encoder_weights for torchvision-style "
                             "weights)")
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "soundloc-checkpoint", "version": 1, "path": Path("/etc")}, pickled)  # an arbitrary object
    with pytest.raises(CheckpointMismatch, match=rf"(?s)^{re.escape(str(pickled))}: cannot be read as a weights-only "
                                                 r"checkpoint \(.*Unsupported global: GLOBAL pathlib"):
        read_checkpoint(pickled)
    half = tmp_path / "half.pt"
    full = tmp_path / "full.pt"
    torch.save({"format": "soundloc-checkpoint", "version": 1, "model": {"w": torch.zeros(1000)}}, full)
    half.write_bytes(full.read_bytes()[:2000])  # killed mid-write without an atomic rename
    with pytest.raises(CheckpointMismatch, match=rf"^{re.escape(str(half))}: cannot be read as a weights-only"):
        read_checkpoint(half)
    with pytest.raises(FileNotFoundError, match=f"no checkpoint at {re.escape(str(tmp_path / 'nope.pt'))}"):
        read_checkpoint(tmp_path / "nope.pt")


# --------------------------------------------------------------------------- notebook parameters

PARAM_CASES = [
    (dict(SMALL="yes"), "parameter SMALL='yes' should be bool, got str"),
    (dict(SMALL=1), "parameter SMALL=1 should be bool, got int"),
    (dict(SEED=1.5), "parameter SEED=1.5 should be int, got float"),
    (dict(SEED=True), "parameter SEED=True should be int, got bool"),
    (dict(DEVICE=0), "parameter DEVICE=0 should be str, got int"),
    (dict(OUT=3), "parameter OUT=3 should be a folder path or None"),
    (dict(N_EVAL="600", types={"N_EVAL": int}), "parameter N_EVAL='600' should be int, got str"),
    (dict(RATE=False, types={"RATE": (int, float)}), "parameter RATE=False should be int or float, got bool"),
    (dict(types={"N_EVAL": int}), "missing parameter N_EVAL"),
]


@pytest.mark.parametrize("kw,message", PARAM_CASES, ids=[m.split(" should")[0] for _, m in PARAM_CASES])
def test_notebook_parameter_of_wrong_type(tmp_path, kw, message):
    params = {"SMALL": True, "SEED": 0, "OUT": str(tmp_path), **kw}
    with pytest.raises(book.ParameterError) as ei:
        book.start("99", **params)
    assert str(ei.value) == message and isinstance(ei.value, TypeError)
    assert list(tmp_path.iterdir()) == []  # nothing was written before the check


def test_notebook_device_parameter(tmp_path):
    with pytest.raises(book.ParameterError, match=r"^parameter DEVICE='gpu': Expected one of cpu, cuda"):
        book.start("99", SMALL=True, SEED=0, DEVICE="gpu", OUT=str(tmp_path))
    if not torch.cuda.is_available():
        with pytest.raises(book.ParameterError) as ei:
            book.start("99", SMALL=True, SEED=0, DEVICE="cuda", OUT=str(tmp_path))
        assert str(ei.value) == "parameter DEVICE='cuda': device 'cuda' requested but no CUDA device is available"
    ch = book.start("99", SMALL=True, SEED=3, DEVICE="cpu", OUT=str(tmp_path / "ok"), RATE=1,
                    types={"RATE": (int, float)})
    assert (ch.small, ch.seed, ch.device.type, ch.out) == (True, 3, "cpu", tmp_path / "ok")
    book.check_types({"X": 1.0}, {"X": float})
    with pytest.raises(book.ParameterError, match=r"^parameter X=1 should be float, got int$"):
        book.check_types({"X": 1}, {"X": float})


# --------------------------------------------------------------------------- galleries

def test_gallery_with_no_land_points():
    from soundloc.sphere import is_land, land_grid
    from soundloc.range_geolocation import gallery

    ocean = (-40, -30, -130, -120)  # South Pacific
    with pytest.raises(ValueError) as ei:
        land_grid(1.0, bbox=ocean)
    assert str(ei.value) == ("land_grid(step_deg=1, bbox=(-40, -30, -130, -120)): no land points (all 100 grid "
                             "points are in the ocean); widen the area or use a finer step")
    with pytest.raises(ValueError) as ei:
        gallery("land500")
    assert str(ei.value) == ("land_grid(step_deg=500): no land points (the step is larger than the area); widen "
                             "the area or use a finer step")
    with pytest.raises(ValueError, match=r"^land_grid: bbox \(10, 0, 0, 10\) must be \(lat_min, lat_max"):
        land_grid(1.0, bbox=(10, 0, 0, 10))
    with pytest.raises(ValueError, match=r"^land_grid: step_deg must be > 0, got 0"):
        land_grid(0)
    # a box across the antimeridian (Chukotka + western Alaska) keeps only its own land points
    g = land_grid(1.0, bbox=(60, 70, 170, -160))
    assert len(g) > 50 and is_land(g[:, 0], g[:, 1]).all()
    assert ((g[:, 1] >= 170) | (g[:, 1] <= -160)).all() and (g[:, 1] > 0).any() and (g[:, 1] < 0).any()
    assert len(land_grid(1.0)) == len(gallery("land1"))


def test_inat_file_that_is_not_json_names_the_file(tmp_path):
    from soundloc.data import DataError, load_inat

    bad = tmp_path / "test.json"
    bad.write_text("this is not json")
    with pytest.raises(DataError, match=r"test\.json: not a readable COCO JSON file"):
        load_inat(bad)


def test_land_mask_cache_equals_the_library_and_spares_its_import(tmp_path):
    """sphere.land_mask == global-land-mask's is_land on a grid; a later process reads it without the import."""
    import subprocess
    import sys

    from soundloc.sphere import is_land, land_grid, land_mask, uniform_grid

    env = {**os.environ, "SOUNDLOC_DATA": str(tmp_path)}
    code = ("import sys; from soundloc.sphere import land_grid; g = land_grid(3.0); "
            "print(len(g), 'global_land_mask' in sys.modules)")
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    n = int(first.stdout.split()[0])
    assert first.stdout.split()[1] == "True" and second.stdout.split() == [str(n), "False"]
    g = uniform_grid(3.0)
    ref = is_land(g[:, 0], g[:, 1])
    assert n == int(ref.sum()) > 1000
    assert np.array_equal(land_mask(g), ref)
    assert np.array_equal(land_grid(3.0), g[ref])
