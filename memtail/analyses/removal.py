"""Removal experiments: retrain without the memorized examples, and report what it costs.

``create_removal`` puts three experiments of kind "removal" next to a subsample experiment
SOURCE that has estimates: SOURCE-full, SOURCE-minus-memorized and SOURCE-minus-random
(``memtail.stats.utility.ARMS``). Each has r trials that all train on the arm's one stored
subset and differ only in seed, and trial t of every arm has the same seed (a paired
design: arms differ by the removed examples, not by initialization). Workers train them
like any trials; the estimator leaves them alone. ``utility_report`` then gives each arm's
test accuracy and its accuracy on the test examples that SOURCE's removed memorized
examples influence (its high-influence pairs), with t-intervals over trials.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from memtail.records import Experiment
from memtail.specification import ExperimentKind, SpecError
from memtail.stats.utility import ARMS, MeanInterval, arm_subsets, mean_interval
from memtail.store.engine import Engine
from memtail.store.experiments import (
    ExperimentNotFound,
    create_experiment,
    example_set,
    first_subset,
    get_experiment,
)
from memtail.store.outcomes import load_outcomes
from memtail.store.results import estimate_arrays


class RemovalError(ValueError):
    """A removal experiment cannot be made or reported; the message says what to do."""


@dataclass(frozen=True)
class ArmReport:
    arm: str
    experiment: str
    removed: int  # train examples left out of every trial of the arm
    test: MeanInterval  # accuracy on every test example, over trials
    influenced: MeanInterval  # accuracy on the influenced test examples


def arm_name(source: str, arm: str) -> str:
    return f"{source}-{arm}"


def source_name(arm_experiment: str) -> str | None:
    """The source experiment of an arm named by ``arm_name``, or None."""
    for arm in ARMS:
        if arm_experiment.endswith(f"-{arm}"):
            return arm_experiment.removesuffix(f"-{arm}")
    return None


def create_removal(
    engine: Engine,
    source: Experiment,
    trials_per_arm: int,
    threshold: float | None = None,
    seed: int = 0,
) -> list[Experiment]:
    """Create (or find, if identical) the three arms of ``source``; returns them in ARMS order."""
    if source.kind != ExperimentKind.SUBSAMPLE:
        raise RemovalError(f"{source.name!r} is a {source.kind} experiment; pass a subsample one")
    if trials_per_arm < 1:
        raise RemovalError(
            f"--trials-per-arm must be >= 1 (got {trials_per_arm}); the paper used 5+"
        )
    mem = estimate_arrays(engine, source)["tr_mem"]
    if np.isnan(mem).all():
        raise RemovalError(
            f"experiment {source.name!r} has no estimates yet; run `memtail estimate "
            f"{source.name}` once it has trials"
        )
    threshold = source.spec.estimate.mem_threshold if threshold is None else threshold
    try:
        subsets = arm_subsets(mem, threshold, seed)
    except ValueError as error:
        raise RemovalError(f"{source.name}: {error}") from None
    data = example_set(engine, source)
    made = []
    for arm in ARMS:
        spec = replace(
            source.spec,
            name=arm_name(source.name, arm),
            kind=ExperimentKind.REMOVAL,
            trials=trials_per_arm,
        )
        try:
            made.append(create_experiment(engine, spec, data, subset=subsets[arm]).experiment)
        except SpecError:
            raise RemovalError(
                f"{spec.name!r} already exists with another subset (the estimates, threshold "
                f"or seed changed since); report it with `memtail utility {source.name}`"
            ) from None
    return made


def _arm(engine: Engine, source: Experiment, arm: str) -> Experiment:
    try:
        return get_experiment(engine, arm_name(source.name, arm))
    except ExperimentNotFound:
        raise RemovalError(
            f"no removal experiments for {source.name!r}; create them with "
            f"`memtail removal {source.name}`"
        ) from None


def utility_report(engine: Engine, source: Experiment) -> tuple[list[ArmReport], int]:
    """Per arm, test accuracy overall and on the influenced test examples; and how many
    test examples are influenced (by a removed memorized example, in SOURCE's pairs)."""
    arms = {arm: _arm(engine, source, arm) for arm in ARMS}
    removed = ~first_subset(engine, arms["minus-memorized"])
    pairs = estimate_arrays(engine, source)
    influenced = np.unique(pairs["tt_idx"][removed[pairs["tr_idx"]]])
    outcomes = {arm: load_outcomes(engine, experiment) for arm, experiment in arms.items()}
    untrained = [arms[arm].name for arm, o in outcomes.items() if o.n_trials == 0]
    if untrained:
        raise RemovalError(
            f"{', '.join(untrained)} have no trained trials yet; train the arms with "
            f"`memtail removal {source.name} --run` (embedded) or the service's workers"
        )
    reports = []
    for arm, experiment in arms.items():
        correct = outcomes[arm].test_correct  # (trials, n_test)
        on_influenced = correct[:, influenced].mean(axis=1) if influenced.size else np.zeros(0)
        reports.append(
            ArmReport(
                arm=arm,
                experiment=experiment.name,
                removed=int(experiment.n_train - experiment.subset_size),
                test=mean_interval(correct.mean(axis=1) if correct.size else np.zeros(0)),
                influenced=mean_interval(on_influenced),
            )
        )
    return reports, int(influenced.size)
