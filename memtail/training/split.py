"""Every network as features then head: the representation, and the last layer on it.

Feldman & Zhang ask where a network memorizes: in its deep representation, or only in
its last layer. Their probe trains a linear classifier on fixed features, the input of
the network's last linear layer. ``split`` cuts any model ``build_model`` makes there:
``head(features(x))`` is the model's output ``model(x)``, so the features of a trained
model are exactly what its own last layer saw.

* An ``nn.Sequential`` (mlp, cnn, fastnet) is cut before its last ``nn.Linear``; what
  follows that layer (fastnet's output scale) stays in the head.
* Any other model (the ResNets, torchvision classifiers by name) is cut at the input of
  its last ``nn.Linear`` module (``fc``, ``classifier``, ``heads.head``), read with a
  forward hook; the head is that layer. Models that compute after their last linear
  layer are refused: their logits are no linear function of any features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class SplitError(ValueError):
    """The model has no last linear layer to cut at; the message names it."""


@dataclass(frozen=True)
class Split:
    features: nn.Module  # inputs -> (N, dim) features
    head: nn.Module  # (N, dim) features -> logits
    dim: int


class _InputOf(nn.Module):
    """Runs the whole model and returns what ``layer`` received, flattened per example."""

    def __init__(self, model: nn.Module, layer: nn.Linear) -> None:
        super().__init__()
        self.model = model
        self._layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seen: list[torch.Tensor] = []
        handle = self._layer.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        try:
            self.model(x)
        finally:
            handle.remove()
        return seen[-1].flatten(1)


def split(model: nn.Module) -> Split:
    """``model`` as features and head, sharing its parameters (no copy)."""
    if isinstance(model, nn.Sequential):
        cut = max((i for i, m in enumerate(model) if isinstance(m, nn.Linear)), default=None)
        if cut is None:
            raise SplitError(f"{type(model).__name__} has no linear layer to cut before")
        layer = model[cut]
        return Split(nn.Sequential(*model[:cut], nn.Flatten()), nn.Sequential(*model[cut:]),
                     layer.in_features)  # fmt: skip
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise SplitError(f"{type(model).__name__} has no linear layer to cut before")
    layer = linears[-1]
    return Split(_InputOf(model, layer), layer, layer.in_features)
