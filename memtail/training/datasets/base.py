"""The in-memory dataset every trial trains on, its error type, and option parsing.

A :class:`Dataset` is the whole train and test set as CPU tensors, loaded once per worker
process and moved to the device once by the trainer. Subset trials then index it
(``x_train[mask]``), so no loader ever runs inside the training loop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from memtail.records import ExampleSet
from memtail.specification import MAX_SEED, DatasetSpec, shown

#: Class labels are indexes 0..C-1 with C at most this: a trial's output layer has C units.
MAX_CLASSES = 100_000
#: Input values (examples x values per example) a split may hold: the whole split lives in
#: memory as float32, on the CPU and again on the device, so 10^9 of them are 4 GB twice.
MAX_VALUES = 1_000_000_000


class DatasetError(ValueError):
    """A dataset cannot be loaded as specified; the message names the field and the fix."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"spec field '{field_name}': {problem}")
        self.field_name = field_name


# eq=False: tensors do not compare to a single bool, and identity is what callers need.
@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled train/test split held in memory.

    ``x`` is float32: images as (N, C, H, W) normalized per channel, vectors as (N, D).
    ``y`` is int64 in ``[0, num_classes)``. Sources name where each example came from (a
    file path or ``"<dataset>:<index>"``); attributes are per-example facts (for example a
    synthetic example's subpopulation) stored alongside the estimates.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    train_sources: list[str] | None = None
    test_sources: list[str] | None = None
    train_attributes: list[dict[str, Any]] | None = None
    test_attributes: list[dict[str, Any]] | None = None

    def example_set(self) -> ExampleSet:
        """What the database keeps of it: labels and provenance per example."""
        return ExampleSet(
            train_labels=self.y_train.numpy(),
            test_labels=self.y_test.numpy(),
            train_sources=self.train_sources,
            test_sources=self.test_sources,
            train_attributes=self.train_attributes,
        )

    def __post_init__(self) -> None:
        # Loaders are ours, so a violation here is a bug rather than a user error.
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != torch.float32 or y.dtype != torch.int64:
                raise TypeError(f"{split}: x must be float32 and y int64")
            if x.ndim not in (2, 4) or y.ndim != 1 or len(x) != len(y):
                raise ValueError(f"{split}: need x (N, D) or (N, C, H, W) and y (N,)")
            for extra in ("sources", "attributes"):
                values = getattr(self, f"{split}_{extra}")
                if values is not None and len(values) != len(y):
                    raise ValueError(f"{split}_{extra} has {len(values)} entries for {len(y)}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError("train and test inputs differ in shape")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example: (C, H, W) for images, (D,) for vectors."""
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    @property
    def is_image(self) -> bool:
        return self.x_train.ndim == 4


_KIND = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def parse_options(spec: DatasetSpec, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``spec.options`` over ``defaults``; unknown keys and wrong types raise DatasetError.

    A default of ``None`` accepts a string (paths); otherwise the default's type is the
    option's type, with ints accepted where a float is expected.
    """
    values = dict(defaults)
    for key, value in spec.options.items():
        field_name = f"dataset.{key}"
        if key not in defaults:
            valid = ", ".join(sorted(defaults)) or "none"
            raise DatasetError(
                field_name, f"unknown option for dataset {spec.name!r}; valid options: {valid}"
            )
        expected = type(defaults[key]) if defaults[key] is not None else str
        ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            # An int beyond a float's range (TOML reads 10**400) is as unusable as inf.
            value, ok = (float(value) if abs(value) < 2**1024 else math.inf), True
        if not ok:
            raise DatasetError(field_name, f"must be {_KIND[expected]}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise DatasetError(field_name, f"must be a finite number, got {value!r}")
        values[key] = value
    return values


def check_bound(field_name: str, value: float, low: float, high: float, why: str) -> None:
    """``low <= value <= high``, or DatasetError with the bound and ``why`` it is there:
    sizes are checked before anything is allocated from them."""
    if not low <= value <= high:
        raise DatasetError(
            field_name, f"must be in [{low:,}, {high:,}] (got {shown(value)}); {why}"
        )


def check_seed(opts: Mapping[str, Any]) -> int:
    """The ``seed`` option, as numpy's SeedSequence takes it: the experiment seed's range."""
    check_bound("dataset.seed", opts["seed"], 0, MAX_SEED, "seeds are non-negative integers")
    return int(opts["seed"])


def standardize(
    x_train: np.ndarray, x_test: np.ndarray, mean: Any = None, std: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalize per channel (images) or per feature (vectors) as float32 tensors.

    ``mean``/``std`` are the standard published constants where they exist; otherwise they
    come from the training split only, so test data never leaks into preprocessing.
    """
    x_train = np.asarray(x_train, dtype=np.float32)
    x_test = np.asarray(x_test, dtype=np.float32)
    axes = (0, 2, 3) if x_train.ndim == 4 else (0,)
    if mean is None:
        mean = x_train.mean(axis=axes, dtype=np.float64)
        std = x_train.std(axis=axes, dtype=np.float64)
    shape = (1, -1, 1, 1) if x_train.ndim == 4 else (1, -1)
    mean = np.asarray(mean, dtype=np.float32).reshape(shape)
    std = np.asarray(std, dtype=np.float32).reshape(shape)
    # A constant channel/feature carries no information; leave it at 0 rather than NaN.
    std = np.where(std > 1e-8, std, np.float32(1.0))
    train = torch.from_numpy(np.ascontiguousarray((x_train - mean) / std))
    test = torch.from_numpy(np.ascontiguousarray((x_test - mean) / std))
    return train, test


def labels(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
