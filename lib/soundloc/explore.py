"""Explorers for a class: species x week -> range; place x week -> expected species; a recording -> its posterior.

Each explorer has a *view* function (plain data + a matplotlib Figure, usable and testable without widgets) and a
widget builder returning an :class:`Explorer`. The builder computes its default view once, so a headless papermill
run has the same tables and figures to save as a live session; the controls re-run ``Explorer.update``.

Widget outputs are *set* (``Output.outputs`` / ``append_display_data``), never captured with ``with out:``:
capturing routes messages through the kernel client and hung nbclient in a headless run.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import paths
from .detect import NON_SPECIES, get_detector
from .sphere import cell_areas, credible_set, haversine
from .locator import LocateOptions, locate, plot_posterior, range_geolocator
from .maps import land_background


@dataclass(frozen=True)
class ExploreConfig:
    """Settings shared by the explorers."""

    gallery: str = "land2"  # candidate points of range maps and posteriors ("land<step>" / "uniform<step>")
    device: str = "cpu"  # range-model device (the explorers' work is small)
    top: int = 10  # species listed per view
    min_conf: float = 0.1  # BirdNET score below which a detection is not used (birdnetlib's default)
    level: float = 0.9  # credible level of the recording explorer's region
    min_occurrence: float = 0.01  # range probability from which a place counts as inside a species' range

    @property
    def step(self) -> float:
        """Gallery spacing in degrees (the number in its name)."""
        return float(self.gallery.lstrip("landuniform"))


def _model(cfg: ExploreConfig):
    """The shared RangeGeolocator of ``cfg.gallery`` (its ``.model`` is BirdNET's range model)."""
    return range_geolocator(cfg.gallery, "lists", cfg.device)


def _species_mask(model) -> np.ndarray:
    """(S,) bool: labels that are species (BirdNET also lists sounds such as 'Engine' or 'Dog')."""
    return ~np.isin(np.asarray(model.species, object), list(NON_SPECIES))


def find_species(model, name: str) -> int:
    """Scientific or common name (any case) -> model index; ValueError naming close matches otherwise."""
    idx, _ = model.match([name])
    if len(idx):
        return int(idx[0])
    common = {c.lower(): i for i, c in enumerate(model.common_names)}
    if name.strip().lower() in common:
        return common[name.strip().lower()]
    near = [c for c in model.common_names if name.strip().lower() in c.lower()][:5]
    raise ValueError(f"unknown species {name!r}" + (f"; did you mean {near}?" if near else ""))


def _week(week) -> int | None:
    """0 / None -> None (year-round), 1-48 -> itself."""
    return None if week in (None, 0) else int(week)


def _png(fig):
    """matplotlib Figure -> IPython Image (PNG), displayable with or without a kernel's inline backend."""
    from IPython.display import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return Image(data=buf.getvalue(), format="png")


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h))  # not pyplot: no global figure list, nothing shown twice


# ---------------------------------------------------------------- (a) species x week
@dataclass
class SpeciesView:
    """A species' range at a week and the species expected where it occurs."""

    species: str  # scientific name
    common: str
    week: int | None  # 1-48, None = year-round
    points: np.ndarray  # (N, 2) gallery lat/lon
    prob: np.ndarray  # (N,) its range probability
    companions: pd.DataFrame  # rank, scientific_name, common_name, expected_prob
    figure: object = None


def species_view(name: str, week=None, cfg: ExploreConfig = ExploreConfig()) -> SpeciesView:
    """Species name + week -> its (N,) range over the gallery and the ``cfg.top`` companions: the species with the
    highest range probability averaged over its range (points with p >= cfg.min_occurrence), weighted by its own p:
    sum_i p(i) q(i) / sum_i p(i)."""
    g = _model(cfg)
    k, week = find_species(g.model, name), _week(week)
    lat, lon = g.points[:, 0], g.points[:, 1]
    p = g.model.prob(lat, lon, week, [k])[:, 0].astype(np.float64)  # (N,)
    occ = p >= cfg.min_occurrence
    if not occ.any():
        raise ValueError(f"{name!r} has no place with range probability >= {cfg.min_occurrence:g} in "
                         f"{'any week' if week is None else f'week {week}'} on gallery {cfg.gallery}")
    Q = g.model.prob(lat[occ], lon[occ], week)  # (M, S) every species, only inside this one's range
    expect = (p[occ] @ Q) / p[occ].sum()  # (S,)
    ok = _species_mask(g.model)
    ok[k] = False
    order = np.flatnonzero(ok)[np.argsort(-expect[ok], kind="stable")[: cfg.top]]
    comp = pd.DataFrame({"rank": np.arange(1, len(order) + 1), "scientific_name": np.asarray(g.model.species)[order],
                         "common_name": np.asarray(g.model.common_names)[order], "expected_prob": expect[order]})
    v = SpeciesView(g.model.species[k], g.model.common_names[k], week, g.points, p, comp)
    v.figure = plot_range(v)
    return v


def plot_range(v: SpeciesView):
    """SpeciesView -> Figure: range probability on the gallery points (squares) over land."""
    fig = _figure(11, 5)
    ax = fig.subplots()
    land_background(ax)
    keep = v.prob >= 0.01  # leave the near-zero rest of the world blank
    sc = ax.scatter(v.points[keep, 1], v.points[keep, 0], c=v.prob[keep], s=7, marker="s", cmap="viridis",
                    vmin=0, vmax=1, linewidths=0, zorder=1)
    fig.colorbar(sc, ax=ax, shrink=0.7, label="range probability (BirdNET)")
    when = "year-round" if v.week is None else f"week {v.week}"
    ax.set_title(f"{v.common} ({v.species}), {when}: BirdNET range on a {v.points.shape[0]:,}-point land grid")
    return fig


# ---------------------------------------------------------------- (b) place x week
def place_view(lat: float, lon: float, week=None, cfg: ExploreConfig = ExploreConfig()) -> pd.DataFrame:
    """A place + week -> the ``cfg.top`` species most expected there: rank, scientific_name, common_name, prob."""
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"place ({lat}, {lon}) is not a lat/lon in degrees")
    m = _model(cfg).model
    p = m.prob([lat], [lon], _week(week))[0].astype(np.float64)
    p[~_species_mask(m)] = -1.0
    order = np.argsort(-p, kind="stable")[: cfg.top]
    return pd.DataFrame({"rank": np.arange(1, len(order) + 1), "scientific_name": np.asarray(m.species)[order],
                         "common_name": np.asarray(m.common_names)[order], "prob": p[order]})


# ---------------------------------------------------------------- (c) a recording
@dataclass(frozen=True)
class Recording:
    """A real recording of the data mirror with its metadata."""

    name: str  # label shown in the explorer
    path: Path
    date: str  # YYYY-MM-DD
    lat: float  # where it was made, degrees
    lon: float


def real_recordings() -> list[Recording]:
    """The mirror's real recordings: the Seattle soundscape and the Jura clips of 22 May 2019 (06:00-08:00)."""
    audio = paths.real_audio_dir()
    out = [Recording("Seattle soundscape, XC563936", audio / "XC563936_soundscape.mp3", "2020-03-15", 47.6766, -122.294)]
    for p in sorted((audio / "jura_2019-05-22").glob("*_2019052[2]_0[67]*.wav")):
        hhmm = p.stem.split("_")[-1][:4]
        out.append(Recording(f"Jura forest, 2019-05-22 {hhmm[:2]}:{hhmm[2:]}", p, "2019-05-22", 46.6, 6.1))
    return out


@dataclass
class RecordingView:
    """A recording's species-range posterior, its credible region and the species behind it."""

    recording: Recording
    location: object  # soundloc.locator.Location
    region: np.ndarray  # (N,) bool, the highest-density credible region
    level: float
    summary: pd.DataFrame  # one row: week, best place, error, region area, true place inside
    species: pd.DataFrame  # detected species, score, range probability at the best and the true place
    figure: object = None


def recording_view(rec: Recording, level: float | None = None, cfg: ExploreConfig = ExploreConfig()) -> RecordingView:
    """Recording -> its posterior on ``cfg.gallery``, the ``level`` credible region (cell areas in km^2) and its species."""
    level = cfg.level if level is None else float(level)
    opts = LocateOptions(gallery=cfg.gallery, min_conf=cfg.min_conf, device=cfg.device)
    loc = locate([str(rec.path)], date=rec.date, top_k=5, opts=opts)[0]
    areas = cell_areas(loc.points, cfg.step)
    # loc.posterior is each cell's mass (density x area); credible_set wants the log density
    region = credible_set(np.log(np.maximum(loc.posterior / areas, 1e-300)), areas, level)
    near = int(np.argmin(haversine(loc.points[:, 0], loc.points[:, 1], rec.lat, rec.lon)))
    summary = pd.DataFrame([{"recording": rec.name, "week": loc.week, "best lat": loc.lat, "best lon": loc.lon,
                             "error_km": loc.error_km(rec.lat, rec.lon), "level": level,
                             "region_km2": float(areas[region].sum()), "region_points": int(region.sum()),
                             "true place in region": bool(region[near])}])
    sp = (loc.species if loc.species is not None else pd.DataFrame(columns=["scientific_name", "common_name",
                                                                           "max_score"])).head(cfg.top).copy()
    m = _model(cfg).model
    idx, unknown = m.match(sp.scientific_name.tolist())
    known = ~sp.scientific_name.isin(unknown).to_numpy()
    for col, (la, lo) in (("range_prob_best", (loc.lat, loc.lon)), ("range_prob_true", (rec.lat, rec.lon))):
        sp[col] = np.nan
        if len(idx):
            sp.loc[known, col] = m.prob([la], [lo], loc.week, idx)[0]
    sp = sp[["scientific_name", "common_name", "max_score", "range_prob_best", "range_prob_true"]]
    v = RecordingView(rec, loc, region, level, summary, sp.reset_index(drop=True))
    v.figure = plot_region(v)
    return v


def plot_region(v: RecordingView):
    """RecordingView -> Figure: the world posterior and a zoom on its credible region (outlined points)."""
    loc, rec = v.location, v.recording
    fig = _figure(16, 5.2)
    axes = fig.subplots(1, 2)
    s = v.summary.iloc[0]
    for ax, zoom in zip(axes, (False, True)):
        plot_posterior(loc.points, loc.posterior, "", (rec.lat, rec.lon), (loc.lat, loc.lon), ax=ax)
        r = loc.points[v.region]
        ax.scatter(r[:, 1], r[:, 0], s=14, marker="s", facecolors="none", edgecolors="deepskyblue", linewidths=0.6,
                   zorder=2, label=f"{v.level:.0%} credible region")
        if zoom:
            pad = 5
            ax.set_xlim(max(-180, min(r[:, 1].min(), rec.lon) - pad), min(180, max(r[:, 1].max(), rec.lon) + pad))
            ax.set_ylim(max(-90, min(r[:, 0].min(), rec.lat) - pad), min(90, max(r[:, 0].max(), rec.lat) + pad))
        ax.legend(loc="lower left", fontsize=8)
    axes[0].set_title(f"{rec.name} (real)\nspecies-range posterior, week {loc.week}")
    axes[1].set_title(f"zoom: {v.level:.0%} region {s.region_km2 / 1e6:,.2f} M km²\nerror {s.error_km:,.0f} km, "
                      f"true place {'inside' if s['true place in region'] else 'outside'}")
    return fig


# ---------------------------------------------------------------- widgets
@dataclass
class Explorer:
    """A widget with its controls, the callback they trigger and the latest view it computed."""

    widget: object  # ipywidgets.VBox to display
    controls: dict  # name -> control widget
    update: Callable  # update(**control values) -> view; re-renders the output
    view: object = None  # latest view (SpeciesView, DataFrame or RecordingView)
    errors: list = field(default_factory=list)  # messages of failed updates (bad species name, ...)
    parts: dict = field(default_factory=dict)  # other widgets (the leaflet map) and handlers (its click)
    paused: bool = False  # while True, control changes do not update (several set at once)


def _show(out, *objs) -> None:
    """Replace an Output widget's content by ``objs`` (set, not captured: see the module docstring)."""
    out.outputs = ()
    for o in objs:
        out.append_display_data(o)


def _wire(ex: Explorer, out, render: Callable, compute: Callable) -> Explorer:
    """Make ``ex.update`` compute a view from control values, render it into ``out``, and observe the controls."""
    from IPython.display import Markdown

    def update(**kw):
        vals = {k: c.value for k, c in ex.controls.items()} | kw
        try:
            ex.view = compute(**vals)
        except ValueError as e:  # a bad name or place: say so in the widget, keep the last view
            ex.errors.append(str(e))
            _show(out, Markdown(f"**{e}**"))
            return ex.view
        _show(out, *render(ex.view))
        return ex.view

    ex.update = update
    for c in ex.controls.values():
        c.observe(lambda change: None if ex.paused else update(), names="value")
    update()
    return ex


def species_explorer(name: str = "Turdus merula", week: int = 20, cfg: ExploreConfig = ExploreConfig()) -> Explorer:
    """Species (scientific or common name) + week slider (0 = year-round) -> range map and companions table."""
    import ipywidgets as W

    ctl = {"name": W.Text(value=name, description="species", continuous_update=False),
           "week": W.IntSlider(value=week, min=0, max=48, description="week", continuous_update=False)}
    out = W.Output()
    ex = Explorer(W.VBox([W.HBox(list(ctl.values())), out]), ctl, None)
    return _wire(ex, out, lambda v: (_png(v.figure), v.companions), lambda name, week: species_view(name, week, cfg))


def place_explorer(lat: float = 46.6, lon: float = 6.1, week: int = 20, cfg: ExploreConfig = ExploreConfig(),
                   leaflet: bool = True) -> Explorer:
    """A place (click the map, or type lat/lon) + week -> the species most expected there (BirdNET ranges)."""
    import ipywidgets as W

    ctl = {"lat": W.BoundedFloatText(value=lat, min=-90, max=90, step=0.1, description="lat"),
           "lon": W.BoundedFloatText(value=lon, min=-180, max=180, step=0.1, description="lon"),
           "week": W.IntSlider(value=week, min=0, max=48, description="week", continuous_update=False)}
    out = W.Output()
    rows = [W.HBox(list(ctl.values())), out]
    ex = Explorer(W.VBox(rows), ctl, None)
    if leaflet:
        import ipyleaflet as L

        m = L.Map(center=(lat, lon), zoom=3, scroll_wheel_zoom=True, layout=W.Layout(height="360px"))
        marker = L.Marker(location=(lat, lon), draggable=False)
        m.add(marker)

        def on_click(**kw):
            if kw.get("type") == "click":
                la, lo = kw["coordinates"]
                lo = (lo + 180) % 360 - 180  # the map wraps: bring longitudes back to [-180, 180)
                marker.location = (la, lo)
                ex.paused = True  # one update for the pair, not one per field
                ctl["lat"].value, ctl["lon"].value = round(la, 3), round(lo, 3)
                ex.paused = False
                ex.update()

        m.on_interaction(on_click)
        ex.parts.update(map=m, marker=marker, on_click=on_click)
        ex.widget.children = (m, *rows)
    return _wire(ex, out, lambda v: (v,), lambda lat, lon, week: place_view(lat, lon, week, cfg))


def recording_explorer(recordings: list[Recording] | None = None, level: float = 0.9,
                       cfg: ExploreConfig = ExploreConfig(), seconds: float = 15.0) -> Explorer:
    """A real recording (dropdown) + credible level -> player, spectrogram with species, posterior and region."""
    import ipywidgets as W

    from .listen import excerpt, player, plot_listen

    recs = {r.name: r for r in (recordings or real_recordings())}
    ctl = {"name": W.Dropdown(options=list(recs), description="recording", layout=W.Layout(width="460px")),
           "level": W.FloatSlider(value=level, min=0.5, max=0.99, step=0.01, description="level",
                                  continuous_update=False)}
    out = W.Output()
    ex = Explorer(W.VBox([W.HBox(list(ctl.values())), out]), ctl, None)

    def render(v: RecordingView):
        r = v.recording
        det = get_detector().detect(r.path).table(cfg.min_conf)
        spec = plot_listen(excerpt(r.path, 0, seconds), f"{r.name} (real), first {seconds:g} s", det, fig=_figure(13, 5))
        return player(r.path, 0, seconds), _png(spec), _png(v.figure), v.summary, v.species

    return _wire(ex, out, render, lambda name, level: recording_view(recs[name], level, cfg))


__all__ = ["ExploreConfig", "species_view", "place_view", "recording_view", "real_recordings", "species_explorer",
           "place_explorer", "recording_explorer", "find_species"]


# ---------------------------------------------------------------- static pages (no kernel, no widget JS)
def _control_html(m: dict) -> str:
    """A control's saved widget state -> a disabled HTML input showing its value."""
    s, name = m["state"], m["model_name"]
    label = f'<label style="margin-right:14px;font:13px sans-serif">{s.get("description", "")} '
    if name in ("IntSliderModel", "FloatSliderModel"):
        return (label + f'<input type="range" min="{s["min"]}" max="{s["max"]}" step="{s.get("step", 1)}" '
                f'value="{s["value"]}" disabled> {s["value"]}</label>')
    if name == "DropdownModel":
        labels = s.get("_options_labels", [])
        chosen = labels[s["index"]] if labels and s.get("index") is not None else ""
        return label + f"<select disabled><option>{chosen}</option></select></label>"
    return label + f'<input value="{s.get("value", "")}" disabled size="14"></label>'


def static_notebook(executed: str | Path, widgets_only: bool = False):
    """Executed .ipynb (with saved widget state) -> nbformat notebook whose widget outputs are replaced by static HTML:
    controls as disabled inputs, each Output widget's saved outputs inline, a map as a note. For a screenshot without
    the widget JavaScript (e.g. ``jupyter nbconvert --to html`` then headless Chromium). ``widgets_only``: keep only
    the cells that displayed a widget."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})

    def render(mid: str) -> list:
        m = state.get(mid.replace("IPY_MODEL_", ""))
        if m is None:
            return []
        name = m["model_name"]
        if name in ("VBoxModel", "HBoxModel"):
            parts = [o for c in m["state"].get("children", []) for o in render(c)]
            if name == "HBoxModel" and all(o.output_type == "display_data" and list(o.data) == ["text/html"] for o in parts):
                return [nbformat.v4.new_output("display_data", {"text/html": "".join(o.data["text/html"] for o in parts)})]
            return parts
        if name == "OutputModel":
            return [nbformat.from_dict(o) for o in m["state"].get("outputs", [])]
        if name == "LeafletMapModel":
            return [nbformat.v4.new_output("display_data", {"text/html": "<p><i>(map: click it in a live session)</i></p>"})]
        if name.endswith(("SliderModel", "TextModel", "DropdownModel")):
            return [nbformat.v4.new_output("display_data", {"text/html": _control_html(m)})]
        return []

    def has_widget(c) -> bool:
        return any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in c.get("outputs", []))

    if widgets_only:
        nb.cells = [c for c in nb.cells if c.cell_type == "code" and has_widget(c)]
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outs = []
        for o in cell.get("outputs", []):
            view = o.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            outs.extend(render(view["model_id"]) if view else [o])
        cell.outputs = outs
    nb.metadata.pop("widgets", None)
    return nb
