"""Every network splits into features and head that compose back into the network."""

from __future__ import annotations

import pytest
import torch

from memtail.specification import ModelSpec
from memtail.training.networks import OWN_MODELS, build_model
from memtail.training.split import split

CASES = [
    *((name, (1, 8, 8)) for name in OWN_MODELS),  # the bundled digits' shape
    ("mlp", (5,)),
    ("resnet18", (3, 96, 96)),  # the ImageNet stem (inputs above 64 px)
    # torchvision classifiers by name, each with its own last layer's place.
    ("densenet121", (3, 32, 32)),
    ("mobilenet_v3_small", (3, 32, 32)),
    ("efficientnet_b0", (3, 32, 32)),
    ("vgg11", (3, 32, 32)),
]


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_the_head_of_the_features_is_the_model(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = build_model(ModelSpec(name=name), shape, num_classes=7).eval()
    parts = split(model)
    x = torch.randn(3, *shape)
    with torch.no_grad():
        features = parts.features(x)
        assert features.shape == (3, parts.dim)
        assert torch.allclose(parts.head(features), model(x), atol=1e-5, rtol=1e-4)
    # One set of parameters: the parts are views of the model, not copies.
    model_ids = {id(p) for p in model.parameters()}
    assert {id(p) for p in parts.head.parameters()} <= model_ids
