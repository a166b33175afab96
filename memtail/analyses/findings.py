"""Everything known about an experiment, gathered in one place for the report and the
dashboard: its card, the estimates and their distributions, convergence, the examples
worth looking at, and whichever of the paper's further analyses exist for it.

Gathering only reads (the stored tables, and in-memory recomputations such as the
split-half check); a section whose data do not exist yet is None, never an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from typing import TypeVar

import numpy as np

from memtail.analyses.comparison import Comparison, ComparisonError, compare_experiments, split_half
from memtail.analyses.convergence import Convergence, convergence
from memtail.analyses.depth import Depth, DepthError, depth_report
from memtail.analyses.removal import ArmReport, RemovalError, utility_report
from memtail.records import Experiment
from memtail.store.engine import Engine
from memtail.store.outcomes import HeldOutPredictions, held_out_predictions
from memtail.store.pairs import (
    InfluencePair,
    PairSummary,
    high_influence_pairs,
    influence_values,
    pair_summary,
)
from memtail.store.progress import Progress, progress
from memtail.store.results import (
    EstimateRun,
    MemorizationValues,
    MemorizedExample,
    latest_run,
    memorization_values,
    top_memorized,
    typical_examples,
)
from memtail.store.workers import FailedTrial, failed_trials

T = TypeVar("T")

#: Sizes of the example grids: as many as a page shows well.
TOP_EXAMPLES = 24
PAIRS_SHOWN = 8
#: The false-discovery rate at which the report counts pairs when the spec sets none.
FDR_SHOWN = 0.1


@dataclass(frozen=True)
class Utility:
    arms: list[ArmReport]
    influenced: int  # test examples influenced by a removed memorized example


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class Findings:
    experiment: Experiment
    progress: Progress
    estimate: EstimateRun | None
    failures: list[FailedTrial]
    values: MemorizationValues
    influence: np.ndarray  # stored infl values (infl >= threshold)
    pairs: PairSummary | None
    convergence: Convergence | None
    top: list[MemorizedExample]
    predictions: HeldOutPredictions | None
    typical: list[MemorizedExample]
    strongest_pairs: list[InfluencePair]
    stability: Comparison | None = None
    depth: Depth | None = None
    utility: Utility | None = None

    @property
    def estimated(self) -> bool:
        return self.estimate is not None and self.values.mem.size > 0


@dataclass(frozen=True)
class CrossComparison:
    """Two experiments of one report over the same examples, compared."""

    a: Experiment
    b: Experiment
    trials: tuple[int, int]
    comparison: Comparison | None
    why_not: str | None = None  # when they cannot be compared


@dataclass(frozen=True)
class Gathered:
    findings: list[Findings]
    comparisons: list[CrossComparison] = field(default_factory=list)


def gather(engine: Engine, experiment: Experiment, *, stability: bool = True) -> Findings:
    """One experiment's findings; ``stability`` re-estimates two halves of its trials."""
    state = progress(engine, experiment)
    run = latest_run(engine, experiment.id) if experiment.kind.estimated else None
    values = memorization_values(engine, experiment.id)
    top = top_memorized(engine, experiment.id, TOP_EXAMPLES) if run else []
    findings = Findings(
        experiment=experiment,
        progress=state,
        estimate=run,
        failures=failed_trials(engine, experiment.id),
        values=values,
        influence=influence_values(engine, experiment.id),
        pairs=pair_summary(engine, experiment.id, experiment.spec.estimate.fdr or FDR_SHOWN)
        if run
        else None,
        convergence=convergence(engine, experiment) if run else None,
        top=top,
        predictions=held_out_predictions(
            engine, experiment, np.array([r.example_index for r in top], dtype=np.int64)
        )
        if top
        else None,
        typical=typical_examples(engine, experiment.id, sorted({r.label for r in top})),
        strongest_pairs=high_influence_pairs(engine, experiment.id, PAIRS_SHOWN) if run else [],
        stability=_optional(lambda: split_half(engine, experiment)) if run and stability else None,
        depth=_optional(lambda: depth_report(engine, experiment)) if run else None,
        utility=_optional(lambda: Utility(*utility_report(engine, experiment))) if run else None,
    )
    return findings


def gather_all(
    engine: Engine, experiments: list[Experiment], *, stability: bool = True
) -> Gathered:
    """Findings of each experiment, and every pair of them over the same examples compared."""
    findings = [gather(engine, e, stability=stability) for e in experiments]
    comparisons = []
    for a, b in combinations([f for f in findings if f.estimated], 2):
        trials = (a.estimate.trials_used, b.estimate.trials_used)  # type: ignore[union-attr]
        try:
            result = compare_experiments(engine, a.experiment, b.experiment)
            comparisons.append(CrossComparison(a.experiment, b.experiment, trials, result))
        except ComparisonError as error:
            comparisons.append(
                CrossComparison(a.experiment, b.experiment, trials, None, str(error))
            )
    return Gathered(findings, comparisons)


def _optional(compute: Callable[[], T]) -> T | None:
    """The section's data, or None when they do not exist (yet)."""
    try:
        return compute()
    except (ComparisonError, DepthError, RemovalError):
        return None
