"""bf16 where the hardware has it: GeoCLIP gallery embedding and an AG-CLIP head training step, each vs float32;
and the head's dropout mask (rand_like) vs torch's nn.Dropout (bernoulli_).

Run: ``.venv/bin/python bench/bench_bf16.py`` (about 1 min on one CPU core). Two of the book's hot paths:

- embedding a gallery with GeoCLIP's location encoder (:func:`soundloc.location_encoders.embed_locations`,
  the 0.5 degree grid is 259,200 points x ~19 MFLOP), ``precision="fp32"`` vs ``"bf16"`` (MLP layers
  in bfloat16, Fourier features in float32); also reports the smallest cosine between the two;
- one training step of the SMALL AG-CLIP head on cached window embeddings (batch 128, 1,024-d input,
  256-wide adapter, 5,861-species checklist decoder, AdamW), float32 vs bf16 autocast (the trainer's
  ``amp="bf16"``);
- the head's input dropout on a (128, 1,024) batch, forward and backward: :class:`soundloc.agclip.MaskDropout`
  (mask from ``rand_like``) vs ``torch.nn.Dropout`` (``bernoulli_``, scalar on the CPU).

Variants run in interleaved rounds in one process and the best round of each is compared (other
processes share the cores). On a CPU without native bf16 (:func:`soundloc.devices.native_bf16`)
the ratios are still printed, but the book computes in float32 there.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from soundloc.agclip.model import AGCLIPConfig, AGCLIPHead, MaskDropout
from soundloc.devices import native_bf16
from soundloc.location_encoders import embed_locations, load_geoclip_encoder


def _best(fns: dict, rounds: int) -> dict:
    """{name: callable} -> {name: best seconds over interleaved rounds}."""
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def head_step_fn(amp: bool, steps: int, n_species: int):
    """-> a callable running ``steps`` AdamW steps of a SMALL AG-CLIP head (float32 or bf16 autocast)."""
    torch.manual_seed(0)
    head = AGCLIPHead(AGCLIPConfig(in_dim=1024, adapter=256, input_dropout=0.5, n_species=n_species))
    opt = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=1e-3, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    z = torch.randn(128, 1024)
    t = head.make_targets(rng.uniform(-60, 60, (128, 2)), torch.nn.functional.normalize(torch.randn(128, 512), dim=1),
                          torch.as_tensor(rng.random((128, n_species)) < 0.05))

    def run():
        for _ in range(steps):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                out = head(z)
            loss = head.loss(out.float(), t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return run


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=16384, help="gallery points embedded per round")
    ap.add_argument("--steps", type=int, default=40, help="head training steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--species", type=int, default=5861, help="checklist decoder outputs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the book's test workers use 1)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    enc = load_geoclip_encoder()
    rng = np.random.default_rng(0)
    pts = np.c_[rng.uniform(-90, 90, a.points), rng.uniform(-180, 180, a.points)]
    emb = {}

    def embed(prec):
        return lambda: emb.__setitem__(prec, embed_locations(enc, pts, precision=prec))

    g = _best({"fp32": embed("fp32"), "bf16": embed("bf16")}, a.rounds)
    cos = float((emb["fp32"] * emb["bf16"]).sum(1).min())
    h = _best({"fp32": head_step_fn(False, a.steps, a.species), "bf16": head_step_fn(True, a.steps, a.species)}, a.rounds)
    x = torch.randn(128, 1024, requires_grad=True)

    def drop(mod, n=200):
        mod.train()
        return lambda: [mod(x).sum().backward() for _ in range(n)]

    d = _best({"nn.Dropout": drop(torch.nn.Dropout(0.5)), "MaskDropout": drop(MaskDropout(0.5))}, a.rounds)
    res = {"bench": "bf16", "native_bf16": native_bf16("cpu"), "gallery_fp32_s": g["fp32"], "gallery_bf16_s": g["bf16"],
           "gallery_speedup": g["fp32"] / g["bf16"], "gallery_min_cosine": cos,
           "head_fp32_ms": 1e3 * h["fp32"] / a.steps, "head_bf16_ms": 1e3 * h["bf16"] / a.steps,
           "head_speedup": h["fp32"] / h["bf16"], "dropout_speedup": d["nn.Dropout"] / d["MaskDropout"]}
    print(f"SUMMARY bf16 vs fp32 on cpu ({a.threads} thread{'s' * (a.threads > 1)}, native bf16: "
          f"{'yes' if res['native_bf16'] else 'no'}): GeoCLIP gallery embedding {a.points:,} points "
          f"{g['fp32']:.2f} s -> {g['bf16']:.2f} s, speed-up {res['gallery_speedup']:.2f}x (min cosine to fp32 {cos:.6f}); "
          f"AG-CLIP head step (checklist {a.species:,} species) {res['head_fp32_ms']:.1f} ms -> {res['head_bf16_ms']:.1f} ms, "
          f"speed-up {res['head_speedup']:.2f}x; dropout mask rand_like vs bernoulli_ {res['dropout_speedup']:.2f}x")
    return res


if __name__ == "__main__":
    main()
