"""The periodic estimator: read an experiment's outcomes, estimate, replace atomically.

One run per experiment at a time (its estimator lock, a row lock held for the run; a
second estimator is told who holds it). The previous estimate stays visible until the
replacement commits in a single transaction, so readers see the old estimate or the new
one, never a mix, and a crash mid-run leaves the previous estimate intact
(``memtail.store.estimate_runs``). The maths is ``memtail.stats``: memorization and the
influence pair scan.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from memtail.records import Experiment
from memtail.stats import kernels
from memtail.stats.influence import influence_pairs
from memtail.stats.memorization import memorization
from memtail.stats.outcomes import TrialOutcomes
from memtail.status import ExperimentStatus
from memtail.store import estimate_runs, lifecycle
from memtail.store.engine import Engine
from memtail.store.experiments import get_experiment, labels
from memtail.store.outcomes import load_outcomes
from memtail.work import stopping

log = logging.getLogger(__name__)


def preload() -> None:
    """Import the estimator's heavy dependencies now: scipy.stats and the numba kernels.

    They are imported on first use, since trial workers never need them; measured on a
    2-core host, they made a process's first estimate take 3.3 s instead of 0.36 s, CPU
    taken from the training next to it. A process that will estimate calls this once at
    start-up instead.
    """
    import scipy.stats  # noqa: F401 - imported for its side effect: loaded modules

    kernels.compiled()  # None without numba: the numpy paths need no preloading


@dataclass(frozen=True)
class RunSummary:
    run_id: int
    experiment_id: int
    trials_used: int
    memorization_rows: int
    influence_rows: int
    pairs_examined: int
    expected_false_pairs: float
    seconds: float
    complete: bool


def scan_backend(device: str) -> tuple[str, str]:
    """``influence_pairs``'s (backend, device) for MEMTAIL_ESTIMATOR_DEVICE ``device``."""
    if device == "auto":
        import torch  # already loaded in workers; only "auto" needs to look for a GPU

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return ("auto", "cpu") if device == "cpu" else ("cuda", device)


def estimate_experiment(
    engine: Engine, experiment_id: int, *, force: bool = False, device: str = "cpu"
) -> RunSummary | None:
    """Recompute one experiment's estimates if it has new trials; None when skipped.

    ``device``: where influence pairs are scanned (MEMTAIL_ESTIMATOR_DEVICE values).
    Raises ``EstimatorBusy`` (naming it) when another estimator is estimating it now.
    """
    with estimate_runs.exclusive(engine, experiment_id):
        experiment = get_experiment(engine, experiment_id)
        active = experiment.status == ExperimentStatus.ACTIVE
        if not experiment.kind.estimated:
            # A removal experiment trains every trial on one subset: each example is in
            # all of its trials or in none, so nothing is estimable. It is complete once
            # no trial is left to run.
            if estimate_runs.unfinished_trials(engine, experiment_id) == 0 and active:
                estimate_runs.mark_complete(engine, experiment_id)
            return None
        # Count unfinished trials *before* reading outcomes: if none were unfinished then,
        # the outcomes read next are final, and this run is the experiment's last.
        final = estimate_runs.unfinished_trials(engine, experiment_id) == 0
        outcomes = load_outcomes(engine, experiment)
        used = estimate_runs.last_trials_used(engine, experiment_id) or 0
        ruled = experiment.spec.stopping.active
        if not force and outcomes.n_trials == used:
            if final and outcomes.n_trials and active:
                if not ruled:
                    estimate_runs.mark_complete(engine, experiment_id)
                    return None
                # The rules decide at a look; the process that estimated it may have died
                # before adding the next batch: decide again.
                return _run(engine, experiment, outcomes, final, device)
            return None
        return _run(engine, experiment, outcomes, final and active, device)


def _run(
    engine: Engine, experiment: Experiment, outcomes: TrialOutcomes, final: bool, device: str
) -> RunSummary:
    started = time.perf_counter()
    run_id = estimate_runs.begin_run(engine, experiment.id, outcomes.n_trials)
    decision = None
    try:
        rule = experiment.spec.estimate
        y = (labels(engine, experiment.id, "train"), labels(engine, experiment.id, "test"))
        confidence = stopping.confidence_for(experiment)
        interval = stopping.interval_for(experiment)
        mem = memorization(outcomes.mem_counts(), confidence, interval)
        backend, scan_device = scan_backend(device)
        pairs = influence_pairs(
            outcomes.mask_bits,
            outcomes.test_correct_bits,
            # The look's spent confidence for the pairs' intervals too, so that every
            # interval of a stopped experiment keeps the spec's promise (q-values and
            # p-values do not depend on it).
            rule.pair_rule(confidence, interval=interval),
            train_labels=y[0] if rule.same_class else None,
            test_labels=y[1] if rule.same_class else None,
            backend=backend,
            device=scan_device,
        )
        if experiment.spec.stopping.active:
            decision = stopping.decide(experiment, mem, outcomes, y, final=final)
            final = final and decision.stop
        seconds = estimate_runs.replace(
            engine,
            experiment.id,
            run_id,
            mem,
            pairs,
            final=final,
            started=started,
            rules=None if decision is None else decision.record(),
            stop_reason=None if decision is None else decision.reason,
        )
    except BaseException as error:
        estimate_runs.fail_run(engine, run_id, repr(error))
        raise
    if decision is not None and decision.next_target is not None:
        # After the estimate committed: a crash here leaves a complete look with no next
        # batch, which the next estimator pass decides again.
        lifecycle.extend(engine, experiment, decision.next_target, by_rules=True)
        log.info(
            "experiment %d: stopping rules not met at %d trials (%s); next batch to %d",
            experiment.id,
            outcomes.n_trials,
            "; ".join(f"{v.rule} {v.value:.3f}" for v in decision.rules),
            decision.next_target,
        )
    return RunSummary(
        run_id=run_id,
        experiment_id=experiment.id,
        trials_used=outcomes.n_trials,
        memorization_rows=int(mem.value.size),
        influence_rows=len(pairs),
        pairs_examined=pairs.pairs_examined,
        expected_false_pairs=pairs.expected_null_passes,
        seconds=seconds,
        complete=final,
    )


def estimate_all(engine: Engine, device: str = "cpu") -> list[RunSummary]:
    """Estimate every active experiment that has new succeeded trials (``device``: as in
    ``estimate_experiment``)."""
    summaries = []
    for experiment_id in estimate_runs.experiments_to_estimate(engine):
        try:
            summary = estimate_experiment(engine, experiment_id, device=device)
        except estimate_runs.EstimatorBusy as busy:
            log.info("skipped: %s", busy)
            continue
        if summary is not None:
            summaries.append(summary)
    return summaries
