"""Checklist -> GeoCLIP ridge map (chapter 02's oracles): the N x N dual solve vs the S x S primal, in one run.

Run: ``.venv/bin/python bench/bench_ridge.py`` (about 15 s on one CPU thread). Sizes are chapter 02's
SMALL test run: 3,000 training checklists over BirdNET's 6,522 species -> 512-d GeoCLIP embeddings.
Both forms are solved in float32 and compared with a float64 solve.
"""
from __future__ import annotations

import argparse
import time

import torch

from soundloc.oracles import fit_linear_map


def primal(X, Y, ridge=1.0):
    """The S x S normal equations (what fit_linear_map solves when S <= N)."""
    Xf = X.float()
    mx, my = Xf.mean(0), Y.mean(0)
    Xc, Yc = Xf - mx, Y - my
    W = torch.linalg.solve(Xc.T @ Xc + ridge * torch.eye(Xf.shape[1]), Xc.T @ Yc)
    return W, my - mx @ W


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lists", type=int, default=3000)
    ap.add_argument("--species", type=int, default=6522)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    X = torch.rand(a.lists, a.species, generator=g) < 0.03
    Y = torch.nn.functional.normalize(torch.randn(a.lists, a.dim, generator=g), dim=1)
    t = time.perf_counter()
    Wp, _ = primal(X, Y)
    t_p = time.perf_counter() - t
    t = time.perf_counter()
    Wd, _ = fit_linear_map(X, Y)
    t_d = time.perf_counter() - t
    Xc = X.double() - X.double().mean(0)
    Yc = Y.double() - Y.double().mean(0)
    W64 = Xc.T @ torch.linalg.solve(Xc @ Xc.T + torch.eye(a.lists, dtype=torch.float64), Yc)
    ep, ed = float((Wp.double() - W64).abs().max()), float((Wd.double() - W64).abs().max())
    res = {"bench": "ridge", "primal_s": t_p, "ours_s": t_d, "speedup": t_p / t_d, "err_primal": ep, "err_ours": ed}
    print(f"SUMMARY ridge map {a.lists:,} lists x {a.species:,} species -> {a.dim}-d: S x S primal {t_p:.2f} s, "
          f"fit_linear_map {t_d:.2f} s, speed-up {t_p / t_d:.1f}x; max error vs float64 {ep:.1e} (primal) / {ed:.1e} (ours)")
    return res


if __name__ == "__main__":
    main()
