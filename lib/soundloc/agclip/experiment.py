"""Chapter 03's experiment: train (or load from the zoo) the AG-CLIP heads and evaluate everything the
chapter shows (Table 1 rows, location encoders and checklist / pooling ablations of Table 2, galleries of
Table A1, fusion with species ranges, calibration), plus chapter 01's hierarchical classifier decoded the
same way."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .. import devices
from ..devices import resolve_device, torch_threads
from ..sphere import haversine
from ..range_geolocation import RangeGeolocator, RangeLocConfig
from ..io import cached
from ..location_encoders import embed_locations, gallery_embeddings
from ..metrics import summary_row
from ..encoders import AudioEncoder, EncoderConfig
from ..heads import hierarchical_decode, hierarchical_log_posterior
from ..models import GeoModel
from ..oracles import checklists
from ..ranges import load_range_model
from ..table1 import train_geo_models
from ..recording_sets import RecordingSet
from ..train import TrainConfig
from ..zoo import head_scores, split_embeddings, train_or_load, window_embeddings
from .fusion import credible_sets
from .galleries import (GALLERIES, GALLERY_ROWS, SUBGRID_OF, build_gallery, gallery_log_area, grid_rows,
                        nearest_point, vmf_log_prior)
from .model import LOCATION_ENCODERS, AGCLIPConfig, AGCLIPHead, load_location_encoder
from .pooling import POOLINGS, TransformerPooler, pool_windows, split_features, train_pooler, window_features
from .retrieval import DECODERS, decode, log_posterior

__all__ = ["AGCLIPRunConfig", "AGCLIPResult", "checklist_targets", "km_errors", "DECODER_NAMES", "STEPS",
           "FUSION_ROWS", "AGCLIPContext", "make_context", "main_rows", "encoder_rows", "checklist_rows",
           "pooling_rows", "gallery_rows", "fusion_rows", "fusion_seed_rows", "range_log_posterior",
           "calibration_rows", "run_agclip", "main_model", "hierarchical_baseline",
           "hierarchical_gallery_log_posterior", "main_entry", "split_recording_features"]


@dataclass(frozen=True)
class AGCLIPRunConfig:
    """What chapter 03 trains and evaluates (see :meth:`small` and :meth:`paper`)."""

    head: AGCLIPConfig = AGCLIPConfig()                     # the main model (in_dim / n_species filled in)
    train: TrainConfig = TrainConfig()                      # every AG-CLIP head (A.5 by default)
    checklist_threshold: float = 0.1                        # range probability -> checklist presence (paper)
    checklist_week: bool = False                            # False: year-round checklists (as SINR's)
    gallery: str = "train"                                  # gallery of the main rows and ablations
    decoder: str = "mass_within"                            # decoder of the ablations ("argmax" = the paper's)
    radius_km: float = 200.0                                # mass_within radius (the region scale)
    galleries: tuple[str, ...] = GALLERIES                  # Table A1
    neighbour_res: int = 2                                  # H3 resolution of the train-neighbours gallery
    encoders: tuple[str, ...] = LOCATION_ENCODERS           # Table 2b
    poolings: tuple[str, ...] = POOLINGS                    # Table 2c
    ablation_seeds: tuple[int, ...] = ()                    # training seeds of the checklist, encoder, pooling and
                                                            # fusion rows; () = the main model's seed only
    pooler_epochs: int = 50                                 # transformer pooler (A.6)
    fusion_weights: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)  # chosen on validation
    prior_weights: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)  # weight of the log location prior, chosen on validation
    prior_bandwidth_km: float = 200.0                       # vMF smoothing of the TRAINING locations (the prior)
    calibration_gallery: str = "land1"                      # a grid gallery (its cells have areas)

    def __post_init__(self):
        if self.decoder not in DECODERS:
            raise ValueError(f"AGCLIPRunConfig.decoder={self.decoder!r}: expected one of {DECODERS}")
        for g in (self.gallery, *self.galleries):
            if g not in GALLERIES:
                raise ValueError(f"AGCLIPRunConfig: unknown gallery {g!r}; use one of {GALLERIES}")
        if not self.calibration_gallery.startswith(("land", "uniform")):
            raise ValueError("AGCLIPRunConfig.calibration_gallery must be a grid gallery (land1, uniform1, ...)")
        if len(set(self.ablation_seeds)) != len(self.ablation_seeds):
            raise ValueError(f"AGCLIPRunConfig.ablation_seeds={self.ablation_seeds}: a seed is repeated")

    @property
    def seeds_of_ablations(self) -> tuple[int, ...]:
        """The training seeds every checklist / encoder / pooling / fusion row is trained and evaluated with."""
        return self.ablation_seeds or (self.train.seed,)

    @classmethod
    def small(cls, seed: int = 0, device: str = "auto") -> "AGCLIPRunConfig":
        """CPU: heads on frozen backbone embeddings, with a shared 256-wide adapter standing in for the
        fine-tuned encoder (AdamW, lr 1e-3, 40 epochs, input dropout 0.5: chosen on the validation split);
        bf16 autocast where the hardware runs bf16 (:func:`soundloc.devices.native_bf16`), float32 elsewhere;
        fused AdamW."""
        tc = TrainConfig(epochs=40, batch_size=128, lr=1e-3, min_lr_ratio=0.1, warmup_epochs=2, weight_decay=1e-4,
                         optimizer="adamw", freeze_encoder=True, seed=seed, device=device, eval_every=10,
                         amp="bf16" if devices.native_bf16(device) else "off", fused=True)
        return cls(head=AGCLIPConfig(adapter=256, input_dropout=0.5), train=tc, pooler_epochs=10)

    @classmethod
    def paper(cls, seed: int = 0, device: str = "auto") -> "AGCLIPRunConfig":
        """A.5: Nesterov SGD, lr 1e-3 -> 1e-2 over 5 epochs, cosine to 1e-3, 50 epochs, batch 128, wd 1e-5."""
        return cls(train=TrainConfig(epochs=50, seed=seed, device=device, num_workers=4))


@dataclass
class AGCLIPResult:
    """Everything chapter 03 reports (errors in km, aligned with the test split's rows)."""

    main: dict[str, np.ndarray] = field(default_factory=dict)          # method -> (N,) km (Table 1 rows)
    encoders: dict[str, np.ndarray] = field(default_factory=dict)      # Table 2b (the main model's seed)
    checklist: pd.DataFrame | None = None                              # one row per seed x checklist on/off
    checklist_by_seed: dict[int, dict] = field(default_factory=dict)   # seed -> {checklist on (bool): (N,) km}
    pooling: dict[str, np.ndarray] = field(default_factory=dict)       # Table 2c (the main model's seed)
    encoders_by_seed: dict[int, dict] = field(default_factory=dict)    # seed -> Table 2b's {encoder: (N,) km}
    pooling_by_seed: dict[int, dict] = field(default_factory=dict)     # seed -> Table 2c's {pooling: (N,) km}
    fusion_by_seed: dict[int, dict] = field(default_factory=dict)      # seed -> {FUSION_ROWS name: (N,) km}
    fusion_weights: dict[int, float] = field(default_factory=dict)     # seed -> fusion weight chosen on validation
    galleries: pd.DataFrame | None = None                              # Table A1 (gallery x decoder rows)
    gallery_errors: dict[tuple, np.ndarray] = field(default_factory=dict)  # (gallery, decoder, prior) -> (N,) km
    fusion: dict[str, np.ndarray] = field(default_factory=dict)        # AG-CLIP / ranges / fused (main seed)
    fusion_sweep: pd.DataFrame | None = None                           # weights tried on validation (main seed)
    fusion_weight: float | None = None                                 # the one chosen there (main seed)
    calibration: pd.DataFrame | None = None
    prior_sweep: pd.DataFrame | None = None                            # location-prior weights tried on validation
    prior_weight: float | None = None                                  # the one chosen there
    decoder_sweep: pd.DataFrame | None = None                          # decoders on validation, without / with prior
    examples: list[dict] = field(default_factory=list)                 # posterior maps to draw
    models: dict = field(default_factory=dict)                         # name -> ZooEntry
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def models_table(self) -> pd.DataFrame:
        """One row per AG-CLIP head: trained now or loaded from the zoo, epochs, last validation metrics."""
        rows = []
        for k, e in self.models.items():
            last = e.history[-1] if e.history else {}
            rows.append({"model": k, "zoo key": e.key, "trained now": e.trained, "epochs": last.get("epoch"),
                         "val median km (argmax, train gallery)": last.get("val_median_error"),
                         "temperature": e.model.head.temperature, "seconds (this run)": e.seconds})
        return pd.DataFrame(rows)


def checklist_targets(sim, split: str, threshold: float, weekly: bool) -> torch.Tensor:
    """(N, S_all) bool checklists of BirdNET's range model at a split's recording locations."""
    weeks = sim.splits[split]["week"].to_numpy() if weekly else None
    return checklists(load_range_model("birdnet", "torch"), sim.latlon(split), weeks, threshold)


def km_errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(N, 2) predicted, (N, 2) true lat/lon degrees -> (N,) great-circle errors, km."""
    return haversine(pred[:, 0], pred[:, 1], true[:, 0], true[:, 1])


DECODER_NAMES = {"argmax": "argmax retrieval", "mass_within": "posterior mass within {r:g} km"}


@dataclass
class AGCLIPContext:
    """What the steps of :func:`run_agclip` share: inputs, targets and the caches they fill as they go."""

    sim: object                                   # AudioSplits of the run
    cfg: AGCLIPRunConfig
    emb: dict                                     # backbone window embeddings {"train"|"val"|"test": (emb, offsets)}
    enc_cfg: EncoderConfig                        # the backbone's encoder, copied into every head's model
    enc_state: dict
    geo: torch.nn.Module                          # GeoCLIP's frozen location encoder
    ll: dict[str, np.ndarray]                     # split -> (N, 2) true lat/lon
    geo_emb: dict[str, torch.Tensor]              # split -> (N, 512) GeoCLIP embeddings of the true locations
    chk: dict[str, torch.Tensor]                  # split -> (N, S) checklists (species of some training checklist)
    res: AGCLIPResult
    progress: bool = True
    beta: float = 0.0                             # weight of the location prior in locate_split (0: none)
    galleries: dict = field(default_factory=dict)   # GeoCLIP gallery name -> (points, embeddings)
    encoders: dict = field(default_factory=dict)    # id(head) -> its model's audio encoder
    own_emb: dict = field(default_factory=dict)     # (id(head), split) -> window embeddings of a fine-tuned encoder
    log_priors: dict = field(default_factory=dict)  # gallery name -> (N,) log vMF density of the training locations
    heads: dict = field(default_factory=dict)       # (zoo name, seed) -> head trained or loaded in this run
    range_logpost: dict = field(default_factory=dict)  # split -> (R, N) log range posterior of the fusion rows

    @property
    def frozen(self) -> bool:
        """True: heads train on the backbone's cached embeddings; False: each fine-tunes its own encoder (paper, GPU)."""
        return self.cfg.train.freeze_encoder


def make_context(sim, backbone, emb: dict, cfg: AGCLIPRunConfig, progress: bool = True) -> AGCLIPContext:
    """Targets of every split (true locations, their GeoCLIP embeddings, range-model checklists) -> the context."""
    res = AGCLIPResult()
    t0 = time.time()
    geo = load_location_encoder()
    ll = {s: sim.latlon(s) for s in ("train", "val", "test")}
    geo_emb = {s: embed_locations(geo, ll[s]) for s in ll}
    chk_all = {s: checklist_targets(sim, s, cfg.checklist_threshold, cfg.checklist_week) for s in ll}
    cols = torch.nonzero(chk_all["train"].any(0))[:, 0]  # species present in some training checklist
    chk = {s: c[:, cols] for s, c in chk_all.items()}
    res.notes.append(f"checklists: BirdNET range model, threshold {cfg.checklist_threshold}, "
                     f"{'weekly' if cfg.checklist_week else 'year-round'}; {len(cols)} of {chk_all['train'].shape[1]} "
                     f"species present in some training checklist (the decoder's outputs); "
                     f"{float(chk['train'].float().sum(1).mean()):.0f} species per training checklist on average")
    res.seconds["targets"] = time.time() - t0
    return AGCLIPContext(sim, cfg, emb, backbone.model.encoder.cfg, backbone.model.encoder.state_dict(), geo, ll,
                         geo_emb, chk, res, progress)


def geoclip_gallery(ctx: AGCLIPContext, name: str) -> tuple[np.ndarray, torch.Tensor]:
    """Named gallery -> (N, 2) points, (N, 512) GeoCLIP embeddings (cached; a sub-grid is sliced from its grid)."""
    if name not in ctx.galleries:
        pts = build_gallery(name, ctx.ll["train"], ctx.ll["val"], ctx.cfg.neighbour_res)
        parent, step = SUBGRID_OF.get(name, (None, None))
        if parent in ctx.cfg.galleries:  # rows of a grid this run embeds anyway: slice, do not embed again
            ctx.galleries[name] = (pts, geoclip_gallery(ctx, parent)[1][grid_rows(pts, step)])
        else:
            tag = name if name in ("uniform1", "uniform0.5", "land1") else f"sim-{name}"
            ctx.galleries[name] = (pts, gallery_embeddings(pts, tag, encoder=ctx.geo))
    return ctx.galleries[name]


def gallery_for(ctx: AGCLIPContext, head: AGCLIPHead, name: str) -> tuple[np.ndarray, torch.Tensor]:
    """A gallery embedded by ``head``'s location encoder (GeoCLIP's, cached, or the head's learnable one)."""
    if head.loc_enc is None:
        return geoclip_gallery(ctx, name)
    pts = build_gallery(name, ctx.ll["train"], ctx.ll["val"], ctx.cfg.neighbour_res)
    return pts, head.gallery_embeddings(pts)


def train_head(ctx: AGCLIPContext, name: str, hcfg: AGCLIPConfig, seed: int) -> AGCLIPHead:
    """Train (or load from the zoo) one AG-CLIP model on the backbone's encoder -> its head (model in ``res.models``);
    once per run and (name, seed): the ablations of several tables share their heads."""
    if (name, seed) in ctx.heads:
        return ctx.heads[(name, seed)]
    sim = ctx.sim

    def build():
        enc = AudioEncoder(EncoderConfig(**ctx.enc_cfg.identity()))
        enc.load_state_dict(ctx.enc_state)
        h = AGCLIPHead(hcfg)  # validation metrics while training: argmax over the training locations
        h.set_gallery(*(geoclip_gallery(ctx, "train") if h.loc_enc is None
                        else (build_gallery("train", ctx.ll["train"]), None)))
        return GeoModel(enc, h)

    head = AGCLIPHead(hcfg)

    def rs(split):
        t = head.make_targets(ctx.ll[split], ctx.geo_emb[split] if head.E else None, ctx.chk[split] if head.S else None)
        return RecordingSet(sim.caches[split], t, ctx.ll[split], ids=list(sim.splits[split]["audio_id"]),
                            spec_cfg=sim.spec_cfg)

    e = train_or_load(name, build, rs("train"), rs("val"), dataclasses.replace(ctx.cfg.train, seed=seed),
                      data_key=sim.key, embeddings={k: ctx.emb[k] for k in ("train", "val")} if ctx.frozen else None,
                      progress=ctx.progress)
    ctx.res.models[f"{name} (seed {seed})"] = e
    ctx.encoders[id(e.model.head)] = e.model.encoder
    ctx.heads[(name, seed)] = e.model.head
    return e.model.head


def head_window_embeddings(ctx: AGCLIPContext, head: AGCLIPHead, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, D) window embeddings of ``head``'s audio encoder over a split + (N+1,) offsets."""
    if ctx.frozen:
        return ctx.emb[split]
    key = (id(head), split)
    if key not in ctx.own_emb:  # fine-tuned encoder: embed the split's windows with it, once
        df = ctx.sim.splits[split]
        recs = RecordingSet(ctx.sim.caches[split], np.zeros(len(df)), ids=list(df["audio_id"]),
                            spec_cfg=ctx.sim.spec_cfg)
        ctx.own_emb[key] = window_embeddings(ctx.encoders[id(head)], recs, progress=ctx.progress)
    return ctx.own_emb[key]


def recording_feats(ctx: AGCLIPContext, head: AGCLIPHead, split: str, pooling: str = "average",
                    pooler=None) -> torch.Tensor:
    """(R, E) recording features of a split: ``head``'s window features pooled per recording."""
    e, off = head_window_embeddings(ctx, head, split)
    return pool_windows(window_features(head, e), off, pooling, pooler=pooler)


def location_prior(ctx: AGCLIPContext, gallery_name: str, n: int) -> torch.Tensor | None:
    """(n, N) log prior over a gallery: beta x vMF density of the training locations (None if beta = 0)."""
    if ctx.beta == 0:
        return None
    if gallery_name not in ctx.log_priors:
        pts = build_gallery(gallery_name, ctx.ll["train"], ctx.ll["val"], ctx.cfg.neighbour_res)
        ctx.log_priors[gallery_name] = vmf_log_prior(pts, ctx.ll["train"], ctx.cfg.prior_bandwidth_km)
    return ctx.beta * ctx.log_priors[gallery_name][None].expand(n, -1)


def locate_split(ctx: AGCLIPContext, head: AGCLIPHead, split: str, gallery_name: str | None = None,
                 decoder: str | None = None, q: torch.Tensor | None = None, prior: torch.Tensor | None = None,
                 with_prior: bool = True) -> np.ndarray:
    """A split's recordings -> (R, 2) decoded lat/lon (gallery and decoder default to the run's; the location
    prior at ``ctx.beta`` added when ``with_prior``, on top of an optional ``prior``)."""
    gallery_name = ctx.cfg.gallery if gallery_name is None else gallery_name
    decoder = ctx.cfg.decoder if decoder is None else decoder
    pts, g = gallery_for(ctx, head, gallery_name)
    q = recording_feats(ctx, head, split) if q is None else q
    lp = location_prior(ctx, gallery_name, len(q)) if with_prior else None
    prior = lp if prior is None else (prior if lp is None else prior + lp)
    return pts[decode(q, g, pts, 1.0 / head.temperature, decoder, ctx.cfg.radius_km, prior=prior,
                      log_area=gallery_log_area(gallery_name, pts))]


def main_rows(ctx: AGCLIPContext, main: AGCLIPHead, q_test: torch.Tensor, q_val: torch.Tensor) -> None:
    """Table 1's AG-CLIP rows (both decoders, without and with the location prior, its weight chosen on val)."""
    cfg, res, ll = ctx.cfg, ctx.res, ctx.ll
    ctx.beta = 0.0
    for dec in DECODERS:
        res.main[f"AG-CLIP ({DECODER_NAMES[dec].format(r=cfg.radius_km)})"] = km_errors(
            locate_split(ctx, main, "test", decoder=dec, q=q_test), ll["test"])
    rows = []
    for b in cfg.prior_weights:  # the location prior's weight, chosen on the validation split
        ctx.beta = b
        rows.append({"prior weight": b, **summary_row("AG-CLIP, validation",
                                                      km_errors(locate_split(ctx, main, "val", q=q_val), ll["val"]))})
    res.prior_sweep = pd.DataFrame(rows).drop(columns=["method"])
    ctx.beta = float(res.prior_sweep.sort_values(["median_km", "region_%"], ascending=[True, False], kind="stable")
                     .iloc[0]["prior weight"])
    res.prior_weight = ctx.beta
    # the decoder is a free parameter too: both on validation, so the chapter can say which one validation favours
    res.decoder_sweep = pd.DataFrame([
        {"decoder": dec, "prior weight": ctx.beta if wp else 0.0, **summary_row(
            "AG-CLIP, validation", km_errors(locate_split(ctx, main, "val", decoder=dec, q=q_val, with_prior=wp),
                                             ll["val"]))}
        for wp in (False, True) for dec in DECODERS]).drop(columns=["method"])
    for dec in DECODERS:
        res.main[f"AG-CLIP + location prior ({DECODER_NAMES[dec].format(r=cfg.radius_km)})"] = km_errors(
            locate_split(ctx, main, "test", decoder=dec, q=q_test), ll["test"])
    res.notes.append(f"AG-CLIP learned temperature {main.temperature:.4f}; gallery of the main rows and "
                     f"ablations: {cfg.gallery}; decoder of the ablations: {cfg.decoder}; location prior "
                     f"(vMF {cfg.prior_bandwidth_km:g} km of the training locations) weight {ctx.beta:g}, chosen on "
                     f"validation from {list(cfg.prior_weights)} and used by every ablation")


def encoder_rows(ctx: AGCLIPContext, base: AGCLIPConfig) -> None:
    """Table 2b: one model per location encoder (the main model for its own) and training seed of
    ``cfg.seeds_of_ablations``; ``res.encoders`` holds the main model's seed."""
    for seed in ctx.cfg.seeds_of_ablations:
        rows = ctx.res.encoders_by_seed.setdefault(seed, {})
        for name in ctx.cfg.encoders:
            h = train_head(ctx, "agclip", base, seed) if name == base.location_encoder else train_head(
                ctx, f"agclip-{name}", dataclasses.replace(base, location_encoder=name), seed)
            rows[name] = km_errors(locate_split(ctx, h, "test"), ctx.ll["test"])
    ctx.res.encoders = dict(ctx.res.encoders_by_seed.get(ctx.cfg.train.seed, {}))


def checklist_rows(ctx: AGCLIPContext, base: AGCLIPConfig) -> None:
    """Table 2: the checklist loss on and off, for every training seed of ``cfg.seeds_of_ablations`` (the main
    model at its own seed, as :func:`train_head` keeps it for the run)."""
    rows = []
    for seed in ctx.cfg.seeds_of_ablations:
        for on in (True, False):
            h = train_head(ctx, "agclip" if on else "agclip-nochecklist",
                           base if on else dataclasses.replace(base, checklist_weight=0.0), seed)
            d = km_errors(locate_split(ctx, h, "test"), ctx.ll["test"])
            ctx.res.checklist_by_seed.setdefault(seed, {})[on] = d
            rows.append(summary_row("AG-CLIP + checklist" if on else "AG-CLIP, no checklist", d, seed=seed, checklist=on))
    ctx.res.checklist = pd.DataFrame(rows)


def pooling_rows(ctx: AGCLIPContext, base: AGCLIPConfig) -> None:
    """Table 2c: the main model's windows pooled per recording in every way of ``cfg.poolings``, for the main
    model of each training seed of ``cfg.seeds_of_ablations``; ``res.pooling`` holds the main model's seed."""
    for seed in ctx.cfg.seeds_of_ablations:
        h = train_head(ctx, "agclip", base, seed)  # the main model itself at its own seed
        rows = ctx.res.pooling_by_seed.setdefault(seed, {})
        for p in ctx.cfg.poolings:
            pooler = None
            if p == "transformer":
                pooler = _cached_pooler(ctx.res.models[f"agclip (seed {seed})"], h,
                                        head_window_embeddings(ctx, h, "train"), ctx.geo_emb["train"],
                                        ctx.cfg.pooler_epochs, seed, ctx.progress)
            rows[p] = km_errors(locate_split(ctx, h, "test", q=recording_feats(ctx, h, "test", p, pooler)),
                                ctx.ll["test"])
    ctx.res.pooling = dict(ctx.res.pooling_by_seed.get(ctx.cfg.train.seed, {}))


def gallery_rows(ctx: AGCLIPContext, main: AGCLIPHead, q_test: torch.Tensor) -> None:
    """Table A1: every gallery x decoder, without and with the location prior."""
    rows = []
    for gname in ctx.cfg.galleries:
        n = len(gallery_for(ctx, main, gname)[0])
        for dec in DECODERS:
            for wp in (False, True):
                d = km_errors(locate_split(ctx, main, "test", gname, dec, q=q_test, with_prior=wp), ctx.ll["test"])
                ctx.res.gallery_errors[(gname, dec, f"{ctx.beta:g}" if wp else "none")] = d
                rows.append(summary_row(GALLERY_ROWS[gname], d, gallery=gname, points=n, decoder=dec,
                                        prior=f"{ctx.beta:g}" if wp else "none"))
    ctx.res.galleries = pd.DataFrame(rows)


STEPS = ("encoders", "checklist", "pooling", "galleries", "fusion", "calibration")  # run_agclip's optional tables


def run_agclip(sim, backbone, emb: dict, cfg: AGCLIPRunConfig, progress: bool = True,
               species_probs: dict | None = None, what: Sequence[str] = STEPS) -> AGCLIPResult:
    """Train (or load from the zoo) AG-CLIP models starting from ``backbone``'s encoder; evaluate on test.

    With ``cfg.train.freeze_encoder`` (SMALL) the heads train on the backbone's cached window
    embeddings ``emb``: {"train"|"val"|"test": ((W, D) embeddings, (N+1,) offsets)}
    (:func:`soundloc.zoo.split_embeddings`); otherwise every model fine-tunes its own copy of
    the encoder end to end (the paper's A.5) and its splits are embedded with it once. ``species_probs``: {"val"|"test": (N, S) species
    probabilities of the backbone's classifier}, needed for the fusion with species ranges. Free
    parameters (fusion weight) are chosen on the validation split; everything is reported on test.
    ``what``: the tables of :data:`STEPS` to compute besides the main model's rows (``()``: the main model only).
    """
    ctx = make_context(sim, backbone, emb, cfg, progress)
    res = ctx.res
    base = dataclasses.replace(cfg.head, in_dim=backbone.model.encoder.dim, n_species=ctx.chk["train"].shape[1])
    with torch_threads(resolve_device(cfg.train.device)):
        t0 = time.time()
        main = train_head(ctx, "agclip", base, cfg.train.seed)
        q_test, q_val = recording_feats(ctx, main, "test"), recording_feats(ctx, main, "val")
        main_rows(ctx, main, q_test, q_val)
        res.seconds["main model"] = time.time() - t0
        steps = {"encoders": ("location encoders", lambda: encoder_rows(ctx, base)),
                 "checklist": ("checklist on/off", lambda: checklist_rows(ctx, base)),
                 "pooling": ("pooling", lambda: pooling_rows(ctx, base)),
                 "galleries": ("galleries", lambda: gallery_rows(ctx, main, q_test)),
                 "fusion": ("fusion", lambda: fusion_seed_rows(ctx, base, species_probs)),
                 "calibration": ("calibration", lambda: calibration_rows(ctx, main, q_test))}
        for step, (label, run) in steps.items():
            if step not in what or (step == "fusion" and species_probs is None):
                continue
            t0 = time.time()
            run()
            res.seconds[label] = time.time() - t0
    return res


def main_model(sim, backbone, emb: dict, cfg: AGCLIPRunConfig, progress: bool = True) -> AGCLIPResult:
    """Chapter 03's main AG-CLIP model (trained once, then loaded from the zoo) and its Table 1 rows, for later
    chapters: :func:`run_agclip` without the ablation tables (``main_entry(result)`` is the model)."""
    return run_agclip(sim, backbone, emb, cfg, progress, what=())


def _cached_pooler(entry, main: AGCLIPHead, train_emb, targets, epochs: int, seed: int, progress: bool):
    """The transformer pooler of a zoo model, trained once and cached beside its checkpoint (weights_only)."""
    def load(path) -> TransformerPooler:
        pooler = TransformerPooler(main.cfg.embed_dim)
        pooler.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return pooler.eval()

    def build() -> TransformerPooler:
        return train_pooler(window_features(main, train_emb[0]), train_emb[1], targets, epochs=epochs, seed=seed,
                            temperature=main.temperature, progress=progress)

    return cached(entry.folder / f"pooler-e{epochs}-s{seed}.pt", build, load,
                  lambda pooler, tmp: torch.save(pooler.state_dict(), tmp))[0]


FUSION_ROWS = ("AG-CLIP", "Ranges: predicted species top-1 (same gallery and location prior)",
               "Fused: AG-CLIP x ranges^w (w chosen on validation)")  # fusion_by_seed's rows, the same for every seed


def range_log_posterior(ctx: AGCLIPContext, pts: np.ndarray, species_probs: dict, split: str) -> torch.Tensor:
    """(R, N) log posterior of the species-range expert over gallery ``pts``: BirdNET's ranges of the top-1
    predicted species at the recording's week (cached per split: it does not depend on the AG-CLIP head)."""
    if split not in ctx.range_logpost:
        # areas=None: the range expert's posterior over equal weights is its density up to a constant, so its log
        # adds to AG-CLIP's log density; decode() then weighs the product by the cells' areas once
        loc = RangeGeolocator(load_range_model("birdnet", "torch"), pts, RangeLocConfig(prior_weight=0.0),
                              gallery_name=f"agclip-{ctx.cfg.gallery}-{len(pts)}", log_prior=None, areas=None)
        names = np.asarray(ctx.sim.species, dtype=object)
        top1 = [[names[i]] for i in np.asarray(species_probs[split]).argmax(1)]
        r = loc.locate(top1, weeks=ctx.sim.splits[split]["week"].to_numpy(), return_posterior=True,
                       progress=ctx.progress)
        ctx.range_logpost[split] = torch.as_tensor(r.posterior).clamp_min(1e-30).log()
    return ctx.range_logpost[split]


def fusion_rows(ctx: AGCLIPContext, main: AGCLIPHead, species_probs: dict, log_prior: torch.Tensor | None = None,
                seed: int | None = None) -> None:
    """AG-CLIP x species ranges of the top-1 predicted species (product of experts); weight chosen on val.

    ``main``: the AG-CLIP head of training seed ``seed`` (None: the main model's); ``log_prior``: (1, N)
    location prior added to every expert's logits (None: none). Fills ``fusion_by_seed`` / ``fusion_weights``
    and, for the main model's seed, ``fusion`` / ``fusion_sweep`` / ``fusion_weight``.
    """
    cfg, res, ll = ctx.cfg, ctx.res, ctx.ll
    seed = cfg.train.seed if seed is None else seed
    pts, g = gallery_for(ctx, main, cfg.gallery)
    la = gallery_log_area(cfg.gallery, pts)
    scale = 1.0 / main.temperature
    parts = {split: (recording_feats(ctx, main, split), range_log_posterior(ctx, pts, species_probs, split))
             for split in ("val", "test")}

    def run(split, w, only_ranges=False):
        q, lb = parts[split]
        lp = 0.0 if log_prior is None else log_prior
        if only_ranges:  # the range expert alone: zero audio logits
            return pts[decode(q, g, pts, 0.0, cfg.decoder, cfg.radius_km, prior=lb + lp, log_area=la)]
        return pts[decode(q, g, pts, scale, cfg.decoder, cfg.radius_km, prior=w * lb + lp, log_area=la)]

    rows = [{"weight": w, **summary_row(f"fused, weight {w:g} (validation)", km_errors(run("val", w), ll["val"]))}
            for w in cfg.fusion_weights]
    sweep = pd.DataFrame(rows)
    best = float(sweep.sort_values(["median_km", "region_%"], ascending=[True, False], kind="stable").iloc[0]["weight"])
    errors = [km_errors(run("test", 0.0), ll["test"]), km_errors(run("test", 0, True), ll["test"]),
              km_errors(run("test", best), ll["test"])]
    res.fusion_by_seed[seed], res.fusion_weights[seed] = dict(zip(FUSION_ROWS, errors)), best
    res.notes.append(f"fusion weight {best:g} chosen on the validation split (lowest median) from "
                     f"{list(cfg.fusion_weights)} for training seed {seed}")
    if seed == cfg.train.seed:
        res.fusion = dict(zip((*FUSION_ROWS[:2], f"Fused: AG-CLIP x ranges^{best:g}"), errors))
        res.fusion_sweep, res.fusion_weight = sweep.drop(columns=["method"]), best


def fusion_seed_rows(ctx: AGCLIPContext, base: AGCLIPConfig, species_probs: dict) -> None:
    """:func:`fusion_rows` for the main model of every training seed of ``cfg.seeds_of_ablations`` (the weight
    chosen on validation per seed), all with the run's location prior."""
    for seed in ctx.cfg.seeds_of_ablations:
        fusion_rows(ctx, train_head(ctx, "agclip", base, seed), species_probs,
                    location_prior(ctx, ctx.cfg.gallery, 1), seed)


def calibration_rows(ctx: AGCLIPContext, main: AGCLIPHead, q_test: torch.Tensor) -> None:
    """Credible-set areas / coverage on a grid gallery with the learned temperature and with one fitted on the
    validation split (highest mean log posterior of the true cell), and three example posteriors."""
    sim, cfg, res, ll = ctx.sim, ctx.cfg, ctx.res, ctx.ll
    pts, g = gallery_for(ctx, main, cfg.calibration_gallery)
    la = gallery_log_area(cfg.calibration_gallery, pts)
    area = la.double().exp().numpy()
    learned = 1.0 / main.temperature
    q_val, cell_val = recording_feats(ctx, main, "val"), nearest_point(pts, ll["val"])

    def val_loglik(scale):
        lp = torch.cat([log_posterior(q_val[s:s + 128], g, scale, log_area=la) for s in range(0, len(q_val), 128)])
        return float(lp[torch.arange(len(lp)), torch.as_tensor(cell_val)].mean())

    grid = [learned * f for f in (0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)]
    fitted = max(grid, key=val_loglik)
    cell_test = nearest_point(pts, ll["test"])
    rows = []
    for what, scale in (("learned", learned), ("fitted on validation", fitted)):
        areas, cov = [], []
        for s in range(0, len(q_test), 128):  # bounded memory: 128 posteriors at a time
            post = log_posterior(q_test[s:s + 128], g, scale, log_area=la).exp()
            a, c = credible_sets(post, area, cell_test[s:s + 128])
            areas.append(a)
            cov.append(c)
        areas, cov = np.concatenate(areas), np.concatenate(cov)
        for k, lv in enumerate(("50 %", "90 %")):
            rows.append({"temperature": f"{what} ({1 / scale:.4f})", "credible level": lv,
                         "gallery": cfg.calibration_gallery, "median area (km^2)": float(np.median(areas[:, k])),
                         "mean area (km^2)": float(areas[:, k].mean()), "coverage %": 100 * float(cov[:, k].mean())})
    res.calibration = pd.DataFrame(rows)
    res.notes.append(f"calibration: temperature fitted on the validation split {1 / fitted:.4f} (learned {1 / learned:.4f})")
    top = decode(q_test, g, pts, learned, "argmax")
    err = km_errors(pts[top], ll["test"])
    for i in np.argsort(err, kind="stable")[[len(err) // 10, len(err) // 2, (9 * len(err)) // 10]]:
        post = log_posterior(q_test[i:i + 1], g, learned, log_area=la).exp()[0].numpy()
        res.examples.append({"i": int(i), "audio_id": str(sim.test.audio_id.iloc[i]), "species": sim.test.species.iloc[i],
                             "true": ll["test"][i], "pred": pts[top[i]], "error_km": float(err[i]),
                             "points": pts, "prob": post, "gallery": cfg.calibration_gallery})


def hierarchical_baseline(sim, backbone, base_cfg, emb: dict, split: str = "test", progress: bool = True) -> np.ndarray:
    """(N,) km errors of chapter 01's "Classification hierarchical 0-1-2" on ``split`` (heads loaded from the zoo).

    ``base_cfg``: the :class:`soundloc.table1.BaselineConfig` chapter 01 used (same zoo keys, so
    the heads are loaded, not retrained); ``emb``: the backbone's window embeddings per split.
    """
    geo = train_geo_models(sim, backbone, base_cfg, progress, {k: emb[k] for k in ("train", "val")})
    scores = [head_scores(geo[f"res{r}"].model.head, *emb[split]) for r in (0, 1, 2)]
    classes = [geo[f"res{r}"].model.head.classes for r in (0, 1, 2)]
    idx = hierarchical_decode(scores, classes=classes, mode="sum")
    return km_errors(classes[2].decode(idx.cpu().numpy()), sim.latlon(split))


def hierarchical_gallery_log_posterior(sim, backbone, base_cfg, emb: dict, points: np.ndarray,
                                       split: str = "test", progress: bool = True) -> torch.Tensor:
    """Chapter 01's hierarchical classifier as a (R, N) log posterior over AG-CLIP's gallery points.

    Each point gets its res-2 class's probability shared equally among the gallery points of that
    class (points in no class get eps), so AG-CLIP and the classifier can be decoded the same way
    (``decode_log_posterior``) with the same location prior over the same gallery.
    """
    geo = train_geo_models(sim, backbone, base_cfg, progress, {k: emb[k] for k in ("train", "val")})
    scores = [head_scores(geo[f"res{r}"].model.head, *emb[split]) for r in (0, 1, 2)]
    classes = [geo[f"res{r}"].model.head.classes for r in (0, 1, 2)]
    lp = hierarchical_log_posterior(scores, classes)                      # (R, C)
    cls = classes[2].encode(points[:, 0], points[:, 1])                   # (N,) class of each point, -1 none
    count = np.bincount(cls[cls >= 0], minlength=len(classes[2]))
    share = torch.as_tensor(-np.log(np.maximum(count, 1)), dtype=torch.float32)
    out = torch.full((len(lp), len(points)), float(np.log(1e-12)))
    inside = torch.as_tensor(np.flatnonzero(cls >= 0))
    c = torch.as_tensor(cls[cls >= 0])
    out[:, inside] = lp[:, c] + share[c]
    return out.log_softmax(1)



def main_entry(res: AGCLIPResult):
    """The main AG-CLIP model's zoo entry of a :func:`run_agclip` result (first seed of "agclip")."""
    return res.models[next(k for k in res.models if k.startswith("agclip (seed "))]


def split_recording_features(res: AGCLIPResult, sim, split: str) -> torch.Tensor:
    """(R, E) main-model recording features of a SimSounds split (its encoder's window embeddings, cached)."""
    entry = main_entry(res)
    return split_features(entry.model.head, split_embeddings(entry, sim, split, progress=False))
