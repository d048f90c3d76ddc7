"""Report helpers of the learned chapters: our numbers beside the paper's (labelled columns), error CDFs,
spectrogram panels."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import paper
from .datasets import REAL_LABEL, REAL_SUFFIX, SIM_SUFFIX
from .metrics import THRESHOLDS_KM

__all__ = ["PAPER_PREFIX", "SIM_SUFFIX", "REAL_SUFFIX", "REAL_LABEL", "simulated_beside_paper", "error_cdf_figure",
           "spectrogram_figure"]

PAPER_PREFIX = "paper (iNatSounds) "


def simulated_beside_paper(ours: pd.DataFrame, table: dict | None = None, mapping: dict | None = None,
                           paper_prefix: str = PAPER_PREFIX, suffix: str = SIM_SUFFIX) -> pd.DataFrame:
    """A summary table of our results with the paper's numbers in separate, labelled columns.

    Our numeric columns are renamed ``"<col><suffix>"`` (`` (simulated)`` for SimSounds, :data:`REAL_SUFFIX`
    for real audio); the paper's (default: Table 1, rows matched by method name unless ``mapping`` says
    otherwise) are added as ``"paper (iNatSounds) <col>"``. Rows the paper does not have get blanks. Our
    numbers never share a column with the paper's.
    """
    table = paper.TABLE1 if table is None else table
    mapping = {m: m for m in ours["method"] if m in table} if mapping is None else mapping
    out = ours.rename(columns={c: c + suffix for c in ours.columns
                               if c not in ("method", "n") and (pd.api.types.is_numeric_dtype(ours[c]) or "95% CI" in c)})
    both = paper.beside_paper(out, table, mapping)
    return both.rename(columns={f"paper {c}": paper_prefix + c for c in paper.COLS})


# --------------------------------------------------------------------------- figures

def error_cdf_figure(errors: dict[str, np.ndarray], title: str, ax=None, max_km: float = 20000):
    """Fraction of recordings within x km for each method (log x), with the paper's thresholds marked."""
    import matplotlib.pyplot as plt


    if ax is None:
        _, ax = plt.subplots(figsize=(8, 5))
    x = np.logspace(0, np.log10(max_km), 400)
    for m, d in errors.items():
        d = np.sort(np.asarray(d, float))
        ax.plot(x, np.searchsorted(d, x, side="right") / len(d), label=m, lw=1.6,
                ls="--" if m.startswith(("Naive", "Ranges: annotated")) else "-")
    for name, km in THRESHOLDS_KM.items():
        ax.axvline(km, color="0.8", lw=0.8, zorder=0)
        ax.text(km, 1.01, name, rotation=0, ha="center", va="bottom", fontsize=8, color="0.4")
    ax.set(xscale="log", xlim=(1, max_km), ylim=(0, 1), xlabel="error (km)", ylabel="fraction of recordings within")
    ax.set_title(title, pad=16)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return ax


def spectrogram_figure(sim, split: str = "train", n: int = 4, seed: int = 0, title: str = ""):
    """``n`` random spectrogram images of a split, titled with their species."""
    import matplotlib.pyplot as plt

    df = sim.splits[split]
    rows = df.sample(n, random_state=seed)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.2), squeeze=False)
    for ax, (_, r) in zip(axes[0], rows.iterrows()):
        img = sim.image(split, r["audio_id"])
        secs = img.shape[1] * sim.spec_cfg.hop / sim.spec_cfg.sr
        ax.imshow(img, aspect="auto", cmap="magma", extent=(0, secs, 0, sim.spec_cfg.n_mels))
        bg = f"(+{len(r['all_species']) - 1} background) " if "all_species" in r else ""
        ax.set_title(f"{r['species']}\n{bg}week {r['week']}", fontsize=9)
        ax.set_xlabel("seconds")
        ax.set_ylabel("mel band (low to high)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
