"""Consistency checks on stored experiments: across architectures, and across trials.

``compare_experiments`` reads two experiments' current estimates (the ``memorization``
table and the ``high_influence_pairs`` view) and measures their agreement; they must be
over the same examples (same dataset, split and labels), e.g. the same spec with another
``[model]``. ``split_half`` re-estimates one experiment from two random disjoint halves
of its succeeded trials, in memory (nothing is written), and measures how far the halves
agree. The maths is ``memtail.stats.consistency``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memtail.records import Experiment
from memtail.stats.consistency import Agreement, agreement, estimate_from_rows, halves
from memtail.store.engine import Engine
from memtail.store.experiments import labels
from memtail.store.outcomes import load_outcomes
from memtail.store.results import estimate_arrays


class ComparisonError(ValueError):
    """The check cannot run (other examples, too few trials); the message says why."""


@dataclass(frozen=True)
class Comparison:
    agreement: Agreement
    mem_a: np.ndarray  # memorization per train example (NaN: undefined)
    mem_b: np.ndarray
    #: Trials behind the comparison: split_half's whole experiment (each half has half).
    trials: int = 0


def _check_estimable(experiment: Experiment) -> None:
    if not experiment.kind.estimated:
        raise ComparisonError(
            f"{experiment.name!r} is a {experiment.kind} experiment: every trial trains on one "
            "subset, so it has no memorization estimates to compare; use its source experiment"
        )


def _check_same_examples(engine: Engine, a: Experiment, b: Experiment) -> None:
    if (a.n_train, a.n_test) != (b.n_train, b.n_test):
        raise ComparisonError(
            f"experiments {a.name!r} ({a.n_train} train / {a.n_test} test) and {b.name!r} "
            f"({b.n_train} / {b.n_test}) are not over the same examples; compare "
            "experiments of the same dataset spec"
        )
    for split in ("train", "test"):
        y_a, y_b = labels(engine, a.id, split), labels(engine, b.id, split)
        if not np.array_equal(y_a, y_b):
            raise ComparisonError(
                f"experiments {a.name!r} and {b.name!r} have different {split} labels "
                f"({int((y_a != y_b).sum())} differ); compare experiments of the same "
                "dataset spec and seed"
            )


def compare_experiments(
    engine: Engine, a: Experiment, b: Experiment, mem_threshold: float | None = None
) -> Comparison:
    """Agreement of two experiments' stored estimates (threshold: ``a``'s by default)."""
    _check_estimable(a)
    _check_estimable(b)
    _check_same_examples(engine, a, b)
    threshold = a.spec.estimate.mem_threshold if mem_threshold is None else mem_threshold
    x, y = estimate_arrays(engine, a), estimate_arrays(engine, b)
    for experiment, arrays in ((a, x), (b, y)):
        if np.isnan(arrays["tr_mem"]).all():
            raise ComparisonError(
                f"experiment {experiment.name!r} has no estimates yet; run "
                f"`memtail estimate {experiment.name}` once it has trials"
            )
    result = agreement(
        x["tr_mem"],
        y["tr_mem"],
        (x["tr_idx"], x["tt_idx"]),
        (y["tr_idx"], y["tt_idx"]),
        a.n_test,
        threshold,
    )
    return Comparison(result, x["tr_mem"], y["tr_mem"])


def half_estimate(
    masks: np.ndarray,
    train_correct: np.ndarray,
    test_correct: np.ndarray,
    experiment: Experiment,
    y_train: np.ndarray,
    y_test: np.ndarray,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Memorization and high-influence pairs (the view's rule) from some trials' rows."""
    rule = experiment.spec.estimate
    return estimate_from_rows(
        masks,
        train_correct,
        test_correct,
        y_train,
        y_test,
        mem_threshold=rule.mem_threshold,
        rule=rule.pair_rule(),
    )


def split_half(engine: Engine, experiment: Experiment, seed: int = 0) -> Comparison:
    """Agreement of the estimates from two random disjoint halves of the trials."""
    _check_estimable(experiment)
    outcomes = load_outcomes(engine, experiment)
    if outcomes.n_trials < 4:
        raise ComparisonError(
            f"experiment {experiment.name!r} has {outcomes.n_trials} succeeded trials; a "
            "split-half check needs at least 4 (more for meaningful halves)"
        )
    first, second = halves(outcomes.n_trials, seed)
    y_train = labels(engine, experiment.id, "train")
    y_test = labels(engine, experiment.id, "test")
    m, c, t = outcomes.masks, outcomes.train_correct, outcomes.test_correct
    mem_a, pairs_a = half_estimate(m[first], c[first], t[first], experiment, y_train, y_test)
    mem_b, pairs_b = half_estimate(m[second], c[second], t[second], experiment, y_train, y_test)
    result = agreement(
        mem_a, mem_b, pairs_a, pairs_b, experiment.n_test, experiment.spec.estimate.mem_threshold
    )
    return Comparison(result, mem_a, mem_b, outcomes.n_trials)
