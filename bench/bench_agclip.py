"""Benchmark AG-CLIP: training throughput (clips/s, forward+backward) and retrieval throughput (queries x gallery / s).

Run: ``.venv/bin/python bench/bench_agclip.py`` (CPU-sized defaults, about 1-2 min on 2 cores);
``--gpu-sized`` for the paper's model (MobileNetV3-Large, 224 px, batch 128) and bigger galleries;
``--big`` also times one retrieval of 50K queries over a 260K-point gallery (the 0.5 degree grid's
size) and reports its peak memory; ``--no-compile`` skips torch.compile (its compile time is
excluded from the throughput, and printed); ``--loader`` also times the supply of training windows
from a uint8 memmap spectrogram cache (0 and 2 DataLoader workers) against the training throughput
and against what the 20-minute full-size target needs (137K x 50 windows / 1,200 s).

Training variants, each timed in the same run and printed as a ratio to the fp32 eager baseline:
fp32 eager, bf16 autocast, channels_last, bf16 + channels_last, torch.compile (fp32),
torch.compile + channels_last and torch.compile + bf16 + channels_last. One step = uint8 windows -> model input (resize/normalise on
the device) -> AG-CLIP forward -> InfoNCE + checklist BCE -> backward -> optimiser step. Rounds
are interleaved and the best round of each variant is compared (other processes share the cores).
Retrieval: chunked top-1 (:func:`soundloc.agclip.topk_chunked`) fp32 vs bf16 matmuls.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np
import torch

from soundloc import agclip
from soundloc import spectrogram as S
from soundloc.devices import resolve_device
from soundloc.encoders import AudioEncoder, EncoderConfig
from soundloc.models import GeoModel


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def make_model(arch, size, n_species, dev, channels_last):
    torch.manual_seed(0)
    enc = AudioEncoder(EncoderConfig(arch, input_size=size))
    head = agclip.AGCLIPHead(agclip.AGCLIPConfig(in_dim=enc.dim, n_species=n_species))
    m = GeoModel(enc, head).to(dev).train()
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    return m


def train_variant(name, a, dev, data):
    """-> (step function, model); the step runs one forward+backward+update on a batch of uint8 windows."""
    amp = "bf16" in name
    cl = "channels_last" in name
    model = make_model(a.arch, a.size, a.species, dev, cl)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    fwd = torch.compile(model) if "compile" in name else model
    windows, targets = data

    def step():
        x = S.to_model_input(windows, size=a.size, device=dev)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            out = fwd(x)
        loss = model.head.loss(out.float(), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step


def bench_training(a, dev) -> dict[str, float]:
    rng = np.random.default_rng(0)
    windows = torch.as_tensor(rng.integers(0, 256, (a.batch, 128, 512), dtype=np.uint8)).to(dev)
    ll = np.stack([rng.uniform(-60, 70, a.batch), rng.uniform(-180, 180, a.batch)], 1)
    emb = torch.nn.functional.normalize(torch.randn(a.batch, 512), dim=1)
    chk = (torch.rand(a.batch, a.species) < 0.05).float()
    targets = agclip.AGCLIPHead(agclip.AGCLIPConfig(in_dim=8, n_species=a.species)).make_targets(ll, emb, chk).to(dev)
    names = ["fp32 eager", "bf16 autocast", "channels_last", "bf16 + channels_last"]
    if not a.no_compile:
        names += ["compile", "compile + channels_last", "compile + bf16 + channels_last"]
    steps, compile_s = {}, {}
    for n in names:
        t = time.perf_counter()
        try:
            f = train_variant(n, a, dev, (windows, targets))
            f()  # warm-up (and compilation)
            f()
            _sync(dev)
        except Exception as e:  # noqa: BLE001 - e.g. no C++ compiler for inductor: report and go on
            print(f"  {n}: unavailable ({type(e).__name__}: {str(e).splitlines()[0][:100]})", flush=True)
            continue
        steps[n] = f
        compile_s[n] = time.perf_counter() - t
    best = {n: float("inf") for n in steps}
    for _ in range(a.rounds):
        for n, f in steps.items():
            _sync(dev)
            t = time.perf_counter()
            for _ in range(a.steps):
                f()
            _sync(dev)
            best[n] = min(best[n], (time.perf_counter() - t) / a.steps)
    base = best["fp32 eager"]
    out = {}
    for n, s in best.items():
        out[n] = a.batch / s
        extra = f" (warm-up incl. compile {compile_s[n]:.0f} s)" if "compile" in n else ""
        print(f"  train {n:32s} {a.batch / s:9.1f} clips/s   x{base / s:5.2f} vs fp32 eager{extra}", flush=True)
    return out


def bench_retrieval(a, dev) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(a.queries, 512, generator=g).to(dev)
    gal = torch.nn.functional.normalize(torch.randn(a.gallery, 512, generator=g), dim=1).to(dev)
    variants = {"fp32": None, "bf16": torch.bfloat16}
    if dev.type == "cuda":
        variants["fp16"] = torch.float16
    ref = None
    best = {}
    for _ in range(a.rounds):
        for n, dt in variants.items():
            agclip.topk_chunked(q[:64], gal, k=1, dtype=dt)  # warm-up
            _sync(dev)
            t = time.perf_counter()
            _, idx = agclip.topk_chunked(q, gal, k=1, dtype=dt)
            _sync(dev)
            best[n] = min(best.get(n, float("inf")), time.perf_counter() - t)
            if n == "fp32":
                ref = idx[:, 0]
            else:
                best[n + " agree"] = float((idx[:, 0] == ref).float().mean())
    out = {}
    for n in variants:
        rate = a.queries * a.gallery / best[n]
        out[n] = rate
        agree = f", top-1 agrees with fp32 for {100 * best[n + ' agree']:.1f} %" if n != "fp32" else ""
        print(f"  retrieval {n:5s} {rate / 1e6:10.1f} M query x gallery pairs/s   x{best['fp32'] / best[n]:5.2f} "
              f"vs fp32{agree}", flush=True)
    return out


def _rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux: ru_maxrss is in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mb(key: str) -> float | None:
    """VmRSS / VmHWM of this process from /proc (Linux), MB; None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so that a later read measures one step only (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def bench_big(dev, n_q: int = 50_000, n_g: int = 259_200, q_chunk: int = 1024, g_chunk: int = 65536) -> dict:
    """One retrieval of 50K queries over a 260K-point gallery: time and peak memory (bounded by the chunks)."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(n_q, 512, generator=g).to(dev)
    gal = torch.nn.functional.normalize(torch.randn(n_g, 512, generator=g), dim=1).to(dev)
    inputs_mb = (q.numel() + gal.numel()) * 4 / 2**20
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    rss0 = _status_mb("VmRSS")
    reset = _reset_peak() and rss0 is not None
    _sync(dev)
    t = time.perf_counter()
    _, idx = agclip.topk_chunked(q, gal, k=1, q_chunk=q_chunk, g_chunk=g_chunk)
    _sync(dev)
    sec = time.perf_counter() - t
    if dev.type == "cuda":
        extra = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
    else:  # peak RSS during the retrieval minus RSS before it (inputs already resident)
        extra = (_status_mb("VmHWM") - rss0) if reset else float("nan")
    full_mb = n_q * n_g * 4 / 2**20
    print(f"  big retrieval: {n_q} queries x {n_g} gallery points on {dev}: {sec:.1f} s "
          f"({n_q * n_g / sec / 1e9:.2f} G pairs/s); inputs {inputs_mb:.0f} MB, extra peak memory {extra:.0f} MB "
          f"(chunks {q_chunk} x {g_chunk}; the full similarity matrix would be {full_mb / 1024:.1f} GB); "
          f"peak RSS {_rss_mb():.0f} MB", flush=True)
    return {"seconds": sec, "extra_mb": extra, "inputs_mb": inputs_mb}


# The full-size target: 137K training recordings x one window x 50 epochs in 20 minutes.
TARGET_WINDOWS_PER_S = 137_000 * 50 / (20 * 60)


def bench_loader(a, workers=(0, 2), n_batches: int = 20) -> dict[str, float]:
    """Training-window supply from a uint8 memmap spectrogram cache (the SimSounds SMALL world's; built if
    missing): windows/s through the trainer's dataset and a DataLoader with 0 and 2 worker processes."""
    from soundloc import datasets
    from soundloc.recording_sets import RecordingSet
    from soundloc.recording_sets import TrainWindows

    sim = datasets.prepare_sim(progress=False)
    df = sim.train
    recs = RecordingSet(sim.caches["train"], np.zeros(len(df)), ids=list(df["audio_id"]), spec_cfg=sim.spec_cfg)
    ds = TrainWindows(recs, seed=0)
    order = np.random.default_rng(0).permutation(len(ds))
    out = {}
    for w in workers:
        loader = torch.utils.data.DataLoader(ds, batch_size=128, sampler=order, num_workers=w,
                                             persistent_workers=False, drop_last=True)
        it = iter(loader)
        next(it)  # worker start-up excluded
        t0, n = time.perf_counter(), 0
        for _ in range(min(n_batches, len(order) // 128 - 1)):
            win, _ = next(it)
            n += len(win)
        out[f"{w} workers"] = n / (time.perf_counter() - t0)
        del it, loader
        print(f"  loader, {w} worker processes: {out[f'{w} workers']:,.0f} windows/s (uint8 memmap -> (128, 512) "
              f"window tensors, batch 128)", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--gpu-sized", action="store_true", help="MobileNetV3-Large, 224 px, batch 128, 260K gallery")
    ap.add_argument("--big", action="store_true", help="also time 50K queries x 260K gallery and its peak memory")
    ap.add_argument("--big-queries", type=int, default=50_000, help="queries of --big (memory does not depend on it)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("SOUNDLOC_TORCH_THREADS", "1")))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--loader", action="store_true", help="also time the window supply from a memmap spectrogram "
                    "cache (builds the SimSounds SMALL world when missing)")
    a = ap.parse_args(argv)
    dev = resolve_device(a.device)
    if dev.type == "cpu":
        torch.set_num_threads(a.threads)
    if a.gpu_sized:
        a.arch, a.size, a.batch, a.steps, a.species, a.queries, a.gallery = (
            "mobilenet_v3_large", 224, 128, 20, 5000, 50_000, 259_200)
    else:
        a.arch, a.size, a.batch, a.steps, a.species, a.queries, a.gallery = (
            "mobilenet_v3_small", 112, 16, 3, 500, 1000, 20_000)
    print(f"AG-CLIP bench on {dev} ({torch.get_num_threads()} CPU threads, load {os.getloadavg()[0]:.1f}): "
          f"{a.arch} {a.size} px, batch {a.batch}; retrieval {a.queries} x {a.gallery}", flush=True)
    tr = bench_training(a, dev)
    rt = bench_retrieval(a, dev)
    if a.big:
        bench_big(dev, n_q=a.big_queries)
    base = tr["fp32 eager"]
    best_train = max(tr, key=tr.get)
    tail = ""
    if a.loader:
        ld = bench_loader(a)
        best_ld = max(ld.values())
        tail = f"; loader {best_ld:,.0f} windows/s = x{best_ld / TARGET_WINDOWS_PER_S:.2f} the 20-minute target's need"
        print(f"loader vs training on {dev}: {best_ld:,.0f} windows/s supplied, x{best_ld / tr[best_train]:.1f} the "
              f"fastest training variant's {tr[best_train]:.1f} clips/s; the 20-minute full-size target needs "
              f"{TARGET_WINDOWS_PER_S:,.0f} windows/s, x{best_ld / TARGET_WINDOWS_PER_S:.2f} of it from this "
              f"machine's loader ({os.cpu_count()} CPU cores)")
    print(f"AG-CLIP on {dev}: training fastest = {best_train} x{tr[best_train] / base:.2f} vs fp32 eager "
          f"({base:.1f} clips/s); retrieval bf16 x{rt['bf16'] / rt['fp32']:.2f} vs fp32 "
          f"({rt['fp32'] / 1e6:.0f} M pairs/s){tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
