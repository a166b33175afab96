"""Optimizer steps over stacked parameters, each model with its own learning rate.

torch's SGD, Adam and AdamW are element-wise: each element's update depends only on its
own gradient and state. Applied to a stacked tensor (dimension 0: the model) they are B
optimizers at once, except for the learning rate, which differs between models whose
schedules run at different lengths (subsets of different sizes). So the updates are
written out here, as torch documents them for its single-tensor implementation, with the
learning rate a (B, 1, ...) tensor. A model whose training has ended gets learning rate
0 and, under SGD and AdamW's decoupled decay, stays exactly as it was.
"""

from __future__ import annotations

import torch

from memtail.specification import TrainingSpec

__all__ = ["StackedOptimizer"]

# torch.optim.Adam's defaults, which the single-trial path uses.
_BETAS = (0.9, 0.999)
_EPS = 1e-8


class StackedOptimizer:
    """SGD (Nesterov when momentum > 0), Adam or AdamW over stacked parameters."""

    def __init__(self, params: list[torch.Tensor], training: TrainingSpec) -> None:
        if training.optimizer not in ("sgd", "adam", "adamw"):
            raise ValueError(f"unknown optimizer {training.optimizer!r}; use sgd, adam or adamw")
        self.params = params
        self.kind = training.optimizer
        self.momentum = training.momentum
        self.decay = training.weight_decay
        self._state: list[dict[str, torch.Tensor]] = [{} for _ in params]
        # Steps taken by each model, for Adam's bias correction (models step together).
        self._steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One update; ``lr`` is (B,), the learning rate of each model."""
        self._steps += 1
        for p, state in zip(self.params, self._state, strict=True):
            if p.grad is None:
                continue
            rate = lr.view(-1, *([1] * (p.ndim - 1))).to(p.dtype)
            if self.kind == "sgd":
                self._sgd(p, p.grad, state, rate)
            else:
                self._adam(p, p.grad, state, rate)

    def _sgd(
        self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, torch.Tensor], lr: torch.Tensor
    ) -> None:
        # In place, on the gradient the backward pass just made: B models' parameters
        # outgrow the caches, so each pass over them is paid in memory bandwidth.
        if self.decay:
            grad.add_(p, alpha=self.decay)
        if self.momentum:
            if "buf" not in state:
                state["buf"] = grad.clone()
            else:
                state["buf"].mul_(self.momentum).add_(grad)
            grad.add_(state["buf"], alpha=self.momentum)  # Nesterov
        p.addcmul_(lr, grad, value=-1)

    def _adam(
        self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, torch.Tensor], lr: torch.Tensor
    ) -> None:
        beta1, beta2 = _BETAS
        if self.kind == "adamw":
            p.mul_(1 - lr * self.decay)
        elif self.decay:
            grad.add_(p, alpha=self.decay)
        if "m" not in state:
            state["m"] = torch.zeros_like(p)
            state["v"] = torch.zeros_like(p)
        m, v = state["m"], state["v"]
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        correction1 = 1 - beta1**self._steps
        correction2 = 1 - beta2**self._steps
        denom = v.sqrt().div_(correction2**0.5).add_(_EPS)
        p.addcdiv_(m * (lr / correction1), denom, value=-1)
