"""An experiment's life after creation: extend, pause, resume, delete; one transaction each.

Extending adds trials k..K-1 whose subsets and seeds follow from (seed, t) exactly as the
first k did, so the estimates keep folding in; the stored spec and its digest say K
afterwards, and a complete experiment becomes active again. Pausing stops every claim
(workers' and the coordinator's) on the experiment's trials; running ones finish.
Deleting removes every row of the experiment at once. Retrying puts its failed trials
back to pending, each with its attempts again (``retry``).
"""

from __future__ import annotations

from dataclasses import replace

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.records import Experiment
from memtail.specification import MAX_TRIALS, ExperimentKind, SpecError
from memtail.status import ExperimentStatus, TrialStatus
from memtail.store.artifacts import delete_experiment_artifacts
from memtail.store.engine import transaction
from memtail.store.experiments import first_subset, get_experiment, spec_digest, trial_rows
from memtail.store.tables import (
    estimate_runs,
    estimator_locks,
    examples,
    experiments,
    influence,
    memorization,
    trial_outcomes,
    trials,
)


class ConcurrentChange(RuntimeError):
    """The experiment changed between reading and writing it; nothing was written."""


def extend(
    engine: Engine, experiment: Experiment, target_trials: int, *, by_rules: bool = False
) -> Experiment:
    """Raise the experiment's number of trials to ``target_trials``; the updated row.

    ``by_rules``: its stopping rules add the next batch. The stored spec stays the one the
    user wrote (``trials`` is the first batch, ``stopping.max_trials`` the cap), so the
    same spec launched again finds the experiment as it is, at ``target_trials``.
    """
    if target_trials <= experiment.target_trials:
        raise SpecError(
            "trials",
            f"experiment {experiment.name!r} has {experiment.target_trials} trials; extending "
            f"needs more than that (got {target_trials})",
        )
    if target_trials - experiment.target_trials > MAX_TRIALS:
        raise SpecError(
            "trials",
            f"adds {target_trials - experiment.target_trials:,} trials at once; at most "
            f"{MAX_TRIALS:,} per step (extend in steps)",
        )
    probe = experiment.kind == ExperimentKind.PROBE
    spec = replace(experiment.spec, trials=target_trials - (1 if probe else 0))
    removal = experiment.kind == ExperimentKind.REMOVAL
    subset = first_subset(engine, experiment) if removal else None
    rows = trial_rows(
        experiment.id,
        experiment.seed,
        range(experiment.target_trials, target_trials),
        experiment.n_train,
        experiment.subset_size,
        subset,
    )
    status = sa.case(
        (experiments.c.status == ExperimentStatus.COMPLETE, ExperimentStatus.ACTIVE),
        else_=experiments.c.status,
    )
    with transaction(engine) as conn:
        updated = conn.execute(
            sa.update(experiments)
            .where(
                experiments.c.id == experiment.id,
                # Fenced: two extends racing must not both insert the same trial indexes.
                experiments.c.target_trials == experiment.target_trials,
            )
            .values(
                target_trials=target_trials,
                status=status,
                **(
                    {}
                    if by_rules
                    else {"spec": spec.to_json(), "spec_hash": spec_digest(spec, subset)}
                ),
            )
        ).rowcount
        if updated != 1:
            raise ConcurrentChange(
                f"experiment {experiment.name!r} changed meanwhile; look again and retry"
            )
        conn.execute(sa.insert(trials), rows)
    return get_experiment(engine, experiment.id)


def set_paused(engine: Engine, experiment: Experiment, paused: bool) -> Experiment:
    """Pause an active experiment or resume a paused one; others are left as they are
    (a complete experiment has nothing to claim). The row as it is afterwards."""
    before, after = (
        (ExperimentStatus.ACTIVE, ExperimentStatus.PAUSED)
        if paused
        else (ExperimentStatus.PAUSED, ExperimentStatus.ACTIVE)
    )
    with transaction(engine) as conn:
        conn.execute(
            sa.update(experiments)
            .where(experiments.c.id == experiment.id, experiments.c.status == before)
            .values(status=after)
        )
    return get_experiment(engine, experiment.id)


def retry_failed(engine: Engine, experiment: Experiment) -> int:
    """Put the experiment's failed trials back to pending; how many.

    One conditional UPDATE (``status = failed``) is the fence: a failed trial has no
    current claim, so no claim or store can race it, and ``attempts`` is kept, so a
    zombie of an old claim still matches no row once the trial is claimed again. The
    bounds start over instead: ``retried_attempts`` takes the claim count, and
    ``preemptions`` and ``lost`` (which count since the last retry) go to 0. The last
    error is kept. A complete experiment becomes active again, so its trials are claimed.
    """
    with transaction(engine) as conn:
        requeued = conn.execute(
            sa.update(trials)
            .where(trials.c.experiment_id == experiment.id, trials.c.status == TrialStatus.FAILED)
            .values(
                status=TrialStatus.PENDING,
                retried_attempts=trials.c.attempts,
                preemptions=0,
                lost=0,
                worker=None,
                lease_expires_at=None,
                dispatched_at=None,
                finished_at=None,
            )
        ).rowcount
        if requeued:
            conn.execute(
                sa.update(experiments)
                .where(
                    experiments.c.id == experiment.id,
                    experiments.c.status == ExperimentStatus.COMPLETE,
                )
                .values(status=ExperimentStatus.ACTIVE)
            )
    return requeued


def delete(engine: Engine, experiment: Experiment) -> int:
    """Delete the experiment and every row of it in one transaction; the rows deleted.

    Children go first, explicitly, so the result does not depend on the database
    enforcing ``ON DELETE CASCADE`` (SQLite only does with its foreign keys pragma on).
    Artifact files under MEMTAIL_ARTIFACTS are the caller's to remove
    (``memtail.store.artifacts.experiment_folder``).
    """
    deleted = 0
    with transaction(engine) as conn:
        deleted += delete_experiment_artifacts(conn, experiment.id)
        children = (influence, memorization, estimate_runs, estimator_locks, trial_outcomes)
        for table in (*children, trials, examples):
            deleted += conn.execute(
                sa.delete(table).where(table.c.experiment_id == experiment.id)
            ).rowcount
        deleted += conn.execute(
            sa.delete(experiments).where(experiments.c.id == experiment.id)
        ).rowcount
    return deleted
