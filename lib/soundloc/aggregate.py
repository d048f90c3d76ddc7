"""Spatiotemporal grouping (paper section 5.3, Table 4): H3 cell x year / month / week.

Recordings made in the same H3 cell (and the same period) form a group; the group's location
posterior is the mean of its members' posteriors, and the group's decoded point is assigned to
every member, so that errors stay recording-level (the paper's protocol). Posteriors are (R, N)
over N gallery points or classes and are never held for all R recordings at once:
:func:`grouped_predictions` streams over chunks of recordings, scatter-adds each chunk into the
rows of the groups with two or more members, and decodes a group when its sum is complete.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm.auto import tqdm

from .maps import folium_posterior, land_background
from .metrics import summary_row, summary_row_ci
from .sphere import h3_cells, haversine

PERIODS = ("all", "year", "month", "week")

# name -> (H3 resolution or None = no grouping, period); the paper's Table 4 rows plus the rest of res x period
GROUPINGS = {
    "No grouping": (None, "all"),
    "H3 res 5": (5, "all"), "H3 res 5 + year": (5, "year"), "H3 res 5 + month": (5, "month"), "H3 res 5 + week": (5, "week"),
    "H3 res 6": (6, "all"), "H3 res 6 + year": (6, "year"), "H3 res 6 + month": (6, "month"), "H3 res 6 + week": (6, "week"),
}
PAPER_ROWS = {k: k for k in ("No grouping", "H3 res 5", "H3 res 6", "H3 res 6 + month", "H3 res 6 + week")}  # -> paper.TABLE4
PAPER_SINGLE_SPECIES_WEEKLY = 80.0  # paper 5.3: "over 80% of groups in the weekly grouping contain only a single species"


# ---------------------------------------------------------------- grouping keys
def period_key(df: pd.DataFrame, period: str) -> pd.Series:
    """(R rows with ``date``) -> (R,) str period key: '' (all), 'YYYY' (year), 'YYYY-MM' (month), ISO 'YYYY-Www' (week).

    Weeks are ISO calendar weeks (52-53 a year, as the paper's 52), keyed with their ISO year.
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, not {period!r}")
    if period == "all":
        return pd.Series("", index=df.index)
    if "date" not in df:
        raise ValueError(f"grouping by {period} needs a 'date' column")
    d = pd.to_datetime(df["date"], errors="coerce")
    if d.isna().any():
        bad = df.index[d.isna()][0]
        raise ValueError(f"{int(d.isna().sum())} rows have no valid date (first: row {bad!r}, {df.loc[bad, 'date']!r})")
    if period == "year":
        return d.dt.year.astype(str)
    if period == "month":
        return d.dt.strftime("%Y-%m")
    iso = d.dt.isocalendar()
    return iso["year"].astype(str) + "-W" + iso["week"].astype(int).map("{:02d}".format)


def group_ids(df: pd.DataFrame, res: int | None, period: str = "all") -> np.ndarray:
    """(R rows with lat, lon, date) -> (R,) int group ids 0..G-1: same H3 cell at ``res`` and same period.

    ``res=None``: no grouping (every recording its own group).
    """
    if res is None:
        period_key(df, period)  # validate the period name
        return np.arange(len(df))
    key = pd.Series(h3_cells(df["lat"].to_numpy(), df["lon"].to_numpy(), res), index=df.index).astype(str)
    if period != "all":
        key = key + "|" + period_key(df, period)
    return pd.factorize(key)[0]


def all_groupings(df: pd.DataFrame, spec: dict | None = None) -> dict[str, np.ndarray]:
    """(R rows) -> {grouping name: (R,) group ids} for every (res, period) in ``spec`` (default GROUPINGS)."""
    cells = {r: h3_cells(df["lat"].to_numpy(), df["lon"].to_numpy(), r) for r in {r for r, _ in (spec or GROUPINGS).values()} - {None}}
    out = {}
    for name, (res, period) in (spec or GROUPINGS).items():
        if res is None:
            out[name] = np.arange(len(df))
            continue
        key = pd.Series(cells[res], index=df.index).astype(str)
        out[name] = pd.factorize(key if period == "all" else key + "|" + period_key(df, period))[0]
    return out


def average_posteriors(post: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(R, N) posteriors, (R,) group ids -> (R, N) each row replaced by its group's mean posterior (in memory)."""
    g = torch.as_tensor(groups, dtype=torch.long)
    P = torch.as_tensor(post)
    sums = torch.zeros((int(g.max()) + 1, P.shape[1]), dtype=P.dtype).index_add_(0, g, P)
    counts = torch.bincount(g).to(P.dtype)[:, None]
    return (sums / counts)[g].numpy()


# ---------------------------------------------------------------- posterior sources
@dataclass
class PosteriorSource:
    """A method's per-recording posteriors, computed on demand, and how to decode one.

    ``fn(idx)``: (k,) recording indices -> (k, N) float32 posteriors (rows sum to 1).
    ``decode(P)``: (g, N) posteriors -> (g, 2) lat/lon degrees.
    """
    fn: Callable[[np.ndarray], torch.Tensor]
    decode: Callable[[torch.Tensor], np.ndarray]
    n: int  # number of recordings
    n_points: int  # N, posterior length
    order: np.ndarray | None = None  # (n,) processing order for chunks (e.g. by week, so caches are reused)
    label: str = ""

    @classmethod
    def from_matrix(cls, post, points: np.ndarray, label: str = "") -> "PosteriorSource":
        """(n, N) in-memory posteriors over (N, 2) lat/lon points (gallery points or class centres), argmax decoding."""
        P = torch.as_tensor(np.asarray(post, np.float32))
        return cls(lambda idx: P[torch.as_tensor(idx, dtype=torch.long)], argmax_decoder(points), len(P), P.shape[1],
                   label=label)


def argmax_decoder(points: np.ndarray, areas: np.ndarray | None = None) -> Callable[[torch.Tensor], np.ndarray]:
    """(N, 2) lat/lon points, (N,) cell areas km^2 | None -> decoder mapping (g, N) posterior masses to (g, 2)
    the densest point (mass / area; the most probable point when the points carry equal weights)."""
    pts = np.asarray(points, np.float64)
    if areas is None:
        return lambda P: pts[P.argmax(1).cpu().numpy()]
    inv = torch.as_tensor(1.0 / np.asarray(areas, np.float64), dtype=torch.float32)
    return lambda P: pts[(P * inv.to(P.device)).argmax(1).cpu().numpy()]


def hierarchical_posterior(probs, hierarchy, eps: float = 1e-8) -> torch.Tensor:
    """Coarse-to-fine H3 class probabilities -> (B, C_finest) posterior softmax(sum of log p over the cell's ancestors).

    ``probs[l]`` (B, C_l), coarsest first; ``hierarchy`` from :func:`soundloc.heads.h3_hierarchy`. Its argmax is
    the ``mode="sum"`` decoding of :func:`soundloc.heads.hierarchical_decode` (paper A.5).
    """
    _, ancestors = hierarchy
    logp = [torch.as_tensor(p).float().clamp_min(eps).log() for p in probs]
    score = logp[-1].clone()
    for lvl, anc in enumerate(ancestors):
        a = torch.as_tensor(anc, dtype=torch.long)
        g = logp[lvl][:, a.clamp_min(0)]
        score += torch.where(a[None] >= 0, g, torch.full_like(g, math.log(eps)))
    return torch.softmax(score, dim=1)


class RangePosteriors:
    """Species-range posteriors of recordings, each predicted by its fold's locator (cross-fitting).

    ``locators``: fold -> RangeGeolocator (same gallery); ``folds`` (R,); ``species`` R lists of names;
    ``weeks`` (R,) 1-48. Calling with (k,) indices -> (k, N) float32 posteriors. Queries with no
    species the range model covers get the prior alone (as RangeGeolocator does); counted in ``fallback``.
    """

    def __init__(self, locators: dict, folds, species, weeks, weights=None):
        self.locators, self.folds = locators, np.asarray(folds)
        self.species, self.weeks, self.weights = list(species), np.asarray(weeks), weights
        any_loc = next(iter(locators.values()))
        self.points, self.areas = any_loc.points, any_loc.areas  # posteriors are masses; decode by density
        self.unknown: Counter = Counter()
        self.fallback = np.zeros(len(self.species), bool)
        for i, names in enumerate(self.species):
            idx, unk = any_loc.model.match(list(names))
            self.unknown.update(unk)
            self.fallback[i] = len(idx) == 0

    def __call__(self, idx) -> torch.Tensor:
        idx = np.asarray(idx)
        out = torch.empty((len(idx), len(self.points)), dtype=torch.float32)
        for f, loc in self.locators.items():
            m = np.flatnonzero(self.folds[idx] == f)
            if len(m):
                rows = idx[m]
                w = None if self.weights is None else [self.weights[i] for i in rows]
                r = loc.locate([self.species[i] for i in rows], weights=w, weeks=self.weeks[rows],
                               return_posterior=True, progress=False)
                out[torch.as_tensor(m)] = torch.as_tensor(r.posterior)
        return out

    def source(self, label: str = "") -> PosteriorSource:
        """A PosteriorSource (densest gallery point, chunks processed in week order)."""
        return PosteriorSource(self, argmax_decoder(self.points, self.areas), len(self.species), len(self.points),
                               np.argsort(self.weeks, kind="stable"), label)


# ---------------------------------------------------------------- streaming group sums
def _slots(groupings: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Give every group with >= 2 members a global slot -> ({name: (R,) slot or -1}, (S,) member counts)."""
    slot_of, counts, base = {}, [], 0
    for name, g in groupings.items():
        g = np.asarray(g, np.int64)
        c = np.bincount(g)
        multi = np.flatnonzero(c >= 2)
        row = np.full(len(c), -1, np.int64)
        row[multi] = base + np.arange(len(multi))
        slot_of[name] = row[g]
        counts.append(c[multi])
        base += len(multi)
    return slot_of, (np.concatenate(counts) if counts else np.zeros(0, np.int64))


def stream_group_sums(source: PosteriorSource, slot_arrays: list[np.ndarray], lo: int, hi: int,
                      chunk: int = 2048, own: np.ndarray | None = None, progress: bool = True) -> torch.Tensor:
    """Sum members' posteriors into slots [lo, hi): (R,) slot arrays (-1 = no slot) -> (hi - lo, N) float64 sums.

    Only recordings with a slot in range are evaluated (all of them when ``own`` (R, 2), an output
    for each recording's own decoded point, is given). Chunks follow ``source.order``.
    """
    order = np.arange(source.n) if source.order is None else np.asarray(source.order)
    need = np.zeros(source.n, bool) if own is None else np.ones(source.n, bool)
    for s in slot_arrays:
        need |= (s >= lo) & (s < hi)
    todo = order[need[order]]
    sums = None
    for i in tqdm(range(0, len(todo), chunk), desc=f"group sums {source.label}".strip(), disable=not progress, leave=False):
        idx = todo[i:i + chunk]
        P = source.fn(idx)
        if sums is None:
            sums = torch.zeros((hi - lo, P.shape[1]), dtype=torch.float64)
        if own is not None:
            own[idx] = source.decode(P)
        for s in slot_arrays:
            sl = torch.as_tensor(s[idx])
            m = (sl >= lo) & (sl < hi)
            if m.any():
                sums.index_add_(0, sl[m] - lo, P[m].double())
    return sums if sums is not None else torch.zeros((hi - lo, source.n_points), dtype=torch.float64)


def group_means(source: PosteriorSource, groups: np.ndarray, chunk: int = 2048, progress: bool = False) -> np.ndarray:
    """(R,) group ids 0..G-1 -> (G, N) mean posterior of every group, by streaming (all groups held: small G only)."""
    g = np.asarray(groups, np.int64)
    sums = stream_group_sums(source, [g], 0, int(g.max()) + 1, chunk, progress=progress)
    return (sums / torch.as_tensor(np.bincount(g), dtype=torch.float64)[:, None]).float().numpy()


def grouped_predictions(source: PosteriorSource, groupings: dict[str, np.ndarray], chunk: int = 2048,
                        budget_bytes: float = 1e9, progress: bool = True) -> dict[str, np.ndarray]:
    """Decode every grouping's group-mean posteriors -> {name: (R, 2) lat/lon assigned to each member}.

    Groups with one member keep the recording's own decoded point. The groups with >= 2 members of
    all groupings share float64 sum rows of N values; they are processed in passes holding at most
    ``budget_bytes`` of sums (later passes re-evaluate only the members of their groups).
    """
    slot_of, counts = _slots(groupings)
    own = np.full((source.n, 2), np.nan)
    out = {}
    S = len(counts)
    per_pass = max(1, int(budget_bytes // (8 * source.n_points)))
    arrays = list(slot_of.values())
    group_pts = np.full((S, 2), np.nan)
    lo = 0
    while True:
        hi = min(S, lo + per_pass)
        sums = stream_group_sums(source, arrays, lo, hi, chunk, own if lo == 0 else None, progress)
        for s in range(0, hi - lo, 4096):  # decode in blocks
            blk = sums[s:s + 4096]
            mean = blk / torch.as_tensor(counts[lo + s:lo + s + len(blk)], dtype=torch.float64)[:, None]
            group_pts[lo + s:lo + s + len(mean)] = source.decode(mean.float())
        del sums
        lo = hi
        if lo >= S:
            break
    for name, sl in slot_of.items():
        pred = own.copy()
        m = sl >= 0
        pred[m] = group_pts[sl[m]]
        out[name] = pred
    return out


# ---------------------------------------------------------------- tables
def grouping_stats(groupings: dict[str, np.ndarray]) -> pd.DataFrame:
    """{name: (R,) ids} -> one row per grouping: groups, groups with >= 2 recordings, recordings in them, largest group."""
    rows = []
    for name, g in groupings.items():
        c = np.bincount(np.asarray(g, np.int64))
        rows.append({"grouping": name, "groups": len(c), "groups >= 2": int((c >= 2).sum()),
                     "recordings in groups >= 2 (%)": 100 * c[c >= 2].sum() / c.sum(), "largest group": int(c.max())})
    return pd.DataFrame(rows)


def linked_groups(groupings: dict[str, np.ndarray]) -> np.ndarray:
    """{name: (R,) group ids} -> (R,) cluster ids: recordings linked by sharing a group in any grouping.

    The connected components of "same group somewhere": every group of every grouping lies inside one
    cluster (an H3 res-6 cell that straddles two res-5 cells joins them), so a bootstrap over these
    clusters resamples every group whole, and two groupings are compared on the same resampled clusters.
    """
    arrs = [np.asarray(g, np.int64) for g in groupings.values()]
    if not arrs:
        raise ValueError("linked_groups: no groupings")
    R = len(arrs[0])
    if any(len(g) != R for g in arrs):
        raise ValueError(f"linked_groups: groupings of different lengths {sorted({len(g) for g in arrs})}")
    # bipartite graph: recording r -- node R + offset + group id of r in each grouping
    offs = np.cumsum([0] + [int(g.max()) + 1 if len(g) else 0 for g in arrs])
    rows = np.tile(np.arange(R), len(arrs))
    cols = R + np.concatenate([g + o for g, o in zip(arrs, offs[:-1])])
    n = R + int(offs[-1])
    _, lab = connected_components(coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)), directed=False)
    return pd.factorize(lab[:R])[0]


def grouped_table(preds: dict[str, np.ndarray], true: np.ndarray, groupings: dict[str, np.ndarray],
                  subset: np.ndarray | None = None, ci: bool = False, seed: int = 0,
                  clusters: np.ndarray | None = None) -> pd.DataFrame:
    """{grouping: (R, 2) predictions}, (R, 2) true lat/lon -> one recording-level summary row per grouping.

    ``subset`` (R,) bool restricts the rows scored (groups are still formed from all recordings);
    ``ci`` adds 95 % bootstrap intervals (``metrics.summary_row_ci``) over ``clusters`` ((R,) ids; default
    :func:`linked_groups` of ``groupings``): the members of a group share its prediction, so they are
    resampled together, never as independent recordings.
    """
    if ci and clusters is None:
        clusters = linked_groups(groupings)
    stats = grouping_stats(groupings).set_index("grouping")
    rows = []
    for name, p in preds.items():
        d = haversine(p[:, 0], p[:, 1], true[:, 0], true[:, 1])
        cl = clusters
        if subset is not None:
            d, cl = d[subset], (None if cl is None else np.asarray(cl)[subset])
        row = summary_row_ci(name, d, seed=seed, clusters=cl) if ci else summary_row(name, d)
        rows.append({**row, "groups": int(stats.loc[name, "groups"]),
                     "recordings in groups >= 2 (%)": float(stats.loc[name, "recordings in groups >= 2 (%)"])})
    return pd.DataFrame(rows)


def species_lists(df: pd.DataFrame, groups: np.ndarray, min_species: int = 1) -> pd.DataFrame:
    """Recordings with a ``species`` column + group ids -> one row per group: species (sorted list),
    n_species, n_recordings, lat/lon of the group's first recording, its week (most common)."""
    d = df.assign(_g=groups)
    g = d.groupby("_g")
    out = pd.DataFrame({
        "species": g["species"].agg(lambda s: sorted(set(s))),
        "n_recordings": g.size(),
        "lat": g["lat"].first(), "lon": g["lon"].first(),
        "week": g["week"].agg(lambda w: int(w.mode().iloc[0])),
    })
    out["n_species"] = out["species"].map(len)
    return out[out.n_species >= min_species].reset_index(names="group")


SPECIES_BINS = ((1, 1), (2, 2), (3, 3), (4, 5), (6, 10), (11, 10**9))


def species_per_group(df: pd.DataFrame, groupings: dict[str, np.ndarray], min_recordings: int = 1) -> pd.DataFrame:
    """Distribution of unique species per group (Table 4 right): one row per grouping, % of groups per bin.

    Only groups with >= ``min_recordings`` recordings count (1: every group, as the paper's histogram).
    """
    sp = pd.factorize(df["species"])[0]
    rows = []
    for name, g in groupings.items():
        g = np.asarray(g, np.int64)
        n_rec = np.bincount(g)
        n_sp = np.bincount(pd.unique(pd.Series(g * (sp.max() + 1) + sp)) // (sp.max() + 1), minlength=len(n_rec))
        keep = n_rec >= min_recordings
        k = n_sp[keep]
        row = {"grouping": name, "groups": int(keep.sum()), "mean species": float(k.mean()) if len(k) else float("nan")}
        for a, b in SPECIES_BINS:
            label = f"{a}" if a == b else (f">{a - 1}" if b > 10**6 else f"{a}-{b}")
            row[f"{label} species (%)"] = 100 * float(((k >= a) & (k <= b)).mean()) if len(k) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def subset_by_cells(df: pd.DataFrame, n: int, res: int = 5, seed: int = 0) -> pd.DataFrame:
    """Whole H3 cells at ``res`` drawn at random until >= ``n`` recordings -> those rows (groups stay complete).

    Every cell is equally likely, so every recording has the same chance to be kept.
    """
    cells = pd.Series(h3_cells(df["lat"].to_numpy(), df["lon"].to_numpy(), res), index=df.index)
    uniq = cells.unique()
    perm = np.random.default_rng(seed).permutation(len(uniq))
    sizes = cells.value_counts().reindex(uniq[perm]).to_numpy()
    take = uniq[perm[:int(np.searchsorted(np.cumsum(sizes), n)) + 1]]
    return df[cells.isin(set(take)).to_numpy()]


# ---------------------------------------------------------------- figures and maps
def example_groups(groups: np.ndarray, err_own: np.ndarray, err_group: np.ndarray, k: int = 4,
                   min_members: int = 3) -> np.ndarray:
    """(R,) group ids, (R,) km errors alone / grouped -> up to ``k`` group ids with >= ``min_members`` members
    where grouping lowered the members' mean error most (km)."""
    g = np.asarray(groups, np.int64)
    n = np.bincount(g)
    gain = np.bincount(g, weights=np.asarray(err_own) - np.asarray(err_group)) / np.maximum(n, 1)
    ok = np.flatnonzero(n >= min_members)
    return ok[np.argsort(-gain[ok])][:k]


def error_vs_grouping_figure(ours: pd.DataFrame, title: str, paper_table: dict | None = None):
    """Median error and region accuracy per grouping as two panels of bars from 0; the paper's beside ours -> Figure.

    Groupings are categories, so bars (no lines joining them) and one y-axis per panel.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4), layout="constrained")
    x = np.arange(len(ours))
    for ax, col, pcol, label in ((axes[0], "median_km", 0, "median error (km)"),
                                 (axes[1], "region_%", 2, "within 200 km (region, %)")):
        w = 0.4 if paper_table else 0.8
        ax.bar(x - (w / 2 if paper_table else 0), ours[col], width=w, color="#4c72b0", label="ours")
        if paper_table:
            pv = [paper_table[m][pcol] if m in paper_table else np.nan for m in ours["method"]]
            ax.bar(x + w / 2, pv, width=w, color="#bbbbbb", label="paper (AG-CLIP, iNatSounds)")
        ax.set_xticks(x, ours["method"], rotation=25, ha="right")
        ax.set_ylim(bottom=0)
        ax.set(ylabel=label, title=label)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def example_groups_figure(true: np.ndarray, own: np.ndarray, grouped: np.ndarray, groups: np.ndarray,
                          chosen, title: str):
    """World map of example groups: members' true places, their own predictions and the group's prediction."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 6))
    land_background(ax)
    colors = plt.cm.tab10(np.arange(len(chosen)) % 10)
    for c, g in zip(colors, chosen):
        m = np.flatnonzero(groups == g)
        gp = grouped[m[0]]
        for i in m:
            ax.plot([own[i, 1], gp[1]], [own[i, 0], gp[0]], color=c, lw=0.6, alpha=0.5)
        ax.scatter(own[m, 1], own[m, 0], color=c, marker="x", s=25, label=f"group {g}: members' own predictions ({len(m)})")
        ax.scatter(true[m, 1], true[m, 0], color=c, marker="o", edgecolor="k", s=40)
        ax.scatter([gp[1]], [gp[0]], color=c, marker="*", edgecolor="k", s=220)
    ax.set(xlim=(-180, 180), ylim=(-60, 80), xlabel="longitude", ylabel="latitude")
    ax.set_title(title + "\n(o true place, x each recording alone, * group prediction)")
    ax.legend(fontsize=7, loc="lower left")
    return fig


def group_map(points: np.ndarray, post: np.ndarray, true: np.ndarray, own: np.ndarray, group_pred, title: str):
    """folium map of one group: its mean posterior, members' true places and own predictions, the group's prediction."""
    import folium

    m = folium_posterior(points, post, title, true=true[0], pred=group_pred)
    layer = folium.FeatureGroup(name="members")
    for (la, lo), (pa, po) in zip(true, own):
        folium.CircleMarker((float(la), float(lo)), radius=5, color="green", tooltip="member: true place").add_to(layer)
        folium.CircleMarker((float(pa), float(po)), radius=4, color="blue", tooltip="member: own prediction").add_to(layer)
    layer.add_to(m)
    folium.LayerControl().add_to(m)
    return m
