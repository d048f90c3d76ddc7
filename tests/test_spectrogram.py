"""soundloc.spectrogram: parity with the numpy/scipy reference on real audio, windows, model input, cache."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch

from soundloc import spectrogram as S
from soundloc.audio import load_audio
from soundloc.spectrogram_reference import (reference_mel_matrix, reference_spectrogram,
                                            reference_stft_magnitude)

MIRROR = Path(os.environ.get("SOUNDLOC_MIRROR") or "/work/shared/data")
MP3 = MIRROR / "audio" / "XC563936_soundscape.mp3"
JURA = MIRROR / "audio" / "jura_2019-05-22"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real recording(s) not found at {path} (set SOUNDLOC_MIRROR to the shared data folder)")
    return path


def _jura(n: int) -> list[Path]:
    files = sorted(_need(JURA).glob("*.wav"))
    if len(files) < n:
        pytest.skip(f"need {n} Jura recordings in {JURA}, found {len(files)}")
    return files[:: max(1, len(files) // n)][:n]  # spread over the night and the day


def _parity(ref: np.ndarray, got: np.ndarray) -> tuple[float, int]:
    assert ref.shape == got.shape and got.dtype == np.uint8
    d = np.abs(ref.astype(np.int16) - got.astype(np.int16))
    return float((d <= 1).mean()), int(d.max())


# --------------------------------------------------------------------------- definition pieces

@pytest.mark.parametrize("fmin", [0.0, 50.0])
def test_mel_matrix_matches_tf_reference(fmin):
    cfg = S.SpecConfig(fmin=fmin)
    m = S.mel_matrix(cfg)
    ref = reference_mel_matrix(128, 513, 22050, fmin, 11025.0)
    assert m.shape == (513, 128) and m.dtype == np.float32
    np.testing.assert_allclose(m, ref, atol=1e-6)
    assert not m[0].any()                       # DC bin zeroed
    assert m.max() <= 1.0 and m.min() >= 0.0


def test_window_is_scipy_periodic_hann():
    np.testing.assert_allclose(S.hann_window(), scipy.signal.get_window("hann", 512), atol=1e-12)
    assert S.hann_window().sum() == pytest.approx(256.0)


def test_reference_magnitude_is_literal_definition():
    x = np.random.default_rng(0).standard_normal(4000)
    mag = reference_stft_magnitude(x)
    win = scipy.signal.get_window("hann", 512)
    frames = np.lib.stride_tricks.sliding_window_view(x, 512)[::128]           # no boundary padding
    literal = 2.0 * np.abs(np.fft.rfft(frames * win, n=1024, axis=1)) / win.sum()
    assert mag.shape == (513, 1 + (4000 - 512) // 128)
    np.testing.assert_allclose(mag, literal.T, rtol=1e-10, atol=1e-12)


def test_uint8_mapping_and_flip():
    sr = 22050
    t = np.arange(sr * 2) / sr
    # full-scale 5 kHz sine: |X| x 2 / window sum ~ 1 at its bin -> about 0 dB there (level ~255)
    x = np.sin(2 * np.pi * 5000 * t).astype(np.float32)
    img = S.compute_spectrogram(x, device="cpu")
    assert img.shape == (128, 1 + (len(x) - 512) // 128) and img.dtype == np.uint8
    row = int(np.argmax(img.mean(axis=1)))
    mel_5k = S.hz_to_mel(5000.0)
    edges = np.linspace(0, S.hz_to_mel(11025.0), 130)
    band = int(np.argmin(np.abs(edges[1:-1] - mel_5k)))
    assert abs(row - (127 - band)) <= 1                  # high frequencies on top (row 0)
    assert img[row].mean() > 240
    ref = reference_spectrogram(x)
    assert _parity(ref, img)[0] == 1.0


def test_shape_and_short_input():
    cfg = S.SpecConfig()
    assert cfg.n_frames(512) == 1 and cfg.n_frames(511) == 0 and cfg.n_frames(220500) == 1719
    out = S.spectrogram_torch(np.zeros((3, 1000), np.float32) + 0.1, device="cpu")
    assert out.shape == (3, 128, 4) and out.dtype == torch.uint8
    with pytest.raises(ValueError):
        S.spectrogram_torch(np.zeros(300, np.float32), device="cpu")


# --------------------------------------------------------------------------- parity on real audio

def test_parity_real_mp3():
    wave = load_audio(_need(MP3))
    ref = reference_spectrogram(wave)
    for method in ("chunked", "batched"):
        got = S.spectrogram_torch(wave, device="cpu", method=method)[0].numpy()
        within, worst = _parity(ref, got)
        assert within >= 0.999, f"{method}: only {within:.5f} of pixels within 1 level (max diff {worst})"
        assert worst <= 2


def test_parity_real_jura_batch():
    files = _jura(6)
    waves = np.stack([load_audio(f) for f in files])            # equal lengths: one batch
    refs = np.stack([reference_spectrogram(w) for w in waves])
    for method in ("chunked", "batched"):
        got = S.spectrogram_torch(waves, device="cpu", method=method).numpy()
        within, worst = _parity(refs, got)
        assert within >= 0.999, f"{method}: only {within:.5f} of pixels within 1 level (max diff {worst})"
    imgs = S.compute_spectrograms(list(waves[:3]) + [waves[3][:50000]], device="cpu")
    assert [im.shape[1] for im in imgs] == [1719, 1719, 1719, 1 + (50000 - 512) // 128]
    assert _parity(refs[3][:, :imgs[3].shape[1]], imgs[3])[0] >= 0.999


def test_parity_fmin_50():
    wave = load_audio(_jura(1)[0])
    cfg = S.SpecConfig(fmin=50.0)
    got = S.compute_spectrogram(wave, cfg, device="cpu")
    assert _parity(reference_spectrogram(wave, fmin=50.0), got)[0] >= 0.999


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_parity_cuda():
    wave = load_audio(_need(MP3))
    got = S.spectrogram_torch(wave, device="cuda")
    assert got.device.type == "cuda"
    assert _parity(reference_spectrogram(wave), got[0].cpu().numpy())[0] >= 0.999


# --------------------------------------------------------------------------- windows and model input

def _ramp_image(t: int) -> np.ndarray:
    return np.tile((np.arange(t) % 250 + 1).astype(np.uint8), (128, 1))   # no zero columns


def test_eval_windows_counts_and_centred_padding():
    assert [S.n_eval_windows(t) for t in (100, 512, 513, 768, 1000, 1719)] == [1, 1, 2, 2, 3, 6]
    img = _ramp_image(1000)
    w = S.eval_windows(img)
    assert w.shape == (3, 128, 512) and w.dtype == np.uint8
    padded = np.zeros((128, 1024), np.uint8)
    padded[:, 12:1012] = img                      # (1024 - 1000) / 2 = 12 zero columns each side
    for i in range(3):
        np.testing.assert_array_equal(w[i], padded[:, 256 * i:256 * i + 512])
    short = S.eval_windows(_ramp_image(100))
    assert short.shape == (1, 128, 512)
    assert not short[0, :, :206].any() and not short[0, :, 306:].any() and short[0, :, 206:306].all()


def test_train_window():
    short = S.train_window(_ramp_image(300), np.random.default_rng(0))
    assert short.shape == (128, 512)
    assert not short[:, :106].any() and short[:, 106:406].all() and not short[:, 406:].any()
    img = _ramp_image(2000)
    a = S.train_window(img, np.random.default_rng(1))
    b = S.train_window(img, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (128, 512) and a.all()
    assert any(np.array_equal(img[:, s:s + 512], a) for s in range(2000 - 511))


def test_to_model_input():
    cfg = S.SpecConfig()
    w = np.zeros((2, 128, 512), np.uint8)
    w[1] = 255
    x = S.to_model_input(w, device="cpu")
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    torch.testing.assert_close(x[0], torch.full((3, 224, 224), -cfg.mean / cfg.std))
    torch.testing.assert_close(x[1], torch.full((3, 224, 224), (1 - cfg.mean) / cfg.std))
    r = S.to_model_input(S.eval_windows(_ramp_image(900)), device="cpu")
    assert torch.equal(r[:, 0], r[:, 1]) and torch.equal(r[:, 0], r[:, 2])
    # bilinear, align_corners=False, no antialias: same as interpolate on the /255 image
    exp = torch.nn.functional.interpolate(torch.tensor(S.eval_windows(_ramp_image(900))[:, None] / 255.0,
                                                       dtype=torch.float32), size=(224, 224), mode="bilinear",
                                          align_corners=False)
    torch.testing.assert_close(r[:, :1], (exp - cfg.mean) / cfg.std)
    small = S.SpecConfig(small=True)
    n = small.input_size
    assert n == small.small_image_size < 224
    assert S.to_model_input(w, cfg=small, device="cpu").shape == (2, 3, n, n)
    assert S.to_model_input(w, size=96, device="cpu").shape == (2, 3, 96, 96)


# --------------------------------------------------------------------------- cache

def _write_items(tmp_path: Path) -> list[tuple[str, Path]]:
    rng = np.random.default_rng(0)
    items = []
    for i, seconds in enumerate([1.0, 1.5, 0.8, 2.0, 1.2]):
        p = tmp_path / "audio" / f"rec{i}.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(p, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
        items.append((f"id{i}", p))
    bad = tmp_path / "audio" / "bad.wav"
    bad.write_text("not audio")
    items.insert(2, ("bad", bad))
    return items


def test_cache_round_trip_resume_and_corruption(tmp_path):
    items = _write_items(tmp_path)
    cache = S.SpectrogramCache(tmp_path / "cache", shard_size=2, device="cpu")
    report = cache.build(items, progress=False)
    assert cache.last_computed == [0, 1, 2]
    assert report.total == 6 and report.skipped == {"unreadable": 1}
    assert "bad" in report.examples["unreadable"][0]
    for a, p in items:
        if a == "bad":
            with pytest.raises(KeyError, match="skipped"):
                cache.get(a)
            continue
        img = cache.get(a)
        assert img.shape[0] == 128 and img.dtype == np.uint8
        np.testing.assert_array_equal(img, S.compute_spectrogram(load_audio(p), device="cpu"))
    assert sorted(cache.ids()) == ["id0", "id1", "id2", "id3", "id4"]

    # rerun: nothing to do
    again = S.SpectrogramCache(tmp_path / "cache", shard_size=2, device="cpu")
    assert again.build(items, progress=False).n_skipped == 1 and again.last_computed == []

    # a deleted shard is recomputed, and only that one
    again.data_path(1).unlink()
    again.build(items, progress=False)
    assert again.last_computed == [1]
    np.testing.assert_array_equal(again.get("id3"), cache.get("id3"))

    # a truncated shard is detected on read and recomputed on the next build
    dp = again.data_path(2)
    dp.write_bytes(dp.read_bytes()[:-100])
    fresh = S.SpectrogramCache(tmp_path / "cache", shard_size=2, device="cpu")
    with pytest.raises(S.CacheError, match="shard_00002"):
        fresh.get("id4")
    fresh.build(items, progress=False)
    assert fresh.last_computed == [2]
    assert fresh.get("id4").shape[0] == 128

    # a leftover temporary file (interrupted write) is never taken for a shard
    (tmp_path / "cache" / ".shard_00000.npy.x.tmp").write_bytes(b"partial")
    assert json.loads(fresh.index_path(0).read_text())["ids"] == ["id0", "id1"]
    leftover = S.SpectrogramCache(tmp_path / "cache", shard_size=2, device="cpu")
    leftover.build(items, progress=False)
    assert leftover.last_computed == []
    np.testing.assert_array_equal(leftover.get("id0"), cache.get("id0"))

    # a different item list in the same folder does not reuse mismatched shards
    other = S.SpectrogramCache(tmp_path / "cache", shard_size=2, device="cpu")
    other.build(items[::-1], progress=False)
    assert other.last_computed == [0, 1, 2]


def test_config_validation_and_workers_agree():
    with pytest.raises(ValueError, match="fmax"):
        S.SpecConfig(fmax=20000.0)
    with pytest.raises(ValueError):
        S.SpecConfig(hop=0)
    x = np.random.default_rng(3).standard_normal((3, 22050)).astype(np.float32) * 0.1
    threads = torch.get_num_threads()
    one = S.spectrogram_torch(x, device="cpu", workers=1)
    two = S.spectrogram_torch(x, device="cpu", workers=2, chunk=64)
    assert torch.equal(one, two)
    assert torch.get_num_threads() == threads       # the CPU path restores the torch thread count


# --------------------------------------------------------------------------- CPU fast-path helpers

def test_cpu_fast_path_helpers_match_plain_torch():
    rng = np.random.default_rng(5)
    spec = torch.complex(torch.tensor(rng.standard_normal((37, 513)), dtype=torch.float32),
                         torch.tensor(rng.standard_normal((37, 513)), dtype=torch.float32))
    mag = np.empty((37, 513), np.float32)
    S._magnitude_np(spec, mag)
    np.testing.assert_allclose(mag, spec.abs().numpy(), rtol=2e-7, atol=0)
    # levels: numpy formula on 1e5-scaled magnitudes == the GPU path's torch formula on the unscaled ones
    # (float32 rounding only), incl. both clip ends
    m = (10.0 ** rng.uniform(-3, 6, (128, 300))).astype(np.float32)
    m[0, :3] = [0.0, 1e5, 1e9]
    lv_np = S._scaled_levels_np_(m.copy())
    lv_t = S._to_levels_(torch.tensor(m) / S._LEVEL_SCALE).numpy()
    np.testing.assert_allclose(lv_np, lv_t, rtol=0, atol=1e-4)
    assert lv_np.min() == 0.0 and 255.0 <= lv_np.max() < 256.0      # float32 log10(1e5) may round above 5
    assert lv_np.astype(np.uint8).max() == 255
    np.testing.assert_allclose(lv_np, 51.0 * np.log10(np.clip(m.astype(np.float64), 1.0, 1e5)), atol=1e-4)
    # chunk pieces tile the frame sequence, one piece per recording touched
    F = 7
    for g0, n in [(0, 7), (3, 10), (5, 20), (14, 3)]:
        pieces = S._chunk_pieces(g0, n, F)
        got = [b * F + f + i for b, f, k, m in pieces for i in range(m)]
        assert got == list(range(g0, g0 + n))
        assert [k for _, _, k, _ in pieces] == list(np.cumsum([0] + [m for *_, m in pieces])[:-1])


def test_chunked_matches_literal_definition_across_chunk_sizes():
    """The chunked CPU path (chunks spanning recordings, a short last chunk) == the literal float64 formula."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((3, 9000)) * np.linspace(0.001, 0.5, 9000)).astype(np.float32)
    cfg = S.SpecConfig()
    win = S.hann_window(cfg)
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), 512, axis=1)[:, ::128]
    mag = 2.0 * np.abs(np.fft.rfft(frames * win, n=1024, axis=-1)) / win.sum()          # (3, F, 513)
    mel = mag @ S.mel_matrix(cfg).astype(np.float64)                                       # (3, F, 128)
    db = np.clip(20.0 * np.log10(np.maximum(1e-10, mel)), -100.0, 0.0)
    literal = ((db + 100.0) * 2.55).astype(np.uint8).transpose(0, 2, 1)[:, ::-1]
    for chunk, workers in [(512, 2), (100, 1), (64, 2), (1000, 2)]:
        got = S.spectrogram_torch(x, device="cpu", chunk=chunk, workers=workers).numpy()
        within, worst = _parity(literal, got)
        assert within >= 0.999 and worst <= 1, (chunk, workers, within, worst)
