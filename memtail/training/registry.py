"""Whether a spec names a dataset and a model that exist here and can be built, checked
before anything is written.

The registries are the training layer's own (``memtail.training.datasets.DATASETS`` and
``memtail.training.networks``), so the names a spec may use are decided by the code that
will load and build them, and parsing a spec (``memtail.specification``) needs no torch.
"""

from __future__ import annotations

import torch

from memtail.specification import ExperimentSpec, SpecError
from memtail.training.datasets import DATASETS, Dataset
from memtail.training.networks import build_model, count_parameters, is_known_model


def check_names(spec: ExperimentSpec) -> ExperimentSpec:
    """``spec`` itself if its dataset and model are known; SpecError naming the field if not."""
    if spec.dataset.name not in DATASETS:
        raise SpecError(
            "dataset.name",
            f"unknown dataset {spec.dataset.name!r}; choose one of {', '.join(sorted(DATASETS))}",
        )
    if not is_known_model(spec.model.name):
        raise SpecError(
            "model.name",
            f"unknown model {spec.model.name!r}; use mlp, cnn, fastnet, resnet18, resnet50 or "
            "a torchvision classification model name",
        )
    return spec


#: The largest network a trial may build: 4 GB of float32 weights, before gradients and
#: optimizer state (a ResNet-50 has 25 million).
MAX_PARAMETERS = 1_000_000_000


def check_model(spec: ExperimentSpec, dataset: Dataset) -> int:
    """Count the spec's network for ``dataset`` from its shapes, then build it the way every
    trial will, on the meta device (shapes, no memory): an unknown or malformed model
    option fails here, at create, with the trials' own error, and so does a network too
    large to train, before it is built, or augmentation of inputs that are not images.
    Its parameter count."""
    training = spec.training
    if not dataset.is_image and (training.flip or training.crop):
        # Augmentation is for images only: on vectors it would be silently skipped.
        raise SpecError(
            "training.flip" if training.flip else "training.crop",
            f"augments images, but {dataset.name} has vectors of shape {dataset.input_shape}; "
            "remove it",
        )
    model = spec.model
    parameters = count_parameters(model, dataset.input_shape, dataset.num_classes)
    if parameters is not None:
        _check_size(spec, parameters)
    with torch.device("meta"):
        built = build_model(model, dataset.input_shape, dataset.num_classes)
    if parameters is None:
        parameters = sum(p.numel() for p in built.parameters())
        _check_size(spec, parameters)
    return parameters


def _check_size(spec: ExperimentSpec, parameters: int) -> None:
    if parameters <= MAX_PARAMETERS:
        return
    deep = spec.model.name == "mlp" and spec.model.options.get("depth", 2) > 2
    raise SpecError(
        "model.depth" if deep else "model.width",
        f"gives {spec.model.name} {parameters:,} parameters for this dataset; at most "
        f"{MAX_PARAMETERS:,} fit a trial: lower it",
    )
