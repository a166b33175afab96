"""A trial's recipe as torch operations: optimizer, learning-rate schedule, augmentation,
and the margin it grades with (``memtail.training.trainer`` runs them)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from memtail.specification import TrainingSpec

__all__ = ["augment", "lr_factor", "margin_of", "optimizer_for"]

# onecycle: fraction of steps spent warming the learning rate up linearly.
_WARMUP = 0.2


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` of ``total``."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / total))
    if schedule == "onecycle":
        warmup = max(1, int(_WARMUP * total))
        if step < warmup:
            return (step + 1) / warmup
        # Linear decay that reaches 0 just after the last step (no wasted zero-lr step).
        return (total - step) / max(1, total - warmup)
    if schedule == "step":
        return 1.0 if step < 0.5 * total else 0.1 if step < 0.75 * total else 0.01
    raise ValueError(f"unknown schedule {schedule!r}; use constant, cosine, onecycle or step")


def optimizer_for(model: nn.Module, training: TrainingSpec, fused: bool) -> torch.optim.Optimizer:
    params = model.parameters()
    # fused: one kernel for all parameters on CUDA instead of several per group (the
    # CPU keeps the default, whose results the CPU tests pin down).
    extra = {"fused": True} if fused else {}
    if training.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=training.lr,
            momentum=training.momentum,
            nesterov=training.momentum > 0,
            weight_decay=training.weight_decay,
            **extra,
        )
    if training.optimizer == "adam":
        return torch.optim.Adam(params, lr=training.lr, weight_decay=training.weight_decay, **extra)
    if training.optimizer == "adamw":
        return torch.optim.AdamW(
            params, lr=training.lr, weight_decay=training.weight_decay, **extra
        )
    raise ValueError(f"unknown optimizer {training.optimizer!r}; use sgd, adam or adamw")


def margin_of(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per example: the true-class logit minus the largest other logit."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return true - others


def augment(x: torch.Tensor, flip: bool, crop: int, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and translations by up to ``crop`` px, per example."""
    n, c, h, w = x.shape
    if flip:
        flips = torch.rand(n, generator=generator, device=x.device) < 0.5
        x = torch.where(flips[:, None, None, None], x.flip(3), x)
    if crop > 0:
        # Reflect padding keeps translated borders looking like image content; it needs
        # the pad to be smaller than the image, so tiny images fall back to zeros (= mean).
        mode = "reflect" if crop < min(h, w) else "constant"
        padded = F.pad(x, (crop, crop, crop, crop), mode=mode)
        dy = torch.randint(0, 2 * crop + 1, (n,), generator=generator, device=x.device)
        dx = torch.randint(0, 2 * crop + 1, (n,), generator=generator, device=x.device)
        # Two gathers (columns, then rows) instead of one 2-D fancy index: gather is a
        # single fast kernel on CPU and GPU, and the separable shift is the same result.
        cols = (dx[:, None] + torch.arange(w, device=x.device)).view(n, 1, 1, w)
        padded = padded.gather(3, cols.expand(n, c, h + 2 * crop, w))
        rows = (dy[:, None] + torch.arange(h, device=x.device)).view(n, 1, h, 1)
        x = padded.gather(2, rows.expand(n, c, h, w))
    return x
