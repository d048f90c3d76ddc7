"""Device choice, one rule everywhere: GPU when asked for or available, never a hard-coded "cuda"."""
from __future__ import annotations

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
