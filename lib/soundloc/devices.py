"""Device choice, one rule everywhere: GPU when asked for or available, never a hard-coded "cuda"."""
from __future__ import annotations

import contextlib
import os

import torch


def resolve_device(device=None, default: str = "auto") -> torch.device:
    """None (-> ``default``) | "auto" | "cpu" | "cuda[:N]" | torch.device -> torch.device.

    "auto" is CUDA when available, else the CPU; asking for CUDA on a machine without it is an error.
    """
    if isinstance(device, torch.device):
        dev = device
    else:
        name = default if device is None else str(device)
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r} requested but no CUDA device is available")
    return dev


def native_bf16(device=None) -> bool:
    """Whether bfloat16 matrix products run in hardware on ``device`` (resolved as above): a CUDA GPU with
    bf16, or a CPU with AVX512-BF16 or AMX (elsewhere torch emulates them, slower than float32).
    ``SOUNDLOC_BF16=0`` in the environment answers False everywhere (float32 runs, e.g. to compare)."""
    flag = os.environ.get("SOUNDLOC_BF16", "").strip().lower()
    if flag in ("0", "off", "false", "no"):
        return False
    if flag not in ("", "1", "on", "true", "yes", "auto"):
        raise ValueError(f"SOUNDLOC_BF16={flag!r}: use 0 (float32 everywhere) or leave it unset (bf16 where native)")
    dev = resolve_device(device)
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if dev.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's capability probes (private)
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def cpu_threads() -> int:
    """Threads a CPU interpreter (BirdNET's TFLite models) may use: ``SOUNDLOC_TORCH_THREADS``, else
    ``OMP_NUM_THREADS``, else the usable cores.

    The book runner, the notebook tests and batch workers set ``OMP_NUM_THREADS`` per process to their share
    of the cores; an interpreter taking every core beside them oversubscribes the CPU, and its spinning
    threads slow both (``bench/bench_detect_threads.py``).
    """
    for var in ("SOUNDLOC_TORCH_THREADS", "OMP_NUM_THREADS"):
        v = os.environ.get(var, "").strip()
        if v:
            try:
                n = int(v)
            except ValueError:
                raise ValueError(f"{var}={v!r}: expected a whole number of threads") from None
            if n < 1:
                raise ValueError(f"{var}={v!r}: expected at least 1 thread")
            return n
    return usable_cores()


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# CPU thread policy: on the CPU torch runs with one intra-op thread by default (SOUNDLOC_TORCH_THREADS overrides)
@contextlib.contextmanager
def torch_threads(device="cpu", n: int | None = None):
    """Run the block with ``n`` torch intra-op threads on the CPU (default ``SOUNDLOC_TORCH_THREADS`` or 1).

    On a GPU nothing changes. One thread is the default because on a few shared, busy cores torch's
    OpenMP threads spin-wait on each other and run slower than a single thread for these small convolutions.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    n = int(os.environ.get("SOUNDLOC_TORCH_THREADS", "1")) if n is None else int(n)
    prev = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(prev)

