"""What trained subset models did: one trial's outcome, and an experiment's trial outcomes.

A ``TrialOutcome`` is what a trial produces and the ``trial_outcomes`` table stores: for
every train and test example, whether the model classifies it correctly (and optionally
its margin). ``TrialOutcomes`` is every succeeded trial of an experiment as the
estimator reads them back: subsets M and correctness C (train) and T (test), packed
along the trial axis (``memtail.stats.bits.TrialBits``); the (k, n) bool matrices are
decoded only on demand.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from memtail.stats.bits import TrialBits
from memtail.stats.memorization import MemCounts


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class TrialOutcome:
    """Per-example outcomes of one trained model (checked against the experiment on store)."""

    #: (n_train,) bool: train example i is classified correctly.
    train_correct: np.ndarray
    #: (n_test,) bool.
    test_correct: np.ndarray
    #: Accuracy on the examples the model was trained on (the subset).
    train_accuracy: float
    test_accuracy: float
    #: (n_train,) float16 true-class logit minus the largest other logit, or None.
    train_margin: np.ndarray | None = None
    test_margin: np.ndarray | None = None
    #: The class predicted for each misclassified train example, in example order (what
    #: models that never saw an example take it for), or None.
    train_wrong_class: np.ndarray | None = None
    #: Wall-clock seconds for training and grading, over every attempt that contributed.
    seconds: float = 0.0
    #: Of those, training seconds an earlier attempt spent and a checkpoint carried in:
    #: what resuming saved.
    resumed_seconds: float = 0.0


@dataclass(frozen=True)
class TrialOutcomes:
    """All succeeded trials of one experiment, packed along the trial axis as stored."""

    trial_ids: np.ndarray
    mask_bits: TrialBits  # M, per train example
    train_correct_bits: TrialBits  # C, per train example
    test_correct_bits: TrialBits  # T, per test example

    @property
    def n_trials(self) -> int:
        return int(self.trial_ids.size)

    @cached_property
    def masks(self) -> np.ndarray:  # (k, n_train) bool: M
        return self.mask_bits.to_bool()

    @cached_property
    def train_correct(self) -> np.ndarray:  # (k, n_train) bool: C
        return self.train_correct_bits.to_bool()

    @cached_property
    def test_correct(self) -> np.ndarray:  # (k, n_test) bool: T
        return self.test_correct_bits.to_bool()

    def mem_counts(self) -> MemCounts:
        """Memorization's sufficient statistics, by popcounts of the packed bits."""
        m, c = self.mask_bits, self.train_correct_bits
        return MemCounts(self.n_trials, m.counts(), m.and_counts(c), c.counts())
