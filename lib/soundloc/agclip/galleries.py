"""AG-CLIP's galleries (Table A1): named point sets, their cell areas, rows of a grid, the nearest point,
a vMF location prior and a small gallery's posterior."""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ..sphere import cell_areas, credible_set, h3_cells, land_grid, to_xyz, uniform_grid
from ..range_geolocation import vmf_log_density
from ..location_encoders import embed_locations, gallery_embeddings
from .model import load_location_encoder
from .retrieval import log_posterior

__all__ = ["GALLERIES", "build_gallery", "SUBGRID_OF", "GRID_STEP", "gallery_log_area", "grid_rows", "nearest_point",
           "GALLERY_ROWS", "PAPER_GALLERY", "gallery_posterior", "vmf_log_prior"]

GALLERIES = ("uniform1", "uniform0.5", "land1", "train", "train_neighbours", "val")


def build_gallery(name: str, train_latlon: np.ndarray | None = None, val_latlon: np.ndarray | None = None,
                  h3_res: int = 2) -> np.ndarray:
    """Named gallery of Table A1 -> (N, 2) lat/lon degrees.

    ``uniform1`` / ``uniform0.5`` (cell-centred grid), ``land1`` (1 deg grid on land), ``train``
    (the distinct training locations), ``train_neighbours`` (0.5 deg grid points inside H3 cells at
    ``h3_res`` that hold training data), ``val`` (the distinct validation locations).
    """
    if name == "uniform1":
        return uniform_grid(1.0)
    if name == "uniform0.5":
        return uniform_grid(0.5)
    if name == "land1":
        return land_grid(1.0)
    if name in ("train", "train_neighbours", "val"):
        src = val_latlon if name == "val" else train_latlon
        if src is None:
            raise ValueError(f"gallery {name!r} needs the {'validation' if name == 'val' else 'training'} locations")
        src = np.asarray(src, np.float64).reshape(-1, 2)
        if name != "train_neighbours":
            return np.unique(src, axis=0)
        cells = set(h3_cells(src[:, 0], src[:, 1], h3_res))
        g = uniform_grid(0.5)
        keep = np.isin(h3_cells(g[:, 0], g[:, 1], h3_res), np.array(sorted(cells), dtype=object))
        return g[keep]
    raise ValueError(f"unknown gallery {name!r}; use one of {GALLERIES}")


SUBGRID_OF = {"land1": ("uniform1", 1.0), "train_neighbours": ("uniform0.5", 0.5)}  # gallery -> (grid it is cut from, step)
GRID_STEP = {"uniform1": 1.0, "uniform0.5": 0.5, "land1": 1.0, "train_neighbours": 0.5}  # grid galleries' steps, deg


def gallery_log_area(name: str, points: np.ndarray) -> torch.Tensor | None:
    """Named gallery, its (N, 2) points -> (N,) float32 log cell areas (log km^2), or None for equal weights.

    Grid galleries (uniform, land, train neighbours) are cells of a lat/lon grid whose area shrinks towards
    the poles, so a point's mass is its density times its cell's area. The sampled galleries (training and
    validation locations) are draws of where recordings are made, not a partition of the sphere: each point
    stands for an equal share of the data, so they keep equal weights.
    """
    if name not in GRID_STEP:
        return None
    return torch.as_tensor(np.log(cell_areas(points, GRID_STEP[name])), dtype=torch.float32)


def grid_rows(points: np.ndarray, step_deg: float) -> np.ndarray:
    """(N, 2) points of ``uniform_grid(step_deg)`` -> (N,) their rows in it; ValueError for a point off the grid."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    i = np.rint((points[:, 0] + 90 - step_deg / 2) / step_deg).astype(np.int64)
    j = np.rint((points[:, 1] + 180 - step_deg / 2) / step_deg).astype(np.int64)
    n_lat, n_lon = int(round(180 / step_deg)), int(round(360 / step_deg))
    rows = i * n_lon + j
    ok = (i >= 0) & (i < n_lat) & (j >= 0) & (j < n_lon)
    if not ok.all() or not np.array_equal(uniform_grid(step_deg)[rows], points):
        raise ValueError(f"grid_rows: some points are not on the {step_deg:g} deg cell-centred grid")
    return rows


def nearest_point(points: np.ndarray, query: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """(N, 2) gallery, (Q, 2) queries (degrees) -> (Q,) index of the nearest gallery point (chunked matmul)."""
    G = torch.as_tensor(to_xyz(points[:, 0], points[:, 1]), dtype=torch.float64)
    Q = torch.as_tensor(to_xyz(query[:, 0], query[:, 1]), dtype=torch.float64)
    return torch.cat([(Q[i:i + chunk] @ G.T).argmax(1) for i in range(0, len(Q), chunk)]).numpy()



GALLERY_ROWS = {"uniform1": "Uniform 1 deg", "uniform0.5": "Uniform 0.5 deg", "land1": "Land 1 deg",
                "train": "Train", "train_neighbours": "Train neighbours", "val": "Validation"}
PAPER_GALLERY = {"uniform1": "Uniform 1 deg (65K)", "uniform0.5": "Uniform 0.5 deg (260K)", "land1": "Land 1 deg (20K)",
                 "train": "Train (137K)", "train_neighbours": "Train neighbours (43K)", "val": "Validation (45K)"}



def gallery_posterior(head, feats: torch.Tensor, points: np.ndarray, prior_weight: float = 0.0,
                      prior_points: np.ndarray | None = None, bandwidth_km: float = 200.0,
                      log_area: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """(R, E) features over a gallery (N, 2) -> (R, N) posterior masses softmax(cos / T + beta log prior + log area).

    The prior is a vMF density (``bandwidth_km``) of ``prior_points`` (e.g. the training locations).
    ``log_area`` None: the points carry equal weights, as sampled galleries (training or chorus locations)
    do, each an equal share of where recordings are made. A lat/lon grid must pass its (N,) log cell areas
    (km^2, :func:`gallery_log_area`): cos / T is a log density per km^2, so a cell's mass is density x area
    (as :func:`log_posterior` and chapter 03's decoders weigh it).
    """
    g = head.gallery_embeddings(points) if head.loc_enc is not None else embed_locations(load_location_encoder(), points)
    logits = (F.normalize(feats.float(), dim=1) @ F.normalize(g.float(), dim=1).T) / head.temperature
    if log_area is not None:
        la = torch.as_tensor(np.asarray(log_area, np.float64), dtype=torch.float32).reshape(-1)
        if la.numel() != len(points):
            raise ValueError(f"gallery_posterior: {la.numel()} log areas for {len(points)} gallery points")
        logits += la
    if prior_weight > 0:
        if prior_points is None:
            raise ValueError("gallery_posterior: prior_weight > 0 needs prior_points")
        logits += prior_weight * vmf_log_prior(points, prior_points, bandwidth_km)
    return torch.softmax(logits, dim=1)


def vmf_log_prior(points: np.ndarray, prior_points: np.ndarray, bandwidth_km: float) -> torch.Tensor:
    """Gallery (N, 2) lat/lon deg, prior points (M, 2) -> (N,) float32 log vMF density (``bandwidth_km``) of the prior points."""
    return torch.as_tensor(vmf_log_density(points, prior_points, bandwidth_km), dtype=torch.float32)


@torch.no_grad()
def grid_maps(head, feats: torch.Tensor, points: np.ndarray, name: str, step_deg: float,
              level: float = 0.9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(R, E) recording features over a lat/lon grid gallery ``name`` (N, 2) of ``step_deg`` cells -> where each
    recording belongs: (R, N) log density per km^2 (normalised over area), (R, N) bool ``level`` credible
    region (densest cells first), (R,) index of each map's densest cell."""
    g = head.gallery_embeddings(points) if head.loc_enc is not None else gallery_embeddings(
        points, name, encoder=load_location_encoder())
    areas = cell_areas(points, step_deg)
    mass = log_posterior(feats, g, 1.0 / head.temperature, log_area=torch.as_tensor(np.log(areas))).numpy()
    log_density = mass - np.log(areas)
    return log_density, credible_set(log_density, areas, level), log_density.argmax(1)
