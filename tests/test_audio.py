"""soundloc.audio: loading, mono mixing, resampling, and clear errors for bad files."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundloc.audio import AudioError, SkipReport, load_audio, load_many

MIRROR = Path(os.environ.get("SOUNDLOC_MIRROR") or "/work/shared/data")
MP3 = MIRROR / "audio" / "XC563936_soundscape.mp3"


def _tone(seconds: float, sr: int, hz: float = 1000.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _assert_error(path: Path, reason: str):
    with pytest.raises(AudioError) as ei:
        load_audio(path)
    assert ei.value.reason == reason
    assert str(path) in str(ei.value)
    assert isinstance(ei.value, ValueError)


def test_unreadable_file(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio\n" * 20)
    _assert_error(p, "unreadable")


def test_zero_byte_file(tmp_path):
    p = tmp_path / "zero.wav"
    p.write_bytes(b"")
    _assert_error(p, "unreadable")


def test_missing_file(tmp_path):
    _assert_error(tmp_path / "nope.flac", "missing")


def test_empty_recording(tmp_path):
    p = tmp_path / "empty.wav"
    sf.write(p, np.zeros(0, np.float32), 22050)
    _assert_error(p, "empty")


def test_all_zero_recording(tmp_path):
    p = tmp_path / "silence.wav"
    sf.write(p, np.zeros(22050 * 2, np.float32), 22050)
    _assert_error(p, "silent")


def test_nan_samples(tmp_path):
    p = tmp_path / "nan.wav"
    x = _tone(1.0, 22050)
    x[100] = np.nan
    sf.write(p, x, 22050, subtype="FLOAT")
    _assert_error(p, "non-finite")


def test_too_short(tmp_path):
    p = tmp_path / "short.wav"
    sf.write(p, _tone(0.2, 22050), 22050)
    _assert_error(p, "too-short")
    assert len(load_audio(p, min_seconds=0.1)) == int(0.2 * 22050)


def test_stereo_is_mixed_to_mono(tmp_path):
    p = tmp_path / "stereo.wav"
    left, right = _tone(1.0, 22050, 440.0), _tone(1.0, 22050, 3000.0, amp=0.25)
    sf.write(p, np.stack([left, right], axis=1), 22050, subtype="FLOAT")
    x = load_audio(p)
    assert x.dtype == np.float32 and x.ndim == 1
    np.testing.assert_allclose(x, (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("sr_in", [8000, 96000])
def test_resampled_to_22050(tmp_path, sr_in):
    p = tmp_path / f"tone_{sr_in}.wav"
    sf.write(p, _tone(2.0, sr_in, 1000.0), sr_in, subtype="FLOAT")
    x = load_audio(p)
    assert x.dtype == np.float32 and len(x) == 2 * 22050
    assert np.abs(x).max() <= 1.0
    spec = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spec) * 22050 / len(x) - 1000.0) < 2.0  # still a 1 kHz tone
    assert len(load_audio(p, sr=16000)) == 2 * 16000


@pytest.mark.parametrize("fmt,ext", [("FLAC", "flac"), ("OGG", "ogg")])
def test_other_formats(tmp_path, fmt, ext):
    p = tmp_path / f"tone.{ext}"
    sf.write(p, _tone(1.0, 44100), 44100, format=fmt)
    x = load_audio(p)
    assert len(x) == 22050 and np.abs(x).max() > 0.3


def test_mp3_real_recording():
    if not MP3.exists():
        pytest.skip(f"real recording not found at {MP3} (set SOUNDLOC_MIRROR to the shared data folder)")
    x = load_audio(MP3)
    info = sf.info(str(MP3))
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - info.frames * 22050 / info.samplerate) <= 1
    assert 0 < np.abs(x).max() <= 1.0


def test_load_many_counts_skips(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, _tone(1.0, 22050), 22050)
    short = tmp_path / "short.wav"
    sf.write(short, _tone(0.2, 22050), 22050)
    junk = tmp_path / "junk.wav"
    junk.write_text("junk")
    waves, report = load_many([good, short, junk, good])
    assert [w is None for w in waves] == [False, True, True, False]
    assert isinstance(report, SkipReport)
    assert report.total == 4 and report.n_skipped == 2 and report.n_ok == 2
    assert report.skipped == {"too-short": 1, "unreadable": 1}
    assert str(short) in report.examples["too-short"][0]
    line = str(report)
    assert "\n" not in line and "2/4" in line and "too-short: 1" in line and "unreadable: 1" in line
