"""A flow-matching location head on the sphere S^2 (the AVG paper's precision stage, without its LLM).

A velocity field v(x, t | c) on the unit sphere, conditioned on an embedding c, transports a base
distribution (uniform, or a von Mises-Fisher mixture of training locations: the location prior) at
t = 0 to the locations of the data at t = 1. It is an MLP whose output is projected onto the tangent
plane at x, trained by conditional flow matching along geodesics (Riemannian flow matching, Chen &
Lipman 2024): x_t = slerp(x0, x1, t), target u_t = d x_t / dt. Sampling integrates the ODE (Euler,
RK4 or adaptive Dormand-Prince), projecting back onto the sphere after every step. The log density
at any point comes from the probability-flow ODE run backwards, d log p / dt = -div_S v, with the
exact surface divergence (three Jacobian columns: the dimension is 3). Everything runs batched on
the device of the model's parameters (CPU by default, CUDA when the model is moved there).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import paths
from .devices import resolve_device
from .io import bytes_digest, cached
from .maps import land_background
from .ranges import range_map
from .sphere import EARTH_RADIUS_KM, credible_set, to_latlon, to_xyz

SOLVERS = ("euler", "rk4", "adaptive")
LOG_4PI = math.log(4 * math.pi)


@dataclass(frozen=True)
class FlowConfig:
    cond_dim: int = 0            # size of the conditioning embedding (0: unconditional)
    cond_proj: int = 64          # the embedding is first projected to this many features
    hidden: int = 128            # width of the MLP
    depth: int = 3               # hidden layers of the MLP
    time_freqs: int = 4          # sin/cos features of t at frequencies 1..time_freqs (x pi)
    cond_dropout: float = 0.1    # input dropout on the embedding while training (regularises small data)
    base: str = "uniform"        # "uniform" on S^2, or "prior": a vMF mixture of prior points
    prior_kappa: float = 400.0   # concentration of each prior component (400: ~320 km angular std)
    epochs: int = 200            # passes over the training set
    batch_size: int = 256        # pairs per step
    lr: float = 2e-3             # AdamW learning rate (cosine decay to 10 %)
    weight_decay: float = 1e-4   # AdamW weight decay
    seed: int = 0                # initial weights, base draws and t draws

    def __post_init__(self):
        if self.base not in ("uniform", "prior"):
            raise ValueError(f"FlowConfig.base must be 'uniform' or 'prior', got {self.base!r}")
        if self.hidden < 1 or self.depth < 1 or self.epochs < 0 or self.batch_size < 1:
            raise ValueError("FlowConfig: hidden, depth, batch_size must be >= 1 and epochs >= 0")

    def digest(self) -> str:
        return hashlib.sha1(repr(sorted(asdict(self).items())).encode()).hexdigest()[:12]


# ---------------------------------------------------------------- sphere helpers (torch)
def project_tangent(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(..., 3) points on S^2, (..., 3) vectors -> (..., 3) tangent parts v - (v.x) x."""
    return v - (v * x).sum(-1, keepdim=True) * x


def normalize(x: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3) unit vectors (the projection back onto the sphere)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def slerp(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3), (B, 3) unit vectors, (B,) times in [0, 1] -> geodesic point x_t and its velocity dx_t/dt, (B, 3) each.

    x_t = [sin((1-t) th) x0 + sin(t th) x1] / sin th, th = angle(x0, x1); the velocity has norm th. Near
    th = 0 the ratios tend to (1 - t, t) (a straight line), which the clamp on sin th keeps finite.
    """
    cos = (x0 * x1).sum(-1).clamp(-1 + 1e-7, 1 - 1e-7)
    th = torch.acos(cos)[:, None]
    s = torch.sin(th).clamp_min(1e-6)
    t = t[:, None]
    a, b = torch.sin((1 - t) * th) / s, torch.sin(t * th) / s
    da, db = -th * torch.cos((1 - t) * th) / s, th * torch.cos(t * th) / s
    return a * x0 + b * x1, da * x0 + db * x1


def vmf_sample(mu: torch.Tensor, kappa: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 3) unit mean directions, concentration kappa -> (B, 3) vMF draws on S^2 (exact inverse CDF in 3-D)."""
    B, dev = len(mu), mu.device
    u = torch.rand(B, generator=generator, device=dev, dtype=mu.dtype)
    # w = cos(angle to mu): inverse CDF of p(w) ~ exp(kappa w) on [-1, 1], stable for large kappa
    w = 1 + torch.log(u + (1 - u) * math.exp(-2 * kappa)) / kappa
    phi = 2 * math.pi * torch.rand(B, generator=generator, device=dev, dtype=mu.dtype)
    a = torch.where(mu[:, :1].abs() < 0.9, torch.tensor([1.0, 0, 0], device=dev, dtype=mu.dtype),
                    torch.tensor([0, 1.0, 0], device=dev, dtype=mu.dtype))
    e1 = normalize(torch.cross(mu, a.expand_as(mu), dim=-1))
    e2 = torch.cross(mu, e1, dim=-1)
    r = torch.sqrt((1 - w * w).clamp_min(0))[:, None]
    return normalize(w[:, None] * mu + r * (torch.cos(phi)[:, None] * e1 + torch.sin(phi)[:, None] * e2))


def vmf_mixture_log_density(x: torch.Tensor, centers: torch.Tensor, kappa: float, chunk: int = 8192) -> torch.Tensor:
    """(B, 3) points, (M, 3) centres, kappa -> (B,) log density per steradian of the equal-weight vMF mixture."""
    log_c = math.log(kappa) - math.log(2 * math.pi) - math.log1p(-math.exp(-2 * kappa))  # kappa / (4 pi sinh kappa) e^kappa
    out = torch.cat([torch.logsumexp(kappa * (x[s:s + chunk] @ centers.T - 1), dim=1) for s in range(0, len(x), chunk)])
    return out + log_c - math.log(len(centers))


# ---------------------------------------------------------------- the velocity field
class VelocityField(nn.Module):
    """v(x, t | c): (B, 3) points on S^2, (B,) times, (B, C) embeddings -> (B, 3) tangent velocities."""

    def __init__(self, cfg: FlowConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.cond_proj if cfg.cond_dim else 0
        self.cond = nn.Sequential(nn.Dropout(cfg.cond_dropout), nn.Linear(cfg.cond_dim, c)) if c else None
        layers, d = [], 3 + 2 * cfg.time_freqs + c
        for _ in range(cfg.depth):
            layers += [nn.Linear(d, cfg.hidden), nn.SiLU()]
            d = cfg.hidden
        layers.append(nn.Linear(d, 3))
        self.net = nn.Sequential(*layers)
        self.register_buffer("freqs", math.pi * torch.arange(1, cfg.time_freqs + 1, dtype=torch.float32))

    def embed_condition(self, c: torch.Tensor | None) -> torch.Tensor | None:
        """(B, C) embeddings -> (B, cond_proj) features (computed once per ODE solve, not per step)."""
        return None if self.cond is None else self.cond(c)

    def forward(self, x: torch.Tensor, t: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """``h``: features from :meth:`embed_condition` (not the raw embedding)."""
        tf = t[:, None] * self.freqs
        parts = [x, torch.sin(tf), torch.cos(tf)] + ([h] if h is not None else [])
        return project_tangent(x, self.net(torch.cat(parts, dim=-1)))

    def divergence(self, x: torch.Tensor, t: torch.Tensor, h: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> ((B, 3) velocity, (B,) exact surface divergence tr(P J)), P = I - x x^T, J = dv/dx.

        Only tangential derivatives enter tr(P J) = tr(P J P), so the ambient extension of v off the
        sphere does not matter. J comes from three backward passes (one per output coordinate).
        """
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            v = self.forward(x, t, h)
            J = torch.stack([torch.autograd.grad(v[:, i].sum(), x, retain_graph=i < 2)[0] for i in range(3)], dim=1)
        tr = J.diagonal(dim1=1, dim2=2).sum(-1) - torch.einsum("bi,bij,bj->b", x, J, x)
        return v.detach(), tr.detach()


# ---------------------------------------------------------------- the head
class FlowHead:
    """A trained (or untrained) velocity field with its base distribution; all tensors on ``device``."""

    def __init__(self, cfg: FlowConfig, prior_latlon: np.ndarray | None = None, device="cpu"):
        self.cfg, self.device = cfg, resolve_device(device)
        torch.manual_seed(cfg.seed)
        self.field = VelocityField(cfg).to(self.device)
        self.prior = None
        if cfg.base == "prior":
            if prior_latlon is None or len(prior_latlon) == 0:
                raise ValueError("FlowHead: base='prior' needs prior_latlon, (M, 2) lat/lon degrees")
            self.prior = torch.as_tensor(to_xyz(prior_latlon[:, 0], prior_latlon[:, 1]), dtype=torch.float32,
                                         device=self.device)
        self.history: list[float] = []

    def to(self, device) -> "FlowHead":
        self.device = resolve_device(device)
        self.field.to(self.device)
        if self.prior is not None:
            self.prior = self.prior.to(self.device)
        return self

    # -------------------------------------------------------- base distribution
    def sample_base(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """-> (n, 3) draws of the base distribution on ``device``."""
        if self.prior is None:
            return normalize(torch.randn(n, 3, generator=generator, device=self.device))
        idx = torch.randint(len(self.prior), (n,), generator=generator, device=self.device)
        return vmf_sample(self.prior[idx], self.cfg.prior_kappa, generator)

    def base_log_density(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3) -> (B,) log base density per steradian."""
        if self.prior is None:
            return torch.full((len(x),), -LOG_4PI, device=x.device)
        return vmf_mixture_log_density(x, self.prior, self.cfg.prior_kappa)

    def _cond(self, cond, n: int) -> torch.Tensor | None:
        if self.cfg.cond_dim == 0:
            return None
        c = torch.as_tensor(cond, dtype=torch.float32, device=self.device)
        if c.ndim != 2 or c.shape[1] != self.cfg.cond_dim or len(c) != n:
            raise ValueError(f"FlowHead: conditions must be ({n}, {self.cfg.cond_dim}), got {tuple(c.shape)}")
        return c

    # -------------------------------------------------------- training
    def loss(self, x1: torch.Tensor, c: torch.Tensor | None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Conditional flow-matching loss of a batch: (B, 3) data points, (B, C) embeddings -> scalar."""
        x0 = self.sample_base(len(x1), generator)
        t = torch.rand(len(x1), generator=generator, device=self.device)
        xt, ut = slerp(x0, x1, t)
        v = self.field(xt, t, self.field.embed_condition(c))
        return ((v - ut) ** 2).sum(-1).mean()

    def fit(self, latlon: np.ndarray, cond=None, progress: bool = False) -> list[float]:
        """Train on (N, 2) lat/lon degrees with (N, C) embeddings -> per-epoch mean losses (also ``history``)."""
        cfg = self.cfg
        x = torch.as_tensor(to_xyz(latlon[:, 0], latlon[:, 1]), dtype=torch.float32, device=self.device)
        c = self._cond(cond, len(x))
        g = torch.Generator(device=self.device).manual_seed(cfg.seed)
        opt = torch.optim.AdamW(self.field.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = max(1, cfg.epochs * math.ceil(len(x) / cfg.batch_size))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / steps)))
        self.field.train()
        for _ in tqdm(range(cfg.epochs), desc="flow matching", disable=not progress, leave=False):
            order = torch.randperm(len(x), generator=g, device=self.device)
            total = 0.0
            for s in range(0, len(x), cfg.batch_size):
                i = order[s:s + cfg.batch_size]
                loss = self.loss(x[i], None if c is None else c[i], g)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(i)
            self.history.append(total / len(x))
        self.field.eval()
        return self.history

    # -------------------------------------------------------- sampling
    @torch.no_grad()
    def integrate(self, x: torch.Tensor, h: torch.Tensor | None, t0: float = 0.0, t1: float = 1.0,
                  method: str = "rk4", steps: int = 16, rtol: float = 1e-4, atol: float = 1e-5) -> torch.Tensor:
        """Transport (B, 3) points from t0 to t1 along the field -> (B, 3) points on S^2 (|x| = 1)."""
        if method not in SOLVERS:
            raise ValueError(f"unknown solver {method!r}; use one of {SOLVERS}")
        f = lambda z, t: self.field(z, torch.full((len(z),), t, device=z.device), h)  # noqa: E731
        if method == "adaptive":
            return _dopri5(f, x, t0, t1, rtol, atol, project=normalize)
        dt = (t1 - t0) / steps
        for k in range(steps):
            t = t0 + k * dt
            if method == "euler":
                x = normalize(x + dt * f(x, t))
            else:
                x = normalize(_rk4_step(f, x, t, dt))
        return x

    @torch.no_grad()
    def sample(self, cond=None, n: int = 100, method: str = "rk4", steps: int = 16, seed: int = 0,
               n_cond: int | None = None) -> torch.Tensor:
        """(R, C) embeddings -> (R, n, 3) samples on S^2 (unconditional: ``n_cond`` rows, default 1)."""
        self.field.eval()
        R = len(cond) if cond is not None else (n_cond or 1)
        c = self._cond(cond, R)
        g = torch.Generator(device=self.device).manual_seed(seed)
        x0 = self.sample_base(R * n, g)
        h = None if c is None else self.field.embed_condition(c).repeat_interleave(n, 0)
        return self.integrate(x0, h, 0.0, 1.0, method, steps).reshape(R, n, 3)

    # -------------------------------------------------------- density
    @torch.no_grad()
    def log_density(self, points: np.ndarray, cond=None, steps: int = 16, per_km2: bool = False,
                    chunk: int = 65536) -> np.ndarray:
        """(G, 2) lat/lon degrees, (R, C) embeddings -> (R, G) log density (per steradian, or per km^2).

        The probability-flow ODE from t = 1 back to 0 (RK4 on (x, log-det)): log p1(x1) = log p0(x0)
        - int_0^1 div v(x_t, t) dt. Every (condition, point) pair is one trajectory, ``chunk`` at a time.
        """
        self.field.eval()
        R = len(cond) if cond is not None else 1
        c = self._cond(cond, R)
        P = torch.as_tensor(to_xyz(points[:, 0], points[:, 1]), dtype=torch.float32, device=self.device)
        G = len(P)
        H = None if c is None else self.field.embed_condition(c)
        out = torch.empty(R * G, device=self.device)
        for s in range(0, R * G, chunk):
            idx = torch.arange(s, min(s + chunk, R * G), device=self.device)
            x, h = P[idx % G], None if H is None else H[idx // G]
            x0, div_int = self._backward_with_divergence(x, h, steps)
            out[idx] = self.base_log_density(x0) - div_int
        out = out.reshape(R, G)
        if per_km2:
            out = out - 2 * math.log(EARTH_RADIUS_KM)
        return out.cpu().numpy().astype(np.float64)

    def _backward_with_divergence(self, x: torch.Tensor, h, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3) points at t = 1 -> their t = 0 preimages and int_0^1 div v dt along each path (RK4)."""
        def f(z, t):
            v, d = self.field.divergence(z, torch.full((len(z),), t, device=z.device), h)
            return v, d

        dt = -1.0 / steps
        acc = torch.zeros(len(x), device=x.device)
        for k in range(steps):
            t = 1.0 + k * dt
            v1, d1 = f(x, t)
            v2, d2 = f(normalize(x + dt / 2 * v1), t + dt / 2)
            v3, d3 = f(normalize(x + dt / 2 * v2), t + dt / 2)
            v4, d4 = f(normalize(x + dt * v3), t + dt)
            x = normalize(x + dt / 6 * (v1 + 2 * v2 + 2 * v3 + v4))
            acc = acc - dt / 6 * (d1 + 2 * d2 + 2 * d3 + d4)  # dt < 0: integrating from 1 to 0 adds +|dt| div
        return x, acc

    # -------------------------------------------------------- point estimates
    @torch.no_grad()
    def point_estimate(self, cond=None, n: int = 256, radius_km: float = 200.0, method: str = "rk4",
                       steps: int = 16, seed: int = 0, chunk: int = 64) -> np.ndarray:
        """(R, C) embeddings -> (R, 2) lat/lon degrees: the mode of ``n`` samples, i.e. the sample with the
        most other samples within ``radius_km`` (the region-scale Bayes decision, as AG-CLIP's mass decoder)."""
        x = self.sample(cond, n, method, steps, seed)
        cos_r = math.cos(radius_km / EARTH_RADIUS_KM)
        best = torch.cat([((x[s:s + chunk] @ x[s:s + chunk].transpose(1, 2)) >= cos_r).sum(-1).argmax(-1)
                          for s in range(0, len(x), chunk)])
        mode = x[torch.arange(len(x), device=x.device), best]
        return to_latlon(mode.cpu().numpy().astype(np.float64))

    def gallery_argmax(self, points: np.ndarray, cond=None, steps: int = 16) -> np.ndarray:
        """(G, 2) gallery, (R, C) embeddings -> (R, 2) the gallery point of highest flow density."""
        return points[self.log_density(points, cond, steps).argmax(1)]

    # -------------------------------------------------------- persistence
    def state(self) -> dict:
        return {"cfg": asdict(self.cfg), "field": {k: v.cpu() for k, v in self.field.state_dict().items()},
                "history": self.history}

    def load_state(self, state: dict) -> "FlowHead":
        if state["cfg"] != asdict(self.cfg):
            raise ValueError(f"flow checkpoint made for {state['cfg']}, not {asdict(self.cfg)}")
        self.field.load_state_dict(state["field"])
        self.field.eval()
        self.history = list(state["history"])
        return self


def _rk4_step(f, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
    k1 = f(x, t)
    k2 = f(normalize(x + dt / 2 * k1), t + dt / 2)
    k3 = f(normalize(x + dt / 2 * k2), t + dt / 2)
    k4 = f(normalize(x + dt * k3), t + dt)
    return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


# Dormand-Prince 5(4) tableau
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_A = ((), (1 / 5,), (3 / 40, 9 / 40), (44 / 45, -56 / 15, 32 / 9),
         (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
         (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
         (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_DP_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


def _dopri5(f, x: torch.Tensor, t0: float, t1: float, rtol: float, atol: float, project=None,
            max_steps: int = 1000) -> torch.Tensor:
    """Adaptive Dormand-Prince 5(4), one step size for the whole batch (the max error decides) -> x at t1."""
    project = project or (lambda z: z)
    t, h = t0, (t1 - t0) / 8
    for _ in range(max_steps):
        if (t1 - t) * (t1 - t0) <= 1e-12:
            break
        h = min(h, t1 - t) if t1 > t0 else max(h, t1 - t)
        ks = []
        for i in range(7):
            z = x + h * sum(a * k for a, k in zip(_DP_A[i], ks)) if i else x
            ks.append(f(project(z) if i else z, t + _DP_C[i] * h))
        x5 = x + h * sum(b * k for b, k in zip(_DP_B5, ks))
        x4 = x + h * sum(b * k for b, k in zip(_DP_B4, ks))
        err = float((((x5 - x4) / (atol + rtol * x5.abs())) ** 2).mean(-1).sqrt().max())
        if err <= 1.0:
            t, x = t + h, project(x5)
        h = h * min(5.0, max(0.2, 0.9 * (max(err, 1e-10)) ** -0.2))
    else:
        raise RuntimeError(f"adaptive solver: no convergence in {max_steps} steps (rtol={rtol}, atol={atol})")
    return x


# ---------------------------------------------------------------- training with a disk cache
def fit_cached(cfg: FlowConfig, latlon: np.ndarray, cond=None, prior_latlon: np.ndarray | None = None,
               device="cpu", tag: str = "flow", progress: bool = False) -> tuple[FlowHead, bool]:
    """Train a FlowHead, or load it from ``data/cache/flow`` when the same config and data were seen
    -> (head, trained now). The key hashes the config, the locations, the embeddings and the prior."""
    arrays = [None if a is None else np.asarray(a, np.float32) for a in (latlon, cond, prior_latlon)]
    path = paths.cache_dir("flow") / f"{tag}-{bytes_digest(*arrays, n=16, seed=cfg.digest().encode())}.pt"
    head = FlowHead(cfg, prior_latlon, device)

    def build() -> FlowHead:
        head.fit(latlon, cond, progress)
        return head

    return cached(path, build,
                  lambda p: head.load_state(torch.load(p, map_location="cpu", weights_only=True)),
                  lambda h, tmp: torch.save(h.state(), tmp))


# ---------------------------------------------------------------- what the chapter reports
def credible_regions(log_density: np.ndarray, areas_km2: np.ndarray, true_idx: np.ndarray,
                     levels=(0.5, 0.9)) -> tuple[np.ndarray, np.ndarray]:
    """(R, G) log densities over grid cells, (G,) cell areas km^2, (R,) index of each truth's cell ->
    ((R, L) covered bool, (R, L) area km^2) of the highest-density sets (:func:`soundloc.sphere.credible_set`)."""
    ld = np.asarray(log_density, float)
    true_idx = np.asarray(true_idx, np.int64)
    if ld.ndim != 2 or ld.shape[1] != len(areas_km2) or len(true_idx) != len(ld):
        raise ValueError(f"credible_regions: log_density {ld.shape}, areas {np.shape(areas_km2)}, "
                         f"true_idx {true_idx.shape} do not fit")
    cov, area = [], []
    for lv in levels:
        keep = credible_set(ld, areas_km2, lv)
        cov.append(keep[np.arange(len(ld)), true_idx])
        area.append(keep @ np.asarray(areas_km2, float))
    return np.stack(cov, 1), np.stack(area, 1)


def range_conditions(model, species: list[list[str]], weeks, anchors: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """Species lists + weeks -> (N, A) log occurrence of the listed species (mean over the list) at ``anchors``
    ((A, 2) lat/lon degrees), from a range model (e.g. BirdNET's): a condition that generalises to species
    never seen in training. A list with no species the model knows gets log ``floor`` everywhere."""
    weeks = np.asarray(weeks, np.int64)
    if len(species) != len(weeks):
        raise ValueError(f"range_conditions: {len(species)} species lists but {len(weeks)} weeks")
    out = np.full((len(species), len(anchors)), floor, np.float64)
    for w in np.unique(weeks):
        rows = np.flatnonzero(weeks == w)
        idx = [model.match(list(species[r]))[0] for r in rows]
        uniq = np.unique(np.concatenate(idx)) if any(len(i) for i in idx) else np.zeros(0, np.int64)
        if len(uniq) == 0:
            continue
        maps = np.asarray(range_map(model, anchors, int(w), species_idx=uniq), np.float64)  # (S_sel, A)
        pos = {int(s): k for k, s in enumerate(uniq)}
        for r, i in zip(rows, idx):
            if len(i):
                out[r] = maps[[pos[int(s)] for s in i]].mean(0)
    return np.log(np.maximum(out, floor)).astype(np.float32)


def density_figure(points: np.ndarray, panels: list[list[np.ndarray]], truths: np.ndarray, row_titles: list[str],
                   col_titles: list[str], title: str):
    """Grid of maps: ``panels[r][c]`` (G,) log densities over ``points`` (G, 2), one row per clip (true location
    ``truths[r]`` marked), one column per method; colours are each panel's log density relative to its maximum."""
    import matplotlib.pyplot as plt

    R, C = len(panels), len(panels[0])
    fig, axes = plt.subplots(R, C, figsize=(6.5 * C, 3.3 * R), squeeze=False)
    for r in range(R):
        for c in range(C):
            ax, ld = axes[r, c], np.asarray(panels[r][c], float)
            land_background(ax)
            rel = np.clip(ld - ld.max(), -8, 0)  # 8 nats below the peak and lower: transparent
            keep = rel > -8
            sc = ax.scatter(points[keep, 1], points[keep, 0], c=rel[keep], s=4, cmap="magma_r", vmin=-8, vmax=0)
            ax.scatter([truths[r][1]], [truths[r][0]], marker="*", s=160, c="lime", edgecolors="k", zorder=5)
            ax.set(xlim=(-180, 180), ylim=(-60, 85), xticks=[], yticks=[], title=f"{col_titles[c]}: {row_titles[r]}")
    fig.colorbar(sc, ax=axes, shrink=0.5, label="log density - max (nats)")
    fig.suptitle(title)
    return fig
