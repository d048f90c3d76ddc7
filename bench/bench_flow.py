"""Flow head: sampling throughput (samples/s), point estimates per recording vs gallery retrieval, in one run.

    .venv/bin/python bench/bench_flow.py                 # CPU
    .venv/bin/python bench/bench_flow.py --device cuda   # on a GPU (the same script, batched there)

The flow's cost does not depend on its weights, so an untrained head of the chapter's shape (embedding
1,024, MLP 3 x 128, RK4) is timed; retrieval is AG-CLIP's (cosine top-1 of (R, 512) recording features
over a gallery of 512-d embeddings, uniform 1 degree = 64,800 points by default). Prints a SUMMARY line.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from soundloc.devices import resolve_device
from soundloc.flow import FlowConfig, FlowHead
from soundloc.sphere import uniform_grid
from soundloc.location_encoders import retrieve


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _best_of(fn, dev, repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls (after one warm-up call)."""
    fn()
    _sync(dev)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(dev)
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--recordings", type=int, default=256, help="recordings per batch")
    ap.add_argument("--samples", type=int, default=128, help="samples per recording (the point estimate's)")
    ap.add_argument("--steps", type=int, default=8, help="RK4 steps")
    ap.add_argument("--gallery", type=int, default=64800, help="gallery points for retrieval (64,800 = uniform 1 deg)")
    ap.add_argument("--density-points", type=int, default=2048, help="points of one log-density call")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    dev = resolve_device(a.device)
    torch.manual_seed(0)
    head = FlowHead(FlowConfig(cond_dim=1024), device=dev)
    cond = torch.randn(a.recordings, 1024, device=dev)

    t_sample = _best_of(lambda: head.sample(cond, n=a.samples, steps=a.steps), dev, a.repeats)
    t_point = _best_of(lambda: head.point_estimate(cond, n=a.samples, steps=a.steps), dev, a.repeats)
    pts = uniform_grid(4.0)[: a.density_points]
    t_dens = _best_of(lambda: head.log_density(pts, cond[:1].cpu().numpy(), steps=a.steps), dev, 1)

    q = torch.nn.functional.normalize(torch.randn(a.recordings, 512, device=dev), dim=1)
    g = torch.nn.functional.normalize(torch.randn(a.gallery, 512, device=dev), dim=1)
    t_retr = _best_of(lambda: retrieve(q, g, k=1), dev, a.repeats)

    sps = a.recordings * a.samples / t_sample
    flow_ms, retr_ms = 1e3 * t_point / a.recordings, 1e3 * t_retr / a.recordings
    res = {"bench": "flow", "device": str(dev), "samples_per_s": sps, "flow_ms_per_recording": flow_ms,
           "retrieval_ms_per_recording": retr_ms, "ratio": flow_ms / retr_ms,
           "density_points_per_s": len(pts) / t_dens}
    print(f"flow sampling on {dev}: {sps:,.0f} samples/s (RK4 x {a.steps}, {a.recordings} recordings x {a.samples})")
    print(f"point estimate (mode of {a.samples} samples): {flow_ms:.3f} ms/recording; gallery retrieval over "
          f"{a.gallery:,} points: {retr_ms:.3f} ms/recording")
    print(f"log density (exact divergence, RK4 x {a.steps}): {len(pts) / t_dens:,.0f} points/s")
    print(f"SUMMARY flow {sps:,.0f} samples/s on {dev}; a point estimate costs {flow_ms / retr_ms:.1f}x "
          f"a gallery retrieval per recording ({flow_ms:.3f} vs {retr_ms:.3f} ms)")
    return res


if __name__ == "__main__":
    main()
