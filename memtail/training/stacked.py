"""B independent MLPs as one computation: each linear layer's weights stacked (B, in, out).

A digits MLP trial is a few hundred tiny matrix products; B of them side by side as one
``baddbmm`` each do the same arithmetic with one kernel launch and one pass of Python per
layer instead of B. The models share nothing: model b's rows only ever meet model b's
weights, so its gradients, and with them its training, are those it would have alone
(up to floating-point summation order).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["StackedMLP", "stackable"]


def stackable(model: nn.Module) -> bool:
    """Whether ``model`` is an mlp as ``memtail.training.networks`` builds it: Flatten,
    then Linear layers with a ReLU between each two."""
    if not isinstance(model, nn.Sequential) or not len(model):
        return False
    layers = list(model)
    if not isinstance(layers[0], nn.Flatten) or not isinstance(layers[-1], nn.Linear):
        return False
    for i, layer in enumerate(layers[1:]):
        expected = nn.Linear if i % 2 == 0 else nn.ReLU
        if not isinstance(layer, expected):
            return False
    return True


class StackedMLP:
    """The parameters of B mlps of one shape, and their forward pass.

    ``weights[l]`` is (B, in, out): the transpose of each model's ``nn.Linear.weight``,
    so a forward pass is ``x @ W`` without a transposed copy.
    """

    def __init__(self, models: list[nn.Module], device: torch.device) -> None:
        if not models or not all(stackable(m) for m in models):
            raise ValueError("StackedMLP takes one or more mlps (Flatten, Linear, ReLU, ...)")
        linears = [[layer for layer in m if isinstance(layer, nn.Linear)] for m in models]
        shapes = {tuple(tuple(layer.weight.shape) for layer in ls) for ls in linears}
        if len(shapes) != 1:
            raise ValueError("StackedMLP: the models differ in shape")
        self.size = len(models)
        self.weights: list[torch.Tensor] = []
        self.biases: list[torch.Tensor] = []
        for depth in range(len(linears[0])):
            w = torch.stack([ls[depth].weight.detach().t() for ls in linears])
            b = torch.stack([ls[depth].bias.detach() for ls in linears])
            self.weights.append(w.to(device).contiguous().requires_grad_(True))
            self.biases.append(b.to(device).contiguous().requires_grad_(True))

    def parameters(self) -> list[torch.Tensor]:
        """Every stacked tensor; dimension 0 of each is the model."""
        return [p for pair in zip(self.weights, self.biases, strict=True) for p in pair]

    def __call__(self, x: torch.Tensor, *, shared: bool = False) -> torch.Tensor:
        """Logits (B, rows, classes) of each model's own rows (B, rows, ...), or, when
        ``shared``, of one block of rows (rows, ...) that every model sees."""
        if shared:
            h = x.reshape(1, x.shape[0], -1).expand(self.size, -1, -1)
        else:
            h = x.reshape(self.size, x.shape[1], -1)
        last = len(self.weights) - 1
        for depth, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b.unsqueeze(1), h, w)
            if depth < last:
                h = torch.relu(h)
        return h

    def modules(self) -> list[nn.Module]:
        """Each model as its own ``nn.Sequential``, holding a copy of its trained weights."""
        built = []
        for model in range(self.size):
            layers: list[nn.Module] = [nn.Flatten()]
            for depth, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                linear = nn.Linear(w.shape[1], w.shape[2])
                with torch.no_grad():
                    linear.weight.copy_(w[model].t())
                    linear.bias.copy_(b[model])
                layers.append(linear)
                if depth < len(self.weights) - 1:
                    layers.append(nn.ReLU(inplace=True))
            built.append(nn.Sequential(*layers))
        return built
