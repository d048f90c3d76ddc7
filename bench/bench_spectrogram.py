"""Benchmark: numpy/scipy reference spectrogram vs the batched torch version on the 96-97 Jura recordings.

Run: ``.venv/bin/python bench/bench_spectrogram.py [--repeats 3] [--device cpu] [--threads N]``.
The speed-up in the SUMMARY line is a ratio of wall times (best rounds); the CPU-time ratio is printed too.
File loading is excluded from both timings; torch is warmed up once. Reference and torch rounds
are interleaved and the best round of each is compared (other processes sharing the cores inflate
single rounds; the load average is printed). Also prints where the torch time goes (single-thread
CPU time per stage of the CPU path), the ceiling that the bare 1024-point rfft leaves, and the parity
(fraction of pixels within 1 uint8 level, max difference) over all recordings.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from soundloc import paths
from soundloc import spectrogram as S
from soundloc.audio import load_many
from soundloc.spectrogram_reference import reference_spectrogram


def jura_dir() -> Path:
    """The Jura recordings folder (the mirror's, or the one ``make data`` fetched: ``paths.real_audio_dir``)."""
    return paths.real_audio_dir() / "jura_2019-05-22"


def stage_breakdown(x: torch.Tensor, cfg: S.SpecConfig, chunk: int = S.CPU_CHUNK) -> dict[str, float]:
    """Single-thread CPU seconds (``time.thread_time``, so other processes sharing the cores count less)
    per stage of the chunked CPU path over all recordings (best of 3).

    Mirrors ``spectrogram._spectrogram_chunked`` (frames of all recordings in one sequence, chunks of
    ``chunk`` frames, mel weights pre-scaled by ``_LEVEL_SCALE``, numpy for the element-wise stages)
    with a clock between the stages.
    """
    window, _ = S._Consts.get(cfg, x.device)
    _, blocks = S._Consts.get(cfg, x.device, scale=S._LEVEL_SCALE)
    win = window[: cfg.win]
    B, T = x.shape
    F = cfg.n_frames(T)
    total = B * F
    framed = x.unfold(1, cfg.win, cfg.hop)
    frames = torch.zeros((chunk, cfg.n_fft))
    mag = torch.empty((chunk, cfg.n_bins))
    mel = torch.empty((cfg.n_mels, chunk))
    mag_np, mel_np = mag.numpy(), mel.numpy()
    out = torch.empty((B, cfg.n_mels, F), dtype=torch.uint8)
    out_np = out.numpy()
    clock = time.thread_time
    best: dict[str, float] | None = None
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(3):
            t = dict.fromkeys(["frame x window", "rfft 1024", "magnitude (np.abs)", "mel (block matmul)",
                               "levels (numpy)", "uint8 cast"], 0.0)
            for g0 in range(0, total, chunk):
                n = min(chunk, total - g0)
                c0 = clock()
                pieces = S._chunk_pieces(g0, n, F)
                for b, f, k, m in pieces:
                    torch.mul(framed[b, f:f + m], win, out=frames[k:k + m, : cfg.win])
                c1 = clock()
                spec = torch.fft.rfft(frames[:n])
                c2 = clock()
                S._magnitude_np(spec, mag_np[:n])
                c3 = clock()
                for r0, r1, lo, hi, w in blocks:
                    torch.matmul(w, mag[:n, lo:hi].T, out=mel[r0:r1, :n])
                c4 = clock()
                lv = S._scaled_levels_np_(mel_np[:, :n])
                c5 = clock()
                for b, f, k, m in pieces:
                    out_np[b, :, f:f + m] = lv[:, k:k + m]
                c6 = clock()
                for key, dt in zip(t, (c1 - c0, c2 - c1, c3 - c2, c4 - c3, c5 - c4, c6 - c5)):
                    t[key] += dt
            if best is None or sum(t.values()) < sum(best.values()):
                best = t
    finally:
        torch.set_num_threads(prev)
    return best


def reference_breakdown(waves, cfg: S.SpecConfig) -> dict[str, float]:
    """Seconds per stage of the numpy/scipy reference over all recordings (one round)."""
    from soundloc.spectrogram_reference import db_to_uint8, reference_mel_matrix, reference_stft_magnitude

    m = reference_mel_matrix(cfg.n_mels, cfg.n_bins, cfg.sr, cfg.fmin, cfg.fmax).T
    t = dict.fromkeys(["scipy stft + |.| x 2", "mel matmul (dense)", "dB + uint8 + flip"], 0.0)
    for w in waves:
        c0 = time.perf_counter()
        mag = reference_stft_magnitude(w, cfg.sr)
        c1 = time.perf_counter()
        mel = m @ mag
        c2 = time.perf_counter()
        db_to_uint8(np.clip(20.0 * np.log10(np.maximum(1e-10, mel)), -100.0, 0.0))[::-1].copy()
        c3 = time.perf_counter()
        for k, dt in zip(t, (c1 - c0, c2 - c1, c3 - c2)):
            t[k] += dt
    return t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds of each (best is reported)")
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = S.resolve_device(args.device)
    folder = jura_dir()
    files = sorted(folder.glob("*.wav"))
    if not files:
        print(f"no recordings in {folder}: run `make data`, or set SOUNDLOC_MIRROR to a mirror folder", file=sys.stderr)
        return 2
    cfg = S.SpecConfig()
    waves, report = load_many(files, sr=cfg.sr)            # loading is not timed
    waves = [w for w in waves if w is not None]
    lengths = {len(w) for w in waves}
    print(f"loaded {report}; lengths {sorted(lengths)} samples at {cfg.sr} Hz")
    if len(lengths) != 1:
        print("recordings differ in length; the torch timing batches each length separately")
    batch = np.stack(waves) if len(lengths) == 1 else None

    def run_ref():
        return [reference_spectrogram(w) for w in waves]

    def run_torch():
        if batch is not None:
            out = S.spectrogram_torch(batch, cfg, device)
        else:
            out = S.compute_spectrograms(waves, cfg, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    run_torch()  # warm-up (constants, allocator, MKL/cuFFT plans)
    t_ref, t_torch, c_ref, c_torch = [], [], [], []
    for _ in range(args.repeats):
        t0, p0 = time.perf_counter(), time.process_time()
        refs = run_ref()
        t1, p1 = time.perf_counter(), time.process_time()
        got = run_torch()
        t2, p2 = time.perf_counter(), time.process_time()
        t_ref.append(t1 - t0)
        t_torch.append(t2 - t1)
        c_ref.append(p1 - p0)
        c_torch.append(p2 - p1)
    got = got.cpu().numpy() if torch.is_tensor(got) else np.stack(got)
    d = np.abs(np.stack(refs).astype(np.int16) - got.astype(np.int16))
    within, worst, exact = float((d <= 1).mean()), int(d.max()), float((d == 0).mean())

    n_frames = sum(cfg.n_frames(len(w)) for w in waves)
    ref_s, torch_s = min(t_ref), min(t_torch)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device {device}, torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, "
          f"load average (1 min) {load:.2f}")
    print(f"reference (numpy/scipy, float64): best {ref_s:.3f} s, rounds {[round(t, 3) for t in t_ref]}")
    print(f"torch ({'chunked' if device.type == 'cpu' else 'batched'}, float32): best {torch_s:.3f} s, "
          f"rounds {[round(t, 3) for t in t_torch]}")
    print(f"CPU time (all threads of this process): reference best {min(c_ref):.3f} s, torch best "
          f"{min(c_torch):.3f} s -> {min(c_ref) / min(c_torch):.1f}x (less sensitive to other processes than wall time)")
    print(f"parity over {got.size:,} pixels: {within:.6f} within 1 level, {exact:.6f} identical, max diff {worst}")
    if device.type == "cpu" and batch is not None:
        stages = stage_breakdown(torch.as_tensor(batch), cfg)
        total = sum(stages.values())
        print(f"torch CPU stages, one thread ({total:.3f} s, {total / n_frames * 1e6:.2f} us/frame):")
        for k, v in stages.items():
            print(f"  {k:<20s} {v:7.3f} s  {100 * v / total:5.1f} %")
        fft = stages["rfft 1024"]
        # Ceiling: the torch wall time scaled down to its rfft share (everything else free, same core usage).
        print(f"ceiling: the bare rfft (MKL, 1024 points) is {100 * fft / total:.0f} % of the torch CPU time; "
              f"with every other stage free the speed-up would be at most "
              f"{ref_s / (torch_s * fft / total):.1f}x at this load")
    rstages = reference_breakdown(waves, cfg)
    rtotal = sum(rstages.values())
    print(f"reference stages ({rtotal:.3f} s, {rtotal / n_frames * 1e6:.2f} us/frame):")
    for k, v in rstages.items():
        print(f"  {k:<20s} {v:7.3f} s  {100 * v / rtotal:5.1f} %")
    ratio = ref_s / torch_s
    print(f"SUMMARY spectrogram bench: {len(waves)} recordings ({n_frames:,} frames), reference {ref_s:.3f} s, "
          f"torch {torch_s:.3f} s on {device} -> speed-up {ratio:.1f}x (aim >= 10x), "
          f"parity {100 * within:.4f} % within 1 level (max diff {worst})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
