"""Retrieval: chunked torch matmul top-1 vs a plain numpy loop over queries, in one run; prints the ratio."""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from soundloc.location_encoders import retrieve


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--gallery", type=int, default=65000, help="gallery size (65K = uniform 1 degree)")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    q = rng.standard_normal((a.queries, 512)).astype(np.float32)
    g = rng.standard_normal((a.gallery, 512)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    n_ref = min(200, a.queries)  # the reference loop is slow: time it on a subset, scale per query
    t = time.perf_counter()
    ref = np.array([int(np.argmax(g @ q[i])) for i in range(n_ref)])
    t_ref = (time.perf_counter() - t) / n_ref
    dev = torch.device(a.device)
    G, Q = torch.from_numpy(g).to(dev), torch.from_numpy(q).to(dev)
    retrieve(Q[:64], G)  # warm-up
    t = time.perf_counter()
    _, idx = retrieve(Q, G, k=1)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_ours = (time.perf_counter() - t) / a.queries
    assert (idx[:n_ref, 0].cpu().numpy() == ref).all(), "chunked top-1 differs from the reference loop"
    res = {"bench": "retrieval", "device": str(dev), "gallery": a.gallery, "ref_ms_per_query": 1e3 * t_ref,
           "ours_ms_per_query": 1e3 * t_ours, "speedup": t_ref / t_ours}
    print(f"retrieval over {a.gallery} gallery points: numpy loop {1e3 * t_ref:.2f} ms/query, chunked torch "
          f"{1e3 * t_ours:.3f} ms/query on {dev}: speed-up {t_ref / t_ours:.1f}x (same top-1)")
    return res


if __name__ == "__main__":
    main()
