"""Model builders by name: ``build_model(spec, input_shape, num_classes)``.

* ``mlp``: flatten, ``depth`` hidden ReLU layers of ``width`` units (default 256, 2);
  works on any input.
* ``cnn``: three conv-BN-ReLU blocks of ``width``, 2x, 4x channels (default 32), max-pooled
  while the feature map is at least 4 px, then global average pooling and a linear layer;
  fits 8x8 digits, 28x28 MNIST and 32x32 CIFAR alike.
* ``fastnet``: an airbench-style network (Jordan, "94% on CIFAR-10 in 3.29 seconds"):
  conv stem, three blocks of two conv-BN-GELU with max pooling (``width``, 4x, 4x;
  default 64), global max pooling and a bias-free linear head scaled down (``scale``,
  default 1/9) so initial logits are small. Any H, W >= 8.
* ``resnet18``, ``resnet50``: torchvision's, randomly initialized; inputs up to 64 px get
  the CIFAR stem (3x3 conv, stride 1, no max pool) so small images are not downsampled 4x
  before the first block.
* any other torchvision classification model name, e.g. ``densenet121``.

Inputs with other than 3 channels get a first convolution with the right ``in_channels``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from memtail.specification import ModelSpec, shown

__all__ = ["ModelError", "build_model", "count_parameters", "is_known_model"]

OWN_MODELS = ("mlp", "cnn", "fastnet", "resnet18", "resnet50")


class ModelError(ValueError):
    """A model cannot be built as specified; the message names the field and the fix."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"spec field '{field_name}': {problem}")
        self.field_name = field_name


@functools.cache
def _torchvision_models() -> frozenset[str]:
    import torchvision

    # module= restricts the list to image classifiers (no detection/segmentation/video).
    return frozenset(torchvision.models.list_models(module=torchvision.models))


def is_known_model(name: str) -> bool:
    """True for memtail's own models and torchvision classification models."""
    return name in OWN_MODELS or name in _torchvision_models()


def _options(spec: ModelSpec, defaults: dict[str, Any]) -> dict[str, Any]:
    values = dict(defaults)
    for key, value in spec.options.items():
        if key not in defaults:
            valid = ", ".join(sorted(defaults)) or "none"
            raise ModelError(
                f"model.{key}", f"unknown option for model {spec.name!r}; valid options: {valid}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ModelError(f"model.{key}", f"must be a number, got {value!r}")
        if isinstance(defaults[key], int) and not isinstance(value, int):
            raise ModelError(f"model.{key}", f"must be an integer, got {value!r}")
        values[key] = value
    return values


def _image_channels(spec: ModelSpec, input_shape: tuple[int, ...], min_size: int = 1) -> int:
    if len(input_shape) != 3:
        raise ModelError(
            "model.name",
            f"{spec.name} needs images (C, H, W) but the dataset has inputs of shape "
            f"{input_shape}; use mlp for vector data",
        )
    if min(input_shape[1:]) < min_size:
        raise ModelError(
            "model.name",
            f"{spec.name} needs images of at least {min_size}x{min_size} px, got "
            f"{input_shape[1]}x{input_shape[2]}; use cnn or mlp",
        )
    return input_shape[0]


#: The deepest mlp: plain ReLU stacks much deeper than this do not train without residual
#: connections, and each layer is a module a trial builds and calls on every batch.
MAX_DEPTH = 1_000


def _mlp_depth(spec: ModelSpec) -> int:
    depth = _options(spec, {"depth": 2})["depth"]
    if not 0 <= depth <= MAX_DEPTH:
        raise ModelError(
            "model.depth",
            f"must be in [0, {MAX_DEPTH:,}] (got {shown(depth)}); plain ReLU stacks much deeper "
            "do not train",
        )
    return depth


def _mlp(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    depth = _mlp_depth(spec)
    width = spec.width or 256
    features = 1
    for size in input_shape:
        features *= size
    layers: list[nn.Module] = [nn.Flatten()]
    for _ in range(depth):
        layers += [nn.Linear(features, width), nn.ReLU(inplace=True)]
        features = width
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


def _conv_bn(cin: int, cout: int, act: type[nn.Module]) -> list[nn.Module]:
    # No conv bias: batch norm's shift replaces it.
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), act()]


def _cnn(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    _options(spec, {})
    channels = _image_channels(spec, input_shape)
    width = spec.width or 32
    size = min(input_shape[1:])
    layers: list[nn.Module] = []
    for cout in (width, 2 * width, 4 * width):
        layers += _conv_bn(channels, cout, nn.ReLU)
        channels = cout
        if size >= 4:  # keep at least 2x2 for the last block to see some structure
            layers.append(nn.MaxPool2d(2))
            size //= 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def _fastnet(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    scale = _options(spec, {"scale": 1 / 9})["scale"]
    channels = _image_channels(spec, input_shape, min_size=8)
    base = spec.width or 64
    stem = max(base // 2, 8)
    layers: list[nn.Module] = _conv_bn(channels, stem, nn.GELU)
    channels = stem
    size = min(input_shape[1:])
    for cout in (base, 4 * base, 4 * base):
        layers.append(nn.Conv2d(channels, cout, 3, padding=1, bias=False))
        # Pool before normalizing, as airbench does: the BN then sees the pooled statistics
        # and the block's second conv runs at the lower resolution (4x cheaper).
        if size >= 2:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        layers += [nn.BatchNorm2d(cout), nn.GELU()]
        layers += _conv_bn(cout, cout, nn.GELU)
        channels = cout
    layers += [
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, num_classes, bias=False),
        _Scale(scale),
    ]
    return nn.Sequential(*layers)


def _replace_first_conv(model: nn.Module, in_channels: int, **conv: Any) -> None:
    """Swap the first Conv2d for one taking ``in_channels`` (and optionally new geometry)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.in_channels == in_channels and not conv:
                return
            settings = {
                "kernel_size": module.kernel_size,
                "stride": module.stride,
                "padding": module.padding,
                "bias": module.bias is not None,
                **conv,
            }
            new = nn.Conv2d(in_channels, module.out_channels, **settings)
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
            return
    raise ModelError("model.name", "found no Conv2d to adapt to the input channels")


def _resnet(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    import torchvision

    _options(spec, {})
    if spec.width:
        raise ModelError("model.width", f"{spec.name} has fixed widths; set width = 0")
    channels = _image_channels(spec, input_shape)
    model = getattr(torchvision.models, spec.name)(weights=None, num_classes=num_classes)
    if max(input_shape[1:]) <= 64:
        _replace_first_conv(model, channels, kernel_size=3, stride=1, padding=1)
        model.maxpool = nn.Identity()
    else:
        _replace_first_conv(model, channels)
    return model


def _torchvision(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    import torchvision

    _options(spec, {})
    if spec.width:
        raise ModelError("model.width", f"{spec.name} has fixed widths; set width = 0")
    channels = _image_channels(spec, input_shape)
    # Auxiliary heads make training-mode outputs tuples; memtail trains on the main head.
    extra = {"aux_logits": False} if spec.name in ("googlenet", "inception_v3") else {}
    try:
        model = torchvision.models.get_model(
            spec.name, weights=None, num_classes=num_classes, **extra
        )
    except (TypeError, ValueError) as error:
        raise ModelError("model.name", f"cannot build {spec.name}: {error}") from None
    _replace_first_conv(model, channels)
    return model


# torchvision's ResNets without their first convolution and their classifier, which
# depend on the input's channels and the classes: (parameters, classifier inputs).
_RESNET_BODY = {"resnet18": (11_167_104, 512), "resnet50": (23_498_624, 2048)}


def count_parameters(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> int | None:
    """The parameters ``build_model`` gives the network, from its layers' shapes alone, so
    that one too large to train is refused without being built (an mlp of depth 10^6 takes
    minutes to build, even on the meta device). It checks the options as building does.
    None for torchvision's other models, whose fixed sizes are quick to build and count."""
    input_shape = tuple(int(s) for s in input_shape)
    width, classes = spec.width, num_classes
    if spec.name == "mlp":
        depth, width = _mlp_depth(spec), width or 256
        features = math.prod(input_shape)
        if not depth:
            return (features + 1) * classes
        hidden = (features + 1) * width + (depth - 1) * (width + 1) * width
        return hidden + (width + 1) * classes
    if spec.name == "cnn":
        _options(spec, {})
        channels, width = _image_channels(spec, input_shape), width or 32
        convs = channels * width + width * 2 * width + 2 * width * 4 * width
        return 9 * convs + 2 * 7 * width + (4 * width + 1) * classes
    if spec.name == "fastnet":
        _options(spec, {"scale": 1 / 9})
        channels, base = _image_channels(spec, input_shape, min_size=8), width or 64
        stem = max(base // 2, 8)
        total = 9 * channels * stem + 2 * stem
        for cin, cout in ((stem, base), (base, 4 * base), (4 * base, 4 * base)):
            total += 9 * (cin * cout + cout * cout) + 4 * cout
        return total + 4 * base * classes
    if spec.name in _RESNET_BODY:
        _options(spec, {})
        if width:
            raise ModelError("model.width", f"{spec.name} has fixed widths; set width = 0")
        channels = _image_channels(spec, input_shape)
        body, features = _RESNET_BODY[spec.name]
        kernel = 3 if max(input_shape[1:]) <= 64 else 7
        return body + channels * 64 * kernel**2 + (features + 1) * classes
    return None


_BUILDERS: dict[str, Callable[[ModelSpec, tuple[int, ...], int], nn.Module]] = {
    "mlp": _mlp,
    "cnn": _cnn,
    "fastnet": _fastnet,
    "resnet18": _resnet,
    "resnet50": _resnet,
}


def build_model(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A freshly initialized model (torch's global RNG) mapping inputs to class logits."""
    input_shape = tuple(int(s) for s in input_shape)
    if spec.width < 0:
        raise ModelError("model.width", f"must be >= 0, got {spec.width}")
    builder = _BUILDERS.get(spec.name)
    if builder is None:
        if spec.name not in _torchvision_models():
            raise ModelError(
                "model.name",
                f"unknown model {spec.name!r}; use mlp, cnn, fastnet, resnet18, resnet50 or "
                "a torchvision classification model name",
            )
        builder = _torchvision
    return builder(spec, input_shape, num_classes)
