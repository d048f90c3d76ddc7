"""Checklist -> GeoCLIP ridge map (chapter 02's oracles): a dense float32 solve vs fit_linear_map, in one run.

Run: ``.venv/bin/python bench/bench_ridge.py`` (about a minute on one CPU thread). The reference is the dense
float32 solve of the smaller of the two equal systems (what fit_linear_map did before it built the Gram matrix
from the sparse checklists in float64). The inputs are chapter 02's: real BirdNET checklists (threshold 0.1, the
species present anywhere kept) at GeoCLIP's photo coordinates with random weeks, in two sizes: the test run
(3,000 lists, more species than lists: the N x N system) and the book run (8,000 lists: the S x S system).
Targets are random unit vectors (the solve's cost and error do not depend on them). Errors are against a
float64 dense solve, computed at the test size.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from soundloc.oracles import checklists, fit_linear_map
from soundloc.ranges import load_range_model
from soundloc.reference import geoclip_coordinates


def dense_ridge(X, Y, ridge=1.0):
    """The dense float32 solve of the smaller system (the reference)."""
    Xf = X.float()
    mx, my = Xf.mean(0), Y.mean(0)
    Xc, Yc = Xf - mx, Y - my
    n, s = Xc.shape
    if s <= n:
        W = torch.linalg.solve(Xc.T @ Xc + ridge * torch.eye(s), Xc.T @ Yc)
    else:
        W = Xc.T @ torch.linalg.solve(Xc @ Xc.T + ridge * torch.eye(n), Yc)
    return W, my - mx @ W


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    model = load_range_model("birdnet", "torch", device="cpu")
    ref = geoclip_coordinates(land_only=True)
    res, parts = {"bench": "ridge"}, []
    for tag, n in (("test", 3000), ("book", 8000)):
        pts = ref[rng.choice(len(ref), n, replace=False)]
        X = checklists(model, pts, rng.integers(1, 49, n), 0.1)
        X = X[:, X.any(0)]
        s = X.shape[1]
        Y = torch.nn.functional.normalize(torch.randn(n, a.dim, generator=g), dim=1)
        t = time.perf_counter()
        Wd, _ = dense_ridge(X, Y)
        t_d = time.perf_counter() - t
        t = time.perf_counter()
        Wo, _ = fit_linear_map(X, Y)
        t_o = time.perf_counter() - t
        res.update({f"{tag}_dense_s": t_d, f"{tag}_ours_s": t_o, f"{tag}_speedup": t_d / t_o})
        line = f"{n:,} lists x {s:,} species: dense float32 {t_d:.2f} s, fit_linear_map {t_o:.2f} s, {t_d / t_o:.1f}x"
        if tag == "test":  # float64 reference, affordable at this size
            Xc = X.double() - X.double().mean(0)
            Yc = Y.double() - Y.double().mean(0)
            W64 = Xc.T @ torch.linalg.solve(Xc @ Xc.T + torch.eye(n, dtype=torch.float64), Yc)
            ed, eo = float((Wd.double() - W64).abs().max()), float((Wo.double() - W64).abs().max())
            res.update({"err_dense": ed, "err_ours": eo})
            line += f" (max error vs float64 {ed:.1e} dense / {eo:.1e} ours)"
        parts.append(line)
    print("SUMMARY ridge map -> 512-d, one thread: " + "; ".join(parts))
    return res


if __name__ == "__main__":
    main()
