"""The device a trial runs on: which one, how a dataset's tensors sit on it, and the
precision of its forward passes."""

from __future__ import annotations

import contextlib

import torch

# Examples per forward pass when grading; only memory-bound, so larger on accelerators.
EVAL_BATCH = {"cpu": 1024, "cuda": 4096}


def resolve_device(name: str) -> torch.device:
    """``"auto"``: the first CUDA device when present, else the CPU; otherwise as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use cpu")
    return device


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``; images channels-last on CUDA, where the models run that way."""
    x = x.to(device)
    if device.type == "cuda" and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def autocast(device: torch.device) -> contextlib.AbstractContextManager[None]:
    # bf16 on CUDA halves memory traffic with no loss scaling; the CPU path stays
    # plain float32 (CPU autocast is slow for small models and changes results).
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
