"""Datasets by name: ``load_dataset(spec, data_root)`` returns the whole split in memory.

Registered names (``DATASETS``): ``synthetic-longtail`` (Feldman's long-tail mixture,
generated), ``digits`` (scikit-learn's bundled 8x8 digits), ``mnist``, ``fashion-mnist``,
``cifar10``, ``cifar100`` (torchvision, under ``<data_root>/<name>``), ``imagefolder`` and
``npz`` (your own data). Each loader is ``(spec, data_root, download) -> Dataset`` and
checks its own ``spec.options``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from memtail.specification import DatasetSpec
from memtail.training.datasets.arrays import load_npz
from memtail.training.datasets.base import Dataset, DatasetError
from memtail.training.datasets.images import load_digits, load_imagefolder, load_torchvision
from memtail.training.datasets.synthetic import load_synthetic_longtail

__all__ = ["DATASETS", "Dataset", "DatasetError", "Loader", "load_dataset"]

Loader = Callable[[DatasetSpec, Path, bool], Dataset]

DATASETS: dict[str, Loader] = {
    "synthetic-longtail": load_synthetic_longtail,
    "digits": load_digits,
    "mnist": load_torchvision,
    "fashion-mnist": load_torchvision,
    "cifar10": load_torchvision,
    "cifar100": load_torchvision,
    "imagefolder": load_imagefolder,
    "npz": load_npz,
}


def load_dataset(spec: DatasetSpec, data_root: str | Path, download: bool = False) -> Dataset:
    """Load ``spec.name`` with its options; user-fixable problems raise DatasetError.

    ``download`` lets torchvision datasets fetch missing files into ``data_root``.
    """
    loader = DATASETS.get(spec.name)
    if loader is None:
        raise DatasetError(
            "dataset.name",
            f"unknown dataset {spec.name!r}; choose one of {', '.join(sorted(DATASETS))}",
        )
    return loader(spec, Path(data_root), download)
