"""Whether a spec names a dataset and a model that exist here, checked before anything is
written.

The registries are the training layer's own (``memtail.training.datasets.DATASETS`` and
``memtail.training.networks``), so the names a spec may use are decided by the code that
will load and build them, and parsing a spec (``memtail.spec``) needs no torch.
"""

from __future__ import annotations

from memtail.spec import ExperimentSpec, SpecError
from memtail.training.datasets import DATASETS
from memtail.training.networks import is_known_model


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
