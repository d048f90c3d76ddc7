"""Locate recordings: audio file(s) [+ date] -> posterior over a gallery, best point, top-k, species.

Methods live in a small registry so that other modules can plug theirs in without this one
importing them::

    from soundloc.locator import register_method
    register_method("agclip", my_fn, "AG-CLIP retrieval over the gallery")

A method is ``fn(paths: list[str], weeks: list[int | None], opts: LocateOptions) -> list[MethodOutput]``
(one per file), or the ``"module:function"`` path of one, imported when the method is first asked for.
``ranges`` (BirdNET detections -> species-range geolocation) is registered here, and AG-CLIP's methods
(``LAZY_METHODS``) by path, so listing the methods (``soundloc --help``) does not import torch models.
Modules exposing the ``soundloc.locate_methods`` entry point group are imported on first use of the
registry (an import failure is reported, not fatal).
"""
from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import calibration as _calibration
from . import regions as _regions
from . import taxonomy
from .data.validate import week_from_date  # noqa: F401 (callers import it from here too)
from .evidence import kl_nats, robust_evidence
from .range_model import normalize_name
from .sphere import cell_areas, haversine

# Detection false-positive rate of the ranges method (soundloc.evidence): the chance that a detection is of a species
# not at the place. Chapter 12 sweeps it on iNatSounds test lists with one species injected from a list >= 5,000 km
# away (SMALL run, land2): the two spatial folds chose 0.1 and 0.0, with median errors within 10 % of each other from
# 0 to 0.2 (the presence floor already bounds a veto); 0.05 lies between and flags 15-17 % of the injected species.
FP_RATE = 0.05
WEAK_KL_NATS = 0.5  # information gain (KL posterior || prior) below which the evidence is called weak
SPURIOUS_P = 0.5  # a detection more likely spurious than this is reported as disagreeing with the others
# Temperatures of the ranges posterior (log density / T) so that its credible regions hold their nominal share, chosen in
# chapter 12 (SMALL run, land2) on iNatSounds only, never on XCDC. One covered species: T1 chosen on all 600 iNatSounds
# test recordings of the run. A list of k species with information gain g nats gets T(k, g) = T1 + b log k + c
# max(0, -log(g / k)) (calibration.list_temperature): multiplying ranges of species that are not independent evidence is
# more overconfident the longer the list and the less each species tells; (b, c) were chosen on all 600 iNatSounds lists
# (five spatial folds, each reported with the values chosen on the other four: +3.5 / -1.5 points at p = 0.5 / 0.9
# pooled; one species +2.2 / -2.5) and reported on XCDC lists, never used to choose them: -0.5 / -3.5 points (b alone,
# c = 0, left them at -7.8 / -5.7).
TEMPERATURE_ONE = 0.9
TEMPERATURE_SLOPE = 0.125
TEMPERATURE_INFO_SLOPE = 1.0


def list_temperature(k: int, gain: float | None = None) -> float:
    """Number of covered species k [, information gain KL(posterior || prior) nats] -> the temperature ``soundloc
    locate`` tempers its ranges posterior by (without ``gain`` the redundancy term is left out)."""
    return float(_calibration.list_temperature(k, TEMPERATURE_ONE, TEMPERATURE_SLOPE, gain, TEMPERATURE_INFO_SLOPE))


def tempered(posterior: np.ndarray, temperature: float, points: np.ndarray,
             areas: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(N,) posterior on gallery (N, 2) -> (N,) normalised posterior with its log density divided by ``temperature``
    (``regions.temper``), and the temperature applied: 1.0 when it is 1 or the gallery is not a lat/lon grid (no
    cell areas), the posterior then left as is."""
    post = np.asarray(posterior, np.float64)
    post = post / post.sum()
    if temperature == 1.0:
        return post, 1.0
    try:
        return _regions.temper(post[None], temperature, _cell_areas(points) if areas is None else areas)[0], temperature
    except ValueError:
        return post, 1.0


def calibrated_posterior(o: "MethodOutput") -> np.ndarray:
    """A method's output -> (N,) its posterior tempered by its calibration temperature, as ``describe`` shows it."""
    return tempered(o.posterior, o.temperature, o.points, o.areas)[0]


# Methods defined above this layer (AG-CLIP, in the experiments' rooms): registered by path, imported on first use.
LAZY_METHODS: dict[str, tuple[str, str]] = {
    "agclip": ("soundloc.agclip.locate_methods:locate_agclip",
               "AG-CLIP retrieval (needs --model) x GeoCLIP photo-density prior"),
    "fused": ("soundloc.agclip.locate_methods:locate_fused",
              "AG-CLIP (needs --model) x BirdNET detections -> species ranges"),
}


@dataclass(frozen=True)
class LocateOptions:
    """Options shared by all methods (methods ignore what they do not use)."""

    gallery: str = "land1"  # candidate points (soundloc.range_geolocation.gallery names)
    preset: str = "lists"  # RangeLocConfig preset for the ranges method
    min_conf: float = 0.1  # BirdNET detections below this max score are not used (birdnetlib's default)
    overlap: float = 0.0  # BirdNET window overlap, s
    sensitivity: float = 1.0  # BirdNET sensitivity (birdnetlib semantics)
    device: str = "cpu"
    progress: bool = False  # progress bars (stderr) over the files of one call
    model: str | None = None  # AG-CLIP checkpoint (model.pt) for the agclip and fused methods
    prior_weight: float = 1.0  # agclip: weight of the GeoCLIP photo-density location prior (0 = none)
    fusion_weight: float = 1.0  # fused: exponent w of the range posterior in p_agclip * p_ranges^w
    fp_rate: float = FP_RATE  # ranges: chance that a detection is spurious (0 = every detection vetoes where it is absent)
    # point estimate, one of soundloc.regions.DECODERS: both folds of iNatSounds lists chose it in chapter 12 (SMALL, land2);
    # on land1 the folds chose argmax and min_distance, the three decoders' medians within 10 % of each other
    decoder: str = "mass_within"
    radius_km: float = 200.0  # radius of the mass_within decoder
    levels: tuple = _regions.LEVELS  # credible levels whose regions are reported
    calibrate: bool = True  # ranges: temper the posterior (list_temperature: by its number of species) before regions and points


@dataclass
class MethodOutput:
    """What a method returns for one recording: a posterior over ``points`` and what it heard."""

    points: np.ndarray  # (N, 2) gallery lat/lon, degrees
    posterior: np.ndarray  # (N,) probability mass of each point, summing to 1
    lat: float  # decoded best location, degrees
    lon: float
    species: pd.DataFrame | None = None  # detected species (scientific_name, common_name, max_score, ...)
    notes: list = field(default_factory=list)
    areas: np.ndarray | None = None  # (N,) cell areas km^2 of a grid gallery (density = posterior / areas); None: equal weights
    prior: np.ndarray | None = None  # (N,) the posterior the method gives with no evidence (for the information gain)
    warnings: list = field(default_factory=list)  # {"code", "message"} dicts: weak or conflicting evidence
    evidence: bool = True  # False when nothing was heard that the method can use: the posterior is its prior
    p_spurious: dict = field(default_factory=dict)  # species -> posterior probability that its detection is spurious
    temperature: float = 1.0  # calibration: :func:`describe` divides the log density by it


def warning(code: str, message: str) -> dict:
    """A warning entry: ``code`` one of no_species, no_known_species, weak_evidence, conflicting_species, no_region."""
    return {"code": code, "message": message}


@dataclass
class Location:
    """One file's answer: best location, top-k, detected species, posterior on the gallery, credible regions, warnings.

    ``lat``/``lon`` are the decoded point even without evidence (for error_km); :meth:`to_dict` and the CLI
    give no point then, only the prior's region and a warning.
    """

    path: str
    method: str
    week: int | None
    lat: float
    lon: float
    topk: pd.DataFrame  # rank, lat, lon, prob
    species: pd.DataFrame | None
    points: np.ndarray  # (N, 2)
    posterior: np.ndarray  # (N,) probability mass of each point
    notes: list = field(default_factory=list)
    decoder: str = "argmax"  # how (lat, lon) was read off the posterior
    regions: list = field(default_factory=list)  # soundloc.regions.Region per credible level
    expected_error_km: float = float("nan")  # expected distance from (lat, lon) to the truth under the posterior
    info_gain_nats: float = float("nan")  # KL(posterior || the method's no-evidence posterior)
    warnings: list = field(default_factory=list)  # {"code", "message"} dicts
    evidence: bool = True  # False: nothing usable was heard, the posterior is the prior
    temperature: float = 1.0  # the posterior is the method's, log density divided by this (calibration)
    areas: np.ndarray | None = None  # (N,) cell areas km^2 of a grid gallery; None: equal weights

    def region(self, level: float):
        """The Region at ``level`` (KeyError naming the levels computed)."""
        for r in self.regions:
            if abs(r.level - level) < 1e-9:
                return r
        raise KeyError(f"no {level:g} credible region; computed: {[r.level for r in self.regions]}")

    def region_geometry(self, level: float):
        """shapely MultiPolygon (lon/lat) of the ``level`` credible region."""
        return _regions.cells_geometry(self.points, self.region(level).cells, _regions.grid_step(self.points))

    def region_feature(self, level: float, rid: str | None = None) -> dict:
        """GeoJSON Feature of the ``level`` region: properties id, level, area_km2 (+ decoder, lat, lon, warnings)."""
        r = self.region(level)
        return _regions.region_feature(rid or self.path, self.region_geometry(level), r.level, r.area_km2,
                                       decoder=self.decoder, lat=self.lat if self.evidence else None,
                                       lon=self.lon if self.evidence else None,
                                       warnings=[w["code"] for w in self.warnings])

    def error_km(self, lat: float, lon: float) -> float:
        """Great-circle distance (km) from the best location to (lat, lon)."""
        return float(haversine(self.lat, self.lon, lat, lon))

    def to_dict(self, n_species: int = 20) -> dict:
        """JSON-ready summary (no posterior)."""
        sp = [] if self.species is None else json.loads(self.species.head(n_species).to_json(orient="records"))
        point = self.evidence  # no bare point from the prior alone
        return {"path": self.path, "method": self.method, "week": self.week,
                "lat": self.lat if point else None, "lon": self.lon if point else None, "decoder": self.decoder,
                "temperature": self.temperature, "expected_error_km": _num(self.expected_error_km),
                "info_gain_nats": _num(self.info_gain_nats),
                "regions": [{"level": r.level, "area_km2": r.area_km2, "mass": r.mass, "radius_km": r.radius_km}
                            for r in self.regions],
                "warnings": list(self.warnings), "top_k": self.topk.to_dict("records"), "species": sp,
                "notes": list(self.notes)}


def _num(x: float):
    """float -> JSON number, NaN -> null."""
    return None if x is None or not np.isfinite(x) else float(x)


# ---------------------------------------------------------------- registry
@dataclass
class _Method:
    fn: Callable | str  # the method, or its "module:function" path until first use
    description: str

    def resolve(self) -> Callable:
        if isinstance(self.fn, str):
            mod, _, attr = self.fn.partition(":")
            self.fn = getattr(importlib.import_module(mod), attr)
        return self.fn


_METHODS: dict[str, _Method] = {}
_plugins_loaded = False
PLUGIN_ERRORS: list[str] = []


def register_method(name: str, fn: Callable | str, description: str = "") -> None:
    """Register ``fn(paths, weeks, opts) -> list[MethodOutput]`` (or its ``"module:function"`` path, imported on
    first use) as locate method ``name``."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"method name {name!r} must be alphanumeric (with - or _)")
    if isinstance(fn, str) and not re.fullmatch(r"[\w.]+:\w+", fn):
        raise ValueError(f"method {name!r}: {fn!r} is not a 'module:function' path")
    _METHODS[name] = _Method(fn, description)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for name, (path, description) in LAZY_METHODS.items():
        _METHODS.setdefault(name, _Method(path, description))
    mods = [ep.value.split(":")[0] for ep in entry_points(group="soundloc.locate_methods")]
    for m in mods:
        try:
            importlib.import_module(m)
        except Exception as e:  # noqa: BLE001 - a broken plugin must not break the CLI
            PLUGIN_ERRORS.append(f"locate plugin {m!r} failed to import: {type(e).__name__}: {e}")


def available_methods() -> dict[str, str]:
    """Registered method names -> descriptions."""
    _load_plugins()
    return {k: v.description for k, v in sorted(_METHODS.items())}


def get_method(name: str) -> Callable:
    """Registered method by name; ValueError naming the registered ones otherwise."""
    _load_plugins()
    if name not in _METHODS:
        raise ValueError(f"unknown locate method {name!r}; registered: {', '.join(sorted(_METHODS)) or 'none'}")
    return _METHODS[name].resolve()


# ---------------------------------------------------------------- dates
# ---------------------------------------------------------------- the ranges method
_GEOLOCATORS: dict = {}


def range_geolocator(gallery_name: str = "land1", preset: str = "lists", device: str = "cpu"):
    """A shared RangeGeolocator (BirdNET meta model, ``PRESETS[preset]``, gallery) per process."""
    # torch-backed modules, imported on first use: every `soundloc` command imports this module (for its methods)
    from .devices import resolve_device
    from .range_geolocation import PRESETS, RangeGeolocator, gallery
    from .ranges import load_range_model

    device = str(resolve_device(device))
    key = (gallery_name, preset, device)
    if key not in _GEOLOCATORS:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; use one of {sorted(PRESETS)}")
        model = load_range_model("birdnet", "torch", device=device)
        _GEOLOCATORS[key] = RangeGeolocator(model, gallery(gallery_name), PRESETS[preset], gallery_name=gallery_name,
                                            device=device)
    return _GEOLOCATORS[key]


def locate_species(species: Sequence[Sequence[str]], weights: Sequence[Sequence[float]], weeks: Sequence,
                   opts: LocateOptions = LocateOptions()) -> list[MethodOutput]:
    """R weighted species lists + weeks -> R MethodOutputs from species-range geolocation.

    Each detection is spurious with probability ``opts.fp_rate`` (:mod:`soundloc.evidence`); species whose
    posterior probability of being spurious exceeds ``SPURIOUS_P`` get a ``conflicting_species`` warning.
    """
    loc = range_geolocator(opts.gallery, opts.preset, opts.device)
    out = []
    for names, ws, week in tqdm(list(zip(species, weights, weeks)), desc="species ranges", disable=not opts.progress,
                                leave=False):
        ev = robust_evidence(loc, list(names), list(map(float, ws)), week, opts.fp_rate)
        o = MethodOutput(loc.points, ev.posterior, *_regions.decode(loc.points, ev.posterior, areas=loc.areas), None,
                         [], loc.areas, ev.prior, [], evidence=len(ev.species) > 0)
        o.p_spurious = dict(zip(ev.species, ev.p_spurious.tolist()))
        if opts.calibrate:
            o.temperature = list_temperature(len(ev.species), ev.info_gain_nats)
        if not ev.species and names:
            o.warnings.append(warning("no_known_species", f"none of the {len(names)} species is covered by the range "
                                      "model: the posterior is the location prior"))
        bad = [n for n, q in o.p_spurious.items() if q > SPURIOUS_P]
        if bad:
            o.warnings.append(warning("conflicting_species", f"{', '.join(bad)} disagree(s) with the other species: "
                                      f"more likely a false detection (p > {SPURIOUS_P:g}) than present where they agree"))
        out.append(o)
    return out


def _ranges(paths: list[str], weeks: list, opts: LocateOptions) -> list[MethodOutput]:
    """BirdNET detections (max score per species as its weight) -> species-range geolocation."""
    from .detect import get_detector  # torch (BirdNET's labels and model): on first use, as above

    det = get_detector()
    sums = [det.detect(p, opts.overlap, opts.sensitivity).summary(opts.min_conf)
            for p in tqdm(paths, desc="BirdNET", unit="file", disable=not opts.progress, leave=False)]
    outs = locate_species([s.scientific_name.tolist() for s in sums], [s.max_score.tolist() for s in sums], weeks, opts)
    for o, s in zip(outs, sums):
        o.species = s.assign(p_spurious=s.scientific_name.map(o.p_spurious))
        if s.empty:
            o.evidence = False
            o.warnings.append(warning("no_species", f"no species detected with score >= {opts.min_conf:g}: "
                                      "no location, the region shown is the location prior's"))
    return outs


register_method("ranges", _ranges, "BirdNET detections (scores as weights) -> BirdNET species-range geolocation")


# ---------------------------------------------------------------- API
def topk_table(points: np.ndarray, posterior: np.ndarray, k: int, areas: np.ndarray | None = None) -> pd.DataFrame:
    """(N, 2) points, (N,) posterior mass [, (N,) cell areas km^2] -> the k densest points (the most probable
    ones when the points carry equal weights): rank, lat, lon, prob (their mass) [, per_km2 (mass / area)]."""
    k = max(0, min(int(k), len(posterior)))
    dens = posterior if areas is None else posterior / areas
    idx = np.argsort(-dens, kind="stable")[:k]
    out = pd.DataFrame({"rank": np.arange(1, k + 1), "lat": points[idx, 0], "lon": points[idx, 1], "prob": posterior[idx]})
    if areas is not None:
        out["per_km2"] = dens[idx]  # probability per km^2: the ranking key
    return out


def describe(path: str, method: str, week, points: np.ndarray, posterior: np.ndarray, top_k: int, opts: LocateOptions,
             species=None, notes=(), prior=None, warnings=(), evidence: bool = True, temperature: float = 1.0,
             areas: np.ndarray | None = None) -> Location:
    """A posterior on a gallery -> Location: decoded point, top-k, credible regions, expected error, warnings.

    ``temperature`` != 1 first divides the posterior's log density by it (``regions.temper``; grids only).
    ``areas``: (N,) cell areas km^2 of a grid gallery (the point estimate and top-k rank by density); None: equal
    weights, or the areas of the lat/lon grid the points form.
    """
    post, temperature = tempered(posterior, temperature, points, areas)  # not a grid: untempered, no_region below
    lat, lon = _regions.decode(points, post, opts.decoder, opts.radius_km, areas=areas)
    warns = list(warnings)
    try:
        regs = _regions.credible_regions(points, post, opts.levels, point=(lat, lon))
    except ValueError as e:  # a gallery that is not a lat/lon grid has no cell areas
        regs = []
        warns.append(warning("no_region", f"no credible region: {e}"))
    gain = float("nan") if prior is None else kl_nats(post, prior)
    if evidence and np.isfinite(gain) and gain < WEAK_KL_NATS:
        warns.append(warning("weak_evidence", f"the evidence barely moves the posterior from the prior "
                             f"(information gain {gain:.2f} nats < {WEAK_KL_NATS:g}): trust the region, not the point"))
    return Location(path, method, week, lat, lon, topk_table(points, post, top_k, areas), species, points, post,
                    list(notes), opts.decoder, regs, float(_regions.expected_distance_km(points, post, lat, lon)[0]), gain,
                    warns, evidence, temperature, areas)


def _cell_areas(points: np.ndarray) -> np.ndarray:
    """(N, 2) cell-centred grid -> (N,) km^2 (ValueError when not a grid)."""
    return cell_areas(points, _regions.grid_step(points))


def locate(paths: str | Sequence[str], date=None, method: str = "ranges", top_k: int = 5,
           opts: LocateOptions = LocateOptions()) -> list[Location]:
    """Audio file(s) [+ date 'YYYY-MM-DD' or one per file] -> one Location per file.

    AudioError (a ValueError naming the file) for an unusable file; ValueError for a bad date/method/decoder.
    """
    if opts.decoder not in _regions.DECODERS:
        raise ValueError(f"decoder must be one of {_regions.DECODERS}, not {opts.decoder!r}")
    paths = [str(paths)] if isinstance(paths, (str, bytes)) or not isinstance(paths, Sequence) else [str(p) for p in paths]
    dates = list(date) if isinstance(date, (list, tuple)) else [date] * len(paths)
    if len(dates) != len(paths):
        raise ValueError(f"{len(dates)} dates for {len(paths)} files")
    weeks = [week_from_date(d) for d in dates]
    fn = get_method(method)
    outs = fn(paths, weeks, opts)
    return [describe(p, method, w, o.points, o.posterior, top_k, opts, o.species, o.notes, o.prior, o.warnings,
                     o.evidence, o.temperature, o.areas) for p, w, o in zip(paths, weeks, outs)]


def aggregate(locs: Sequence[Location], top_k: int = 5, name: str = "aggregate",
              opts: LocateOptions = LocateOptions()) -> Location:
    """Average the posteriors of Locations on the same gallery -> one Location (decoded by ``opts.decoder``)."""
    if not locs:
        raise ValueError("nothing to aggregate")
    P = np.mean(np.stack([l.posterior for l in locs]), axis=0)
    weeks = {l.week for l in locs}
    ev = any(l.evidence for l in locs)
    warns = [] if ev else [warning("no_species", "no recording has usable evidence: no location")]
    return describe(name, locs[0].method, weeks.pop() if len(weeks) == 1 else None, locs[0].points, P, top_k, opts,
                    None, [f"mean posterior of {len(locs)} recordings"], None, warns, ev, areas=locs[0].areas)


# ---------------------------------------------------------------- display
def grid_step(points: np.ndarray) -> float | None:
    """(N, 2) lat/lon -> the spacing (degrees) of a regular lat-lon grid, or None for irregular (sampled) galleries."""
    ulat, ulon = np.unique(points[:, 0]), np.unique(points[:, 1])
    if len(ulat) < 2 or len(ulon) < 2:
        return None
    step = float(np.diff(ulat).min())
    for u in (ulat, ulon):
        k = np.diff(u) / step
        if not np.allclose(k, np.round(k), atol=1e-6):
            return None
    return step


def plot_posterior(points: np.ndarray, posterior: np.ndarray, title: str, true=None, pred=None, ax=None,
                   extent: tuple | None = None, top: int = 4000, label: str = "posterior probability"):
    """(N, 2) gallery + (N,) posterior -> matplotlib axis: land, the ``top`` most probable points coloured by
    probability (log scale), true (green star) and predicted (red x) places; ``extent`` = (lon0, lon1, lat0, lat1)."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import LogNorm

    from .maps import land_background

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 5))
    land_background(ax)
    idx = np.argsort(-posterior)[:top][::-1]
    p = np.maximum(posterior[idx], 1e-12)
    norm = LogNorm(max(p.min(), p.max() * 1e-4), p.max())
    step = grid_step(points)
    if step:  # a regular grid: fill each cell, so no land shows through between the points as white lines
        lat, lon, h = points[idx, 0], points[idx, 1], step / 2
        cells = np.stack([np.c_[lon - h, lat - h], np.c_[lon + h, lat - h], np.c_[lon + h, lat + h], np.c_[lon - h, lat + h]], 1)
        sc = PolyCollection(cells, array=p, cmap="magma_r", norm=norm, linewidths=0, zorder=1)
        ax.add_collection(sc)
    else:
        sc = ax.scatter(points[idx, 1], points[idx, 0], c=p, s=6, cmap="magma_r", norm=norm, marker="s", linewidths=0, zorder=1)
    ax.figure.colorbar(sc, ax=ax, shrink=0.7, label=label)
    if true is not None:
        ax.plot(true[1], true[0], "*", color="limegreen", mec="k", ms=14, zorder=3, label="true location")
    if pred is not None:
        ax.plot(pred[1], pred[0], "x", color="red", ms=10, mew=3, zorder=3, label="prediction")
    if extent is not None:
        ax.set_xlim(extent[0], extent[1]), ax.set_ylim(extent[2], extent[3])
    if true is not None or pred is not None:
        ax.legend(loc="lower left")
    ax.set_title(title)
    return ax


# ---------------------------------------------------------------- annotated recordings (XCDC audio)
def _name_keys(model, names) -> list:
    """Scientific names -> comparable keys: the range model's index (synonyms resolved) or the normalised name."""
    return [int(i[0]) if len(i := model.match([n])[0]) else normalize_name(n) for n in names]


def locate_annotated_audio(rows: pd.DataFrame, opts: LocateOptions = LocateOptions(), progress: bool = True,
                           taxonomy_names: Sequence[str] = ()) -> tuple[pd.DataFrame, "object"]:
    """Recordings with annotated species (audio_id, filepath, species: list, week, lat, lon; e.g.
    ``soundloc.data.xcdc_audio``) -> BirdNET detections (cached per file) -> species-range geolocation.

    Returns (one row per readable recording: audio_id, n_annotated, n_detected, n_hit, recall, precision,
    pred_lat, pred_lon, error_km, detected; a SkipReport counting unreadable files by reason). Detections are
    species with max score >= ``opts.min_conf``; they are compared with the annotations after resolving names
    through the range model's taxonomy (``taxonomy_names`` extra names to reconcile, e.g. all annotated ones).
    """
    from .detect import get_detector  # torch: on first use, as above

    rows = rows.reset_index(drop=True)
    loc = range_geolocator(opts.gallery, opts.preset, opts.device)
    names = sorted({s for lst in rows["species"] for s in lst} | set(taxonomy_names))
    taxonomy.apply(loc.model, taxonomy.reconcile(loc.model, names))
    dets, rep = get_detector().detect_many(list(rows["filepath"]), opts.overlap, opts.sensitivity, progress=progress)
    ok = [i for i, d in enumerate(dets) if d is not None]
    sums = [dets[i].summary(opts.min_conf) for i in ok]
    r = rows.iloc[ok].reset_index(drop=True)
    if not ok:
        return pd.DataFrame(columns=["audio_id", "n_annotated", "n_detected", "n_hit", "recall", "precision", "pred_lat",
                                     "pred_lon", "error_km", "detected"]), rep
    outs = locate_species([s.scientific_name.tolist() for s in sums], [s.max_score.tolist() for s in sums],
                          list(r["week"]), opts)
    ann = [set(_name_keys(loc.model, lst)) for lst in r["species"]]
    det = [_name_keys(loc.model, s.scientific_name) for s in sums]
    n_hit = np.array([len(a & set(d)) for a, d in zip(ann, det)], int)
    n_det_hit = np.array([sum(k in a for k in d) for a, d in zip(ann, det)], int)
    n_ann, n_det = np.array([len(a) for a in ann], int), np.array([len(d) for d in det], int)
    pred = np.array([(o.lat, o.lon) for o in outs], float).reshape(-1, 2)
    out = pd.DataFrame({"audio_id": r["audio_id"].astype(str), "n_annotated": n_ann, "n_detected": n_det, "n_hit": n_hit,
                        "recall": n_hit / np.maximum(n_ann, 1),
                        "precision": np.where(n_det > 0, n_det_hit / np.maximum(n_det, 1), np.nan),
                        "pred_lat": pred[:, 0], "pred_lon": pred[:, 1],
                        "error_km": haversine(pred[:, 0], pred[:, 1], r["lat"].to_numpy(float), r["lon"].to_numpy(float)),
                        "detected": ["; ".join(s.scientific_name) for s in sums]})
    return out, rep


# ---------------------------------------------------------------- batches
@dataclass(frozen=True)
class LocateJob:
    """A batch job (picklable): Item -> :func:`locate_row`; ``prepare`` scores a chunk's BirdNET windows together."""

    opts: LocateOptions = LocateOptions()  # options of every row
    method: str = "ranges"  # locate method
    level: float = 0.9  # credible level of the area column
    chunk: int = 16  # recordings whose BirdNET windows are scored in one pass (soundloc.batch gives them together)

    def __call__(self, item) -> dict:
        if self.method in ("ranges", "fused"):  # a row is the same whichever rows its process located before
            range_geolocator(self.opts.gallery, self.opts.preset, self.opts.device).clear_maps()
        return locate_row(item, self.opts, self.method, self.level)

    def prepare(self, items) -> None:
        """The chunk's Items -> their BirdNET scores kept for the rows' detections (same scores, fewer passes)."""
        if self.method == "ranges":
            from .detect import get_detector  # torch: on first use, as above

            get_detector().prefetch([it.path for it in items], self.opts.overlap)


def locate_row(item, opts: LocateOptions = LocateOptions(), method: str = "ranges", level: float = 0.9) -> dict:
    """A batch Item (id, path, date) -> one output row: path, date, latitude, longitude (empty without evidence),
    credible area km^2 at ``level``, expected error, decoder, top species, warning codes (soundloc.batch)."""
    if level not in opts.levels:
        opts = replace(opts, levels=tuple(sorted({*opts.levels, level})))
    loc = locate([item.path], date=item.date, method=method, top_k=1, opts=opts)[0]
    sp = loc.species
    return {"path": item.path, "date": item.date or "", "latitude": loc.lat if loc.evidence else None,
            "longitude": loc.lon if loc.evidence else None,
            f"area_km2_{100 * level:.0f}": loc.region(level).area_km2 if loc.regions else None,
            "expected_error_km": loc.expected_error_km, "decoder": loc.decoder,
            "top_species": "" if sp is None or sp.empty else str(sp.scientific_name.iloc[0]),
            "warnings": ";".join(w["code"] for w in loc.warnings)}
