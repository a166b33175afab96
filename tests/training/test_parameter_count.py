"""The parameter count a spec's network is refused by is read from its layers' shapes, and
equals what torch counts on the network as built, for every network with such a count."""

from __future__ import annotations

import pytest
import torch

from memtail.specification import ModelSpec
from memtail.training.networks import ModelError, build_model, count_parameters

MLPS = [
    ("mlp", shape, width, options)
    for shape in [(7,), (1, 8, 8), (3, 5, 4)]
    for width in (0, 3, 17)
    for options in ({}, {"depth": 0}, {"depth": 1}, {"depth": 5})
]
CONVS = [
    (name, shape, width, {})
    for name in ("cnn", "fastnet")
    for shape in [(1, 8, 8), (3, 32, 32), (2, 9, 12)]
    for width in (0, 3, 17)
]
# Up to 64 px the CIFAR stem (3x3), beyond it torchvision's 7x7, for any channels.
RESNETS = [
    (name, shape, 0, {})
    for name in ("resnet18", "resnet50")
    for shape in [(3, 32, 32), (1, 28, 28), (3, 65, 65), (2, 70, 70)]
]


@pytest.mark.parametrize(("name", "shape", "width", "options"), MLPS + CONVS + RESNETS)
@pytest.mark.parametrize("classes", [2, 10])
def test_the_count_equals_the_built_networks(
    name: str, shape: tuple[int, ...], width: int, options: dict, classes: int
) -> None:
    spec = ModelSpec(name, width, options)
    with torch.device("meta"):
        model = build_model(spec, shape, classes)
    assert count_parameters(spec, shape, classes) == sum(p.numel() for p in model.parameters())


def test_the_count_checks_what_building_checks() -> None:
    with pytest.raises(ModelError, match="'model.depth': must be in"):
        count_parameters(ModelSpec("mlp", 0, {"depth": 10**6}), (4,), 2)
    with pytest.raises(ModelError, match="'model.depht': unknown option"):
        count_parameters(ModelSpec("mlp", 0, {"depht": 3}), (4,), 2)
    with pytest.raises(ModelError, match="cnn needs images"):
        count_parameters(ModelSpec("cnn"), (4,), 2)
    with pytest.raises(ModelError, match="fastnet needs images of at least 8x8"):
        count_parameters(ModelSpec("fastnet"), (1, 4, 4), 2)
    with pytest.raises(ModelError, match="'model.width': resnet18 has fixed widths"):
        count_parameters(ModelSpec("resnet18", 8), (3, 32, 32), 2)
    # Other torchvision models have fixed sizes: they are built to be counted.
    assert count_parameters(ModelSpec("densenet121"), (3, 32, 32), 2) is None
