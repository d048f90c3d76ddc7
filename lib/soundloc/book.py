"""Chapter plumbing: validated parameters, seeding, device choice, and saving outputs.

Every chapter starts ``ch = book.start("NN", SMALL=..., SEED=..., DEVICE=..., OUT=...)`` and saves
with ``ch.table`` / ``ch.figure`` / ``ch.map`` so that outputs land in one folder with the
chapter's prefix, each table as CSV + Markdown and printed in the notebook.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import paths
from .io import atomic_path, markdown_table, save_table
from .maps import save_fig, save_map

SIM_LABEL = "simulated (SimSounds)"

# "None means ..." defaults of chapter parameters: chapter -> {name: (SMALL value, paper value)}; "*" for every
# chapter. ``start`` resolves them once; the chapter reads them back with ``ch.resolved(...)``.
PRESETS = {
    "*": {"GALLERY": ("land2", "land1")},  # range-geolocation gallery: the 2 or the 1 degree land grid
    "02": {"N_EVAL": (2000, None), "N_REF": (8000, None), "N_SIM": (1000, 3500)},
    "03": {"ABLATION_SEEDS": (3, 1)},  # training seeds of the Table 2 ablations and fusion rows
    "04": {"N_REAL": (3000, None)},
    "05": {"DRAWS": (10, 100), "N_VAL": (250, None)},
    "07": {"N_VAL": (150, 500), "N_TEST": (60, 500)},
    "08": {"JURA_STEP": (2, 1)},
    "09": {"N_LISTS": (400, None), "MAP_STEP": (4.0, 2.0), "N_EXPECTED": (3000, None), "PSM_EPOCHS": (25, 80)},
    "10": {"FLOW_EPOCHS": (100, 400), "GRID_DEG": (3.0, 1.0), "N_DENSITY": (24, None), "N_REAL": (2000, None),
           "JURA_STEP": (2, 1)},
    "12": {"N_SINGLE": (600, None), "N_LISTS": (600, None), "N_XCDC": (400, None), "N_SWEEP": (150, None)},
}


class ParameterError(TypeError):
    """A notebook parameter has the wrong type or value."""


def check_types(params: dict, types: dict) -> None:
    """Raise ParameterError naming the first parameter whose value is not of its declared type."""
    for k, t in types.items():
        if k not in params:
            raise ParameterError(f"missing parameter {k}")
        v = params[k]
        ok = isinstance(v, t) and not (t in (int, float, (int, float)) and isinstance(v, bool))
        if not ok:
            want = " or ".join(x.__name__ for x in (t if isinstance(t, tuple) else (t,)))
            raise ParameterError(f"parameter {k}={v!r} should be {want}, got {type(v).__name__}")


@dataclass
class Chapter:
    prefix: str  # "00" ... "08": every output file starts with it
    out: Path  # output folder (figures/ unless OUT was given)
    small: bool  # SMALL mode: CPU-sized work
    seed: int  # seed for numpy, random and torch
    device: object  # torch.device
    device_name: str = "auto"  # the DEVICE parameter as given ("auto" | "cpu" | "cuda"), for training configs
    params: dict = field(default_factory=dict)  # parameters given to ``start``, "None means ..." defaults resolved

    def resolved(self, *names: str):
        """The named parameters with their SMALL / paper presets filled in (one value, or a tuple for several)."""
        vals = tuple(self.params[n] for n in names)
        return vals[0] if len(vals) == 1 else vals

    def path(self, name: str, suffix: str) -> Path:
        return self.out / f"{self.prefix}_{name}{suffix}"

    def table(self, df: pd.DataFrame, name: str, title: str, floatfmt: str = ".1f") -> pd.DataFrame:
        """Save ``NN_name.csv`` + ``.md``, print it, and return it (for display)."""
        save_table(df, self.path(name, ""), title=title, floatfmt=floatfmt)
        print(f"{title}\n{markdown_table(df, floatfmt)}\n")
        return df

    def reading(self, name: str, sentences: list[str], title: str | None = None) -> str:
        """Write generated reading sentences to ``NN_name.md``, print them, and return the text.

        Readings are built from the run's own tables (f-strings over their values), never typed in.
        """
        if not sentences or not all(isinstance(s, str) and s.strip() for s in sentences):
            raise ValueError(f"reading {name!r}: give one or more non-empty sentences")
        text = ((f"**{title}**\n\n" if title else "") + "\n".join(f"- {s.strip()}" for s in sentences) + "\n")
        with atomic_path(self.path(name, ".md")) as tmp:
            tmp.write_text(text)
        print(text)
        return text

    def figure(self, fig, name: str) -> Path:
        return save_fig(fig, self.path(name, ".png"))

    def map(self, m, name: str) -> Path:
        return save_map(m, self.path(name, ".html"))


def start(prefix: str, *, SMALL, SEED, DEVICE="auto", OUT=None, types: dict | None = None, **params) -> Chapter:
    """Validate a chapter's parameters, seed everything, pick the device, resolve the SMALL / paper presets of
    ``params`` left None (:data:`PRESETS`) -> Chapter."""
    check_types({"SMALL": SMALL, "SEED": SEED, "DEVICE": DEVICE, **params},
                {"SMALL": bool, "SEED": int, "DEVICE": str, **(types or {})})
    if OUT is not None and not isinstance(OUT, (str, Path)):
        raise ParameterError(f"parameter OUT={OUT!r} should be a folder path or None")
    random.seed(SEED)
    np.random.seed(SEED)
    import torch

    torch.manual_seed(SEED)
    out = Path(OUT) if OUT else paths.figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    from .devices import resolve_device

    try:
        device = resolve_device(DEVICE)
    except (ValueError, RuntimeError) as e:
        raise ParameterError(f"parameter DEVICE={DEVICE!r}: {e}") from None
    presets = {**PRESETS["*"], **PRESETS.get(prefix, {})}
    params = {k: (presets[k][0 if SMALL else 1] if v is None and k in presets else v) for k, v in params.items()}
    return Chapter(prefix, out, SMALL, SEED, device, DEVICE, params)


def say_compare(r: dict, a: str, b: str, unit: str = "km") -> str:
    """A ``metrics.compare`` (or ``metrics.seed_compare``) result -> a sentence that calls a tie a tie, e.g.
    "A is better than B on the median error (-120 km, 95 % CI [-200, -40])."; over training seeds it gives the
    mean difference, its seed sd and the envelope of the per-seed intervals, and says what a tie falls inside."""
    scale, u = (1.0, " km") if unit == "km" else (100.0, " points")
    d, lo, hi = (scale * r[k] for k in ("diff", "lo", "hi"))
    spec = "+,.0f" if unit == "km" else "+.1f"
    what = r["metric"].replace("_error", " error")
    if "seeds" in r:  # a seed_compare result
        sd = scale * r["seed_sd"]
        ci = (f"mean over {r['seeds']} training seeds {d:{spec}}{u}, seed sd {sd:{spec[1:]}}{u}, "
              f"per-seed 95 % CIs within [{lo:{spec}}, {hi:{spec}}]")
        why = " and ".join(w for w, inside in (("inside the seed spread", abs(d) <= sd),
                                               ("an interval includes 0", lo <= 0 <= hi)) if inside)
    else:
        ci, why = f"{d:{spec}}{u}, 95 % CI [{lo:{spec}}, {hi:{spec}}]", "the interval includes 0"
    if r["verdict"] == "tie":
        return f"{a} and {b} tie on the {what} ({ci}: {why})."
    word = "better" if r["verdict"] == "better" else "worse"
    return f"{a} is {word} than {b} on the {what} ({ci})."
