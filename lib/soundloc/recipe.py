"""Chapter 01's models in one call, for the chapters that build on them (03-07, 10).

``recipe.sim_models(ch)`` resolves the SMALL / paper training recipes from the chapter, then trains or
loads from the zoo (same keys as chapter 01 and 03, so nothing retrains) the species backbone, its window
embeddings, and on request the geolocation heads and chapter 03's main AG-CLIP model.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from . import agclip, table1
from .book import Chapter
from .datasets import AudioSplits, chapter_data
from .zoo import ZooEntry, recording_scores, split_embeddings

__all__ = ["SimModels", "sim_world", "baseline_config", "agclip_config", "sim_models"]

SPLITS = ("train", "val", "test")


def sim_world(ch: Chapter, small: bool | None = None, world_seed: int = 0, progress: bool = False) -> AudioSplits:
    """The SimSounds world of chapter 01 (small or large preset by the chapter's SMALL, or ``small``) with its
    spectrogram caches."""
    return chapter_data("sim", ch.small if small is None else small, world_seed, progress=progress)


def baseline_config(ch: Chapter, small: bool | None = None, **changes) -> table1.BaselineConfig:
    """Chapter 01's training recipe for this chapter: ``BaselineConfig.small`` or ``.paper`` (SEED, DEVICE)."""
    small = ch.small if small is None else small
    make = table1.BaselineConfig.small if small else table1.BaselineConfig.paper
    return dataclasses.replace(make(ch.seed, ch.device_name), **changes)


def agclip_config(ch: Chapter, small: bool | None = None) -> agclip.AGCLIPRunConfig:
    """Chapter 03's training recipe for this chapter: ``AGCLIPRunConfig.small`` or ``.paper`` (SEED, DEVICE)."""
    small = ch.small if small is None else small
    make = agclip.AGCLIPRunConfig.small if small else agclip.AGCLIPRunConfig.paper
    return make(ch.seed, ch.device_name)


@dataclass
class SimModels:
    """The SimSounds world and the models trained on it (zoo entries), with their scores on a split."""

    sim: AudioSplits
    cfg: table1.BaselineConfig
    backbone: ZooEntry                                           # the species classifier (chapter 01)
    emb: dict[str, tuple[torch.Tensor, torch.Tensor]]            # split -> backbone window embeddings, offsets
    geo: dict[str, ZooEntry] = field(default_factory=dict)       # "mse", "haversine", "res0".."res2" (chapter 01)
    ag: agclip.AGCLIPResult | None = None                        # chapter 03's main AG-CLIP model and its rows
    ag_cfg: agclip.AGCLIPRunConfig | None = None

    def scores(self, name: str, split: str = "test") -> torch.Tensor:
        """(N, K) recording scores of a geolocation head (``geo`` key) or of "species" (the backbone's classifier)."""
        entry = self.backbone if name == "species" else self.geo[name]
        return recording_scores(entry.model, self.sim, split, self.emb.get(split) if self.cfg.frozen else None,
                                progress=False)

    def species_probs(self, split: str = "test") -> np.ndarray:
        """(N, S) species-classifier probabilities of a split's recordings."""
        return self.scores("species", split).numpy()

    def range_locator(self, split: str = "test", gallery: str | None = None, disk_cache: bool = True):
        """Species-range geolocator with the settings chosen on the validation split (chapter 01's grid)
        -> (locator, chosen settings); range maps for the val + ``split`` weeks prewarmed."""
        cfg = dataclasses.replace(self.cfg, range_gallery=gallery) if gallery else self.cfg
        loc = table1.range_locator(self.sim, cfg)
        weeks = np.unique(np.concatenate([self.sim.val.week, self.sim.splits[split].week]))
        loc.prewarm([list(self.sim.species)] * len(weeks), weeks, disk_cache=disk_cache)
        best, _ = table1.choose_range_config(loc, self.sim, self.species_probs("val"), list(table1.RANGE_GRID))
        return loc.with_config(**best), best

    @property
    def agclip_head(self):
        """The main AG-CLIP model's head (chapter 03)."""
        return agclip.main_entry(self.ag).model.head


def sim_models(ch: Chapter, *, geo: bool = False, ag: bool = False, small: bool | None = None, world_seed: int = 0,
               sim: AudioSplits | None = None, progress: bool = False) -> SimModels:
    """Chapter 01's SimSounds world and backbone (+ its geolocation heads with ``geo``, + chapter 03's main AG-CLIP
    model with ``ag``), trained or loaded from the zoo. ``small`` overrides the chapter's SMALL (world size and
    recipe); ``sim`` replaces the SimSounds world by other splits (chapters 01 and 03 with real iNatSounds audio)."""
    small = ch.small if small is None else small
    sim = sim_world(ch, small, world_seed, progress) if sim is None else sim
    cfg = baseline_config(ch, small)
    backbone = table1.train_backbone(sim, cfg, progress=progress)
    emb = {s: split_embeddings(backbone, sim, s, progress=progress) for s in SPLITS}
    m = SimModels(sim, cfg, backbone, emb)
    if geo:
        m.geo = table1.train_geo_models(sim, backbone, cfg, progress,
                                        {k: emb[k] for k in ("train", "val")} if cfg.frozen else None)
    if ag:
        m.ag_cfg = agclip_config(ch, small)
        m.ag = agclip.main_model(sim, backbone, emb, m.ag_cfg, progress=progress)
    return m
