"""Model builders: every model builds and runs on the input shapes it claims to support."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from memtail.specification import ModelSpec
from memtail.training.networks import ModelError, build_model, is_known_model

DIGITS, MNIST, CIFAR = (1, 8, 8), (1, 28, 28), (3, 32, 32)


def forward(model: nn.Module, shape: tuple[int, ...], n: int = 2) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(n, *shape))


def test_known_models() -> None:
    for name in ("mlp", "cnn", "fastnet", "resnet18", "resnet50", "densenet121", "vit_b_16"):
        assert is_known_model(name), name
    # Detection models and typos are not classifiers we can train.
    for name in ("fasterrcnn_resnet50_fpn", "resnet", "", "MLP"):
        assert not is_known_model(name), name


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("mlp", (32,)),
        ("mlp", DIGITS),
        ("mlp", CIFAR),
        ("cnn", DIGITS),
        ("cnn", MNIST),
        ("cnn", CIFAR),
        ("fastnet", DIGITS),
        ("fastnet", MNIST),
        ("fastnet", CIFAR),
        ("resnet18", DIGITS),
        ("resnet18", MNIST),
        ("resnet18", CIFAR),
        ("mobilenet_v3_small", CIFAR),
        ("mobilenet_v3_small", MNIST),
    ],
)
def test_models_forward(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = build_model(ModelSpec(name), shape, 7)
    assert forward(model, shape).shape == (2, 7)
    # Batch norm in training mode needs more than one value per channel; two images must do.
    model.train()
    logits = model(torch.randn(2, *shape))
    logits.sum().backward()


def test_resnet50_tiny_forward() -> None:
    model = build_model(ModelSpec("resnet50"), CIFAR, 100)
    assert forward(model, CIFAR).shape == (2, 100)


def test_resnet_small_inputs_get_cifar_stem() -> None:
    model = build_model(ModelSpec("resnet18"), DIGITS, 10)
    assert model.conv1.in_channels == 1 and model.conv1.kernel_size == (3, 3)
    assert model.conv1.stride == (1, 1) and isinstance(model.maxpool, nn.Identity)
    large = build_model(ModelSpec("resnet18"), (1, 96, 96), 10)
    assert large.conv1.in_channels == 1 and large.conv1.kernel_size == (7, 7)
    assert isinstance(large.maxpool, nn.MaxPool2d)


def test_width_and_options() -> None:
    mlp = build_model(ModelSpec("mlp", width=64, options={"depth": 3}), (10,), 4)
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [64, 64, 64, 4]
    cnn = build_model(ModelSpec("cnn", width=8), DIGITS, 10)
    convs = [m.out_channels for m in cnn.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [8, 16, 32]
    fast = build_model(ModelSpec("fastnet", width=16, options={"scale": 0.5}), CIFAR, 10)
    assert forward(fast, CIFAR).shape == (2, 10)


def test_model_errors_name_the_field() -> None:
    with pytest.raises(ModelError, match="'model.name': cnn needs images.*use mlp"):
        build_model(ModelSpec("cnn"), (32,), 10)
    with pytest.raises(ModelError, match="'model.depth': unknown option for model 'cnn'"):
        build_model(ModelSpec("cnn", options={"depth": 2}), DIGITS, 10)
    with pytest.raises(ModelError, match="'model.depth': must be an integer"):
        build_model(ModelSpec("mlp", options={"depth": 1.5}), DIGITS, 10)
    with pytest.raises(ModelError, match="'model.width': resnet18 has fixed widths"):
        build_model(ModelSpec("resnet18", width=32), CIFAR, 10)
    with pytest.raises(ModelError, match="'model.name': unknown model 'nope'"):
        build_model(ModelSpec("nope"), CIFAR, 10)
    with pytest.raises(ModelError, match="at least 8x8"):
        build_model(ModelSpec("fastnet"), (3, 4, 4), 10)
