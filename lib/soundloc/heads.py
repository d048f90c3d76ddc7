"""Geolocation heads (paper section 4, A.5), each an ``nn.Module`` with ``forward(z) -> outputs``,
``loss(outputs, target)``, ``scores(outputs)`` (what is averaged over a recording's windows),
``predict_from_scores`` and ``predict(outputs) -> (B, 2)`` lat/lon degrees:
:class:`RegressionHead` (MSE on lat/lon scaled to [-1, 1], or differentiable haversine),
:class:`H3Head` (classification over the training set's H3 cells at one resolution),
:class:`MultiResH3Head` (res 0, 1, 2 classifiers on one encoder, decoded hierarchically),
:class:`SpeciesHead` (softmax over species; ``predict_species`` -> probabilities);
:func:`build_head` rebuilds any of them (or a registered kind) from its ``config()``.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .sphere import EARTH_RADIUS_KM, h3_cells, h3_centers, haversine_torch


# --------------------------------------------------------------------------- helpers

def latlon_to_xyz(latlon: torch.Tensor) -> torch.Tensor:
    """(..., 2) lat/lon degrees -> (..., 3) unit vectors."""
    la, lo = torch.deg2rad(latlon[..., 0]), torch.deg2rad(latlon[..., 1])
    return torch.stack([torch.cos(la) * torch.cos(lo), torch.cos(la) * torch.sin(lo), torch.sin(la)], dim=-1)


def xyz_to_latlon(xyz: torch.Tensor) -> torch.Tensor:
    """(..., 3) vectors (any non-zero norm) -> (..., 2) lat/lon degrees."""
    xyz = F.normalize(xyz, dim=-1)
    return torch.stack([torch.rad2deg(torch.asin(xyz[..., 2].clamp(-1, 1))),
                        torch.rad2deg(torch.atan2(xyz[..., 1], xyz[..., 0]))], dim=-1)


def _latlon_tensor(lat, lon=None) -> torch.Tensor:
    if lon is None:
        return torch.as_tensor(np.asarray(lat, dtype=np.float64)).reshape(-1, 2).float()
    return torch.as_tensor(np.stack([np.asarray(lat, float), np.asarray(lon, float)], -1)).float()


class Head(nn.Module):
    """Common interface of the geolocation heads (see the module docstring)."""

    kind = "head"

    def config(self) -> dict:
        raise NotImplementedError

    def scores(self, out: torch.Tensor) -> torch.Tensor:
        """Window outputs -> the quantity averaged over a recording's windows."""
        raise NotImplementedError

    def predict_from_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """(Averaged) scores -> (B, 2) lat/lon degrees."""
        raise NotImplementedError

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        """Window outputs -> (B, 2) lat/lon degrees."""
        return self.predict_from_scores(self.scores(out))

    def targets(self, lat=None, lon=None, species=None) -> torch.Tensor:
        """Per-recording training targets for this head (what ``loss`` expects)."""
        raise NotImplementedError

    def can_locate(self) -> bool:
        """Whether ``predict`` can give coordinates (a species head needs centroids first)."""
        return True


# --------------------------------------------------------------------------- regression

class RegressionHead(Head):
    """Linear -> 2 outputs: lat / 90 and lon / 180 (scaled to [-1, 1]).

    ``loss="mse"``: MSE between scaled outputs and scaled targets; ``loss="haversine"``: mean
    great-circle distance between the predicted and the true point, in Earth radii (km / 6371,
    so the loss is O(1) for SGD; multiply by 6371 for km). Targets are (B, 2) lat/lon degrees.
    Predictions clamp latitude to [-90, 90] and wrap longitude to [-180, 180).
    """

    kind = "regression"
    SCALE = (90.0, 180.0)

    def __init__(self, in_dim: int, loss: str = "haversine"):
        super().__init__()
        if loss not in ("mse", "haversine"):
            raise ValueError(f"RegressionHead loss={loss!r}: expected 'mse' or 'haversine'")
        self.in_dim, self.loss_name = in_dim, loss
        self.fc = nn.Linear(in_dim, 2)
        self.register_buffer("scale", torch.tensor(self.SCALE), persistent=False)

    def config(self) -> dict:
        return {"kind": self.kind, "in_dim": self.in_dim, "loss": self.loss_name}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z)

    def to_degrees(self, out: torch.Tensor) -> torch.Tensor:
        """Raw outputs -> (B, 2) lat/lon degrees, unclamped (differentiable)."""
        return out.float() * self.scale

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(out.device, torch.float32)
        if self.loss_name == "mse":
            return F.mse_loss(out.float(), target / self.scale)
        return haversine_torch(self.to_degrees(out), target).mean() / EARTH_RADIUS_KM

    def scores(self, out: torch.Tensor) -> torch.Tensor:
        return latlon_to_xyz(self.to_degrees(out))  # unit vectors average correctly across the dateline

    def predict_from_scores(self, scores: torch.Tensor) -> torch.Tensor:
        return xyz_to_latlon(scores.float())

    def targets(self, lat=None, lon=None, species=None) -> torch.Tensor:
        return _latlon_tensor(lat, lon)


# --------------------------------------------------------------------------- H3 classes

@dataclass(frozen=True)
class H3Classes:
    """The H3 cells at one resolution that occur in the training set (the classifier's classes)."""

    res: int                      # H3 resolution (0: 122 cells, 1: 842, 2: 5,882 worldwide)
    cells: tuple[str, ...]        # sorted cell ids; class k is cells[k]

    @classmethod
    def from_training(cls, lat, lon, res: int) -> "H3Classes":
        """Classes = the sorted distinct cells of the training locations."""
        return cls(int(res), tuple(sorted(set(h3_cells(lat, lon, res)))))

    @property
    def index(self) -> dict[str, int]:
        idx = self.__dict__.get("_index")
        if idx is None:
            idx = {c: i for i, c in enumerate(self.cells)}
            object.__setattr__(self, "_index", idx)
        return idx

    def __len__(self) -> int:
        return len(self.cells)

    def centers(self) -> np.ndarray:
        """(C, 2) cell centres, lat/lon degrees."""
        c = self.__dict__.get("_centers")
        if c is None:
            c = h3_centers(self.cells)
            object.__setattr__(self, "_centers", c)
        return c

    def encode(self, lat, lon) -> np.ndarray:
        """(N,) lat/lon -> (N,) int64 class index; -1 for a cell absent from the training set."""
        return np.array([self.index.get(c, -1) for c in h3_cells(lat, lon, self.res)], dtype=np.int64)

    def decode(self, idx) -> np.ndarray:
        """(N,) class indices -> (N, 2) centre lat/lon degrees."""
        return self.centers()[np.asarray(idx, dtype=np.int64)]

    def parent_index(self, coarse: "H3Classes", how: str = "center") -> np.ndarray:
        """(C,) index into ``coarse`` of each cell's parent; -1 when the parent is not a class there.

        ``how="center"`` (default): the coarse cell that contains this cell's centre -- consistent
        with training targets, which bin each point independently at every resolution (H3 cells
        are not nested: e.g. Paris lies in res-0 cell 8019fff... while its res-2 cell's
        ``h3.cell_to_parent`` at res 0 is 801ffff...). ``how="h3"``: ``h3.cell_to_parent``.
        """
        import h3

        if coarse.res > self.res:
            raise ValueError(f"parent resolution {coarse.res} is finer than {self.res}")
        if how == "h3":
            par = [h3.cell_to_parent(c, coarse.res) for c in self.cells]
        elif how == "center":
            ctr = self.centers()
            par = list(h3_cells(ctr[:, 0], ctr[:, 1], coarse.res))
        else:
            raise ValueError(f"parent_index how={how!r}: expected 'center' or 'h3'")
        return np.array([coarse.index.get(c, -1) for c in par], dtype=np.int64)

    def to_dict(self) -> dict:
        return {"res": self.res, "cells": list(self.cells)}

    @classmethod
    def from_dict(cls, d: dict) -> "H3Classes":
        return cls(int(d["res"]), tuple(d["cells"]))


class _LinearClassifier(Head):
    """A linear layer ``fc`` to class logits; cross-entropy ignoring target -1; softmax scores."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z)

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.float(), target.to(out.device, torch.long), ignore_index=-1)

    def scores(self, out: torch.Tensor) -> torch.Tensor:
        return out.float().softmax(-1)


class H3Head(_LinearClassifier):
    """Linear -> C logits over the training set's H3 cells; cross-entropy; predicts the best cell's centre.

    Targets are class indices from :meth:`H3Classes.encode`; -1 (a cell absent from training, e.g.
    in a test set) is ignored by the loss, and predictions are always one of the known cells.
    """

    kind = "h3"

    def __init__(self, in_dim: int, classes: H3Classes):
        super().__init__()
        if len(classes) == 0:
            raise ValueError("H3Head needs at least one class")
        self.in_dim, self.classes = in_dim, classes
        self.fc = nn.Linear(in_dim, len(classes))
        self.register_buffer("centers", torch.tensor(classes.centers(), dtype=torch.float32), persistent=False)

    def config(self) -> dict:
        return {"kind": self.kind, "in_dim": self.in_dim, "classes": self.classes.to_dict()}

    def predict_from_scores(self, scores: torch.Tensor) -> torch.Tensor:
        return self.centers[scores.argmax(-1)]

    def targets(self, lat=None, lon=None, species=None) -> torch.Tensor:
        return torch.as_tensor(self.classes.encode(lat, lon))


def h3_hierarchy(classes: Sequence[H3Classes], parent: str = "center") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Index maps for coarse-to-fine decoding of ``classes`` (coarsest first).

    -> (parents, ancestors): ``parents[l]`` (C_{l+1},) index at level l of each level-(l+1) cell's
    parent; ``ancestors[l]`` (C_finest,) index at level l of each finest cell's ancestor, computed
    directly (not by chaining, which breaks where an intermediate parent is not a class).
    -1 where the parent / ancestor is not a class. See :meth:`H3Classes.parent_index`.
    """
    classes = list(classes)
    parents = [classes[l + 1].parent_index(classes[l], parent) for l in range(len(classes) - 1)]
    ancestors = [classes[-1].parent_index(classes[l], parent) for l in range(len(classes) - 1)]
    return parents, ancestors


def hierarchical_decode(probs: Sequence[torch.Tensor], classes: Sequence[H3Classes] | None = None,
                        mode: str = "sum", parent: str = "center", eps: float = 1e-8,
                        hierarchy: tuple | None = None) -> torch.Tensor:
    """Combine coarse-to-fine H3 classifiers (paper A.5, res 0 -> 1 -> 2) -> (B,) finest class index.

    ``probs[l]`` is (B, C_l) probabilities at level l (coarsest first) over ``classes[l]``, e.g. the
    recording-level outputs of three separately trained res-0/1/2 models. ``hierarchy`` (the
    output of :func:`h3_hierarchy`) may be given instead of ``classes`` to skip recomputing it.

    - ``mode="sum"``: score(res-2 cell) = log p2(cell) + log p1(ancestor at res 1) + log p0(ancestor
      at res 0), with ``log eps`` for an ancestor that is not a class; the best cell wins.
    - ``mode="greedy"``: the best coarse cell, then the best of its children, and so on (all cells
      of a level compete where the chosen cell has no child class).
    Ancestors are by centre containment by default (``parent="center"``; see
    :meth:`H3Classes.parent_index`), or ``parent="h3"`` for ``h3.cell_to_parent``.
    """
    if hierarchy is None:
        if classes is None or len(classes) != len(probs):
            raise ValueError(f"need one H3Classes per level ({len(probs)} levels)")
        hierarchy = h3_hierarchy(classes, parent)
    parents, ancestors = hierarchy
    dev = probs[-1].device
    logp = [p.float().clamp_min(eps).log() for p in probs]
    if mode == "sum":
        return _sum_scores(logp, ancestors, eps).argmax(-1)
    if mode == "greedy":
        choice = logp[0].argmax(-1)                                       # (B,)
        for lvl in range(1, len(logp)):
            par = torch.as_tensor(parents[lvl - 1], device=dev)
            mask = par[None] == choice[:, None]                           # (B, C_lvl) children of the choice
            mask |= ~mask.any(-1, keepdim=True)                           # no child class -> all compete
            choice = logp[lvl].masked_fill(~mask, -math.inf).argmax(-1)
        return choice
    raise ValueError(f"hierarchical_decode mode={mode!r}: expected 'sum' or 'greedy'")


def _sum_scores(logp: list, ancestors, eps: float) -> torch.Tensor:
    """Per-level (B, C_l) log probabilities -> (B, C_finest) summed log scores along each cell's ancestors."""
    score = logp[-1].clone()
    for lvl, anc in enumerate(ancestors):
        a = torch.as_tensor(anc, device=logp[-1].device)
        g = logp[lvl][:, a.clamp_min(0)]
        score += torch.where(a[None] >= 0, g, torch.full_like(g, math.log(eps)))
    return score


def hierarchical_log_posterior(probs: Sequence[torch.Tensor], classes: Sequence[H3Classes], parent: str = "center",
                               eps: float = 1e-8) -> torch.Tensor:
    """Per-level (B, C_l) probabilities -> (B, C_finest) log posterior over the finest cells.

    The ``mode="sum"`` score of :func:`hierarchical_decode` normalised over the finest cells, so its
    argmax is that decoder's choice and it can be decoded like any other posterior.
    """
    _, ancestors = h3_hierarchy(classes, parent)
    logp = [p.float().clamp_min(eps).log() for p in probs]
    return _sum_scores(logp, ancestors, eps).log_softmax(-1)


class MultiResH3Head(Head):
    """H3 classifiers at several resolutions (default 0, 1, 2) on one embedding, decoded hierarchically.

    Outputs are the concatenated logits of all levels; the loss is the mean of the levels'
    cross-entropies; targets are (B, L) class indices (``-1`` ignored). Prediction is the centre of
    the finest cell chosen by :func:`hierarchical_decode` (``mode`` ``"sum"`` or ``"greedy"``);
    ``predict_level(out, l)`` gives one level's plain argmax prediction (Table 1's single-resolution rows).
    """

    kind = "h3_multires"

    def __init__(self, in_dim: int, classes: Sequence[H3Classes], mode: str = "sum", parent: str = "center"):
        super().__init__()
        classes = sorted(classes, key=lambda c: c.res)
        self.in_dim, self.classes, self.mode, self.parent = in_dim, list(classes), mode, parent
        self.sizes = [len(c) for c in classes]
        self.fc = nn.Linear(in_dim, sum(self.sizes))
        parents, ancestors = h3_hierarchy(classes, parent)
        for lvl in range(len(classes) - 1):
            self.register_buffer(f"parent{lvl}", torch.as_tensor(parents[lvl]), persistent=False)
            self.register_buffer(f"ancestor{lvl}", torch.as_tensor(ancestors[lvl]), persistent=False)
        self.register_buffer("centers", torch.tensor(classes[-1].centers(), dtype=torch.float32), persistent=False)
        for lvl, c in enumerate(classes):
            self.register_buffer(f"centers{lvl}", torch.tensor(c.centers(), dtype=torch.float32), persistent=False)

    def config(self) -> dict:
        return {"kind": self.kind, "in_dim": self.in_dim, "mode": self.mode, "parent": self.parent,
                "classes": [c.to_dict() for c in self.classes]}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z)

    def split(self, out: torch.Tensor) -> list[torch.Tensor]:
        return list(out.split(self.sizes, dim=-1))

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(out.device, torch.long)
        parts = self.split(out.float())
        return sum(F.cross_entropy(p, target[:, i], ignore_index=-1) for i, p in enumerate(parts)) / len(parts)

    def scores(self, out: torch.Tensor) -> torch.Tensor:
        return torch.cat([p.softmax(-1) for p in self.split(out.float())], dim=-1)

    def predict_from_scores(self, scores: torch.Tensor) -> torch.Tensor:
        n = len(self.classes) - 1
        parents = [getattr(self, f"parent{lvl}") for lvl in range(n)]
        ancestors = [getattr(self, f"ancestor{lvl}") for lvl in range(n)]
        return self.centers[hierarchical_decode(self.split(scores), mode=self.mode, hierarchy=(parents, ancestors))]

    def predict_level(self, scores: torch.Tensor, level: int) -> torch.Tensor:
        """(B, sum C) probabilities -> (B, 2) centre of level ``level``'s most probable cell."""
        return getattr(self, f"centers{level}")[self.split(scores)[level].argmax(-1)]

    def targets(self, lat=None, lon=None, species=None) -> torch.Tensor:
        return torch.as_tensor(np.stack([c.encode(lat, lon) for c in self.classes], axis=1))


# --------------------------------------------------------------------------- species

class SpeciesHead(_LinearClassifier):
    """Linear -> S logits over species; cross-entropy on species indices.

    ``predict_species(out)`` -> (B, S) probabilities (for "predicted species" geolocation through
    range maps, :mod:`soundloc.ranges`). ``predict`` returns the centroid of the most probable
    species' training locations, available once ``set_centroids`` (or ``centroids=``) was given.
    """

    kind = "species"

    def __init__(self, in_dim: int, n_species: int, species: Sequence[str] | None = None, centroids=None):
        super().__init__()
        if species is not None and len(species) != n_species:
            raise ValueError(f"SpeciesHead: {len(species)} species names for n_species={n_species}")
        self.in_dim, self.n_species = in_dim, n_species
        self.species = list(species) if species is not None else None
        self.fc = nn.Linear(in_dim, n_species)
        self.register_buffer("centroids", torch.full((n_species, 2), float("nan")))
        if centroids is not None:
            self.centroids.copy_(torch.as_tensor(np.asarray(centroids, float)))

    def config(self) -> dict:
        return {"kind": self.kind, "in_dim": self.in_dim, "n_species": self.n_species, "species": self.species}

    def predict_species(self, out: torch.Tensor) -> torch.Tensor:
        """Window outputs -> (B, S) species probabilities."""
        return self.scores(out)

    def set_centroids(self, species_idx, lat, lon) -> "SpeciesHead":
        """Per-species mean training location (via unit vectors); species without data stay NaN."""
        idx = torch.as_tensor(np.asarray(species_idx, np.int64))
        xyz = latlon_to_xyz(_latlon_tensor(lat, lon).double())
        acc = torch.zeros(self.n_species, 3, dtype=torch.float64).index_add_(0, idx, xyz)
        n = torch.bincount(idx, minlength=self.n_species)
        c = xyz_to_latlon(acc).float()
        c[n == 0] = float("nan")
        self.centroids.copy_(c)
        return self

    def can_locate(self) -> bool:
        return bool((~torch.isnan(self.centroids[:, 0])).any())

    def predict_from_scores(self, scores: torch.Tensor) -> torch.Tensor:
        known = ~torch.isnan(self.centroids[:, 0])
        if not bool(known.any()):
            raise RuntimeError("SpeciesHead has no species centroids: call set_centroids(species, lat, lon) "
                               "or geolocate predict_species() probabilities with range maps (soundloc.ranges)")
        return self.centroids[scores.masked_fill(~known, -1.0).argmax(-1)]

    def targets(self, lat=None, lon=None, species=None) -> torch.Tensor:
        return torch.as_tensor(np.asarray(species, np.int64))


# Heads defined in modules above this one (they import Head from here) register themselves with register_head;
# HEAD_MODULES names the module to import when a checkpoint asks for such a kind before it was imported.
HEAD_MODULES: dict[str, str] = {"agclip": "soundloc.agclip.model"}
_HEADS: dict[str, Callable[[dict], "Head"]] = {}


def register_head(kind: str, from_config: Callable[[dict], "Head"]) -> None:
    """Make :func:`build_head` rebuild heads of ``kind`` with ``from_config(cfg)`` (a head's ``config()`` dict)."""
    _HEADS[kind] = from_config


def build_head(cfg: dict) -> Head:
    """A head from its ``config()`` dict (as stored in checkpoints)."""
    kind = cfg.get("kind")
    if kind == RegressionHead.kind:
        return RegressionHead(cfg["in_dim"], cfg["loss"])
    if kind == H3Head.kind:
        return H3Head(cfg["in_dim"], H3Classes.from_dict(cfg["classes"]))
    if kind == MultiResH3Head.kind:
        return MultiResH3Head(cfg["in_dim"], [H3Classes.from_dict(c) for c in cfg["classes"]], cfg["mode"],
                              cfg.get("parent", "center"))
    if kind == SpeciesHead.kind:
        return SpeciesHead(cfg["in_dim"], cfg["n_species"], cfg.get("species"))
    if kind not in _HEADS and kind in HEAD_MODULES:
        importlib.import_module(HEAD_MODULES[kind])  # registers the kind
    if kind in _HEADS:
        return _HEADS[kind](cfg)
    raise ValueError(f"unknown head kind {kind!r}")
