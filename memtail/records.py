"""The records the layers pass each other: an experiment, the examples it keeps, a claim.

Plain frozen values, below storage and training alike: ``memtail.store`` reads and writes
them, ``memtail.training`` makes an ``ExampleSet`` of a loaded dataset, and the work
above passes them on, so that none of these needs the others to know what an experiment
is (as optuna keeps its frozen trial records apart from its storages).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from memtail.specification import ExperimentKind, ExperimentSpec
from memtail.status import ExperimentStatus

#: A probe experiment's trial 0: its source's network on the full training set, whose
#: features the other trials' linear classifiers train on.
FEATURE_TRIAL = 0


@dataclass(frozen=True)
class Experiment:
    """One experiment as stored: its spec and the sizes and seed fixed at creation."""

    id: int
    name: str
    kind: ExperimentKind
    status: ExperimentStatus
    created_at: datetime
    spec: ExperimentSpec
    spec_hash: str
    n_train: int
    n_test: int
    subset_size: int
    target_trials: int
    seed: int
    #: Why its stopping rules ended it (None: no rules, or not stopped by them yet).
    stop_reason: str | None = None


@dataclass(frozen=True)
class ExampleSet:
    """What the database keeps of a dataset: labels and provenance per example."""

    train_labels: np.ndarray
    test_labels: np.ndarray
    train_sources: Sequence[str] | None = None
    test_sources: Sequence[str] | None = None
    train_attributes: Sequence[dict[str, Any]] | None = None

    @property
    def n_train(self) -> int:
        return len(self.train_labels)

    @property
    def n_test(self) -> int:
        return len(self.test_labels)


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one attempt of one trial."""

    trial_id: int
    experiment_id: int
    trial_index: int
    seed: int
    subset: bytes
    attempt: int
    worker: str
