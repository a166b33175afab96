"""Who is training: the workers the database knows from their claims, and failed trials.

A worker's identity is the name it claims trials under (``trials.worker``, kept after a
trial succeeds); its liveness is the heartbeat on the trial it holds. Nothing here asks
the broker: the database is the record of who did what.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.status import TrialStatus
from memtail.store.engine import as_utc, transaction
from memtail.store.tables import experiments, trials


@dataclass(frozen=True)
class WorkerState:
    worker: str
    last_seen: datetime | None  # its latest heartbeat, claim or finished trial
    succeeded: int  # trials it stored
    #: The trial it holds now, as (experiment name, trial index), or None.
    current: tuple[str, int] | None
    current_since: datetime | None


@dataclass(frozen=True)
class FailedTrial:
    experiment: str
    trial_index: int
    attempts: int
    finished_at: datetime | None
    error: str


def worker_states(engine: Engine, limit: int = 50) -> list[WorkerState]:
    """The ``limit`` workers seen most recently, with the trial each holds now."""
    seen = sa.func.max(
        sa.func.coalesce(trials.c.heartbeat_at, trials.c.finished_at, trials.c.started_at)
    )
    stored = sa.func.sum(sa.case((trials.c.status == TrialStatus.SUCCEEDED, 1), else_=0))
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            sa.select(trials.c.worker, seen.label("seen"), stored.label("stored"))
            .where(trials.c.worker.is_not(None))
            .group_by(trials.c.worker)
            .order_by(seen.desc())
            .limit(limit)
        ).all()
        running = conn.execute(
            sa.select(
                trials.c.worker, experiments.c.name, trials.c.trial_index, trials.c.started_at
            )
            .join(experiments, experiments.c.id == trials.c.experiment_id)
            .where(trials.c.status == TrialStatus.RUNNING, trials.c.worker.is_not(None))
        ).all()
    holding = {row.worker: row for row in running}
    states = []
    for row in rows:
        held = holding.get(row.worker)
        states.append(
            WorkerState(
                worker=row.worker,
                last_seen=as_utc(row.seen),
                succeeded=int(row.stored or 0),
                current=None if held is None else (held.name, int(held.trial_index)),
                current_since=None if held is None else as_utc(held.started_at),
            )
        )
    return states


def failed_trials(engine: Engine, experiment_id: int, limit: int = 20) -> list[FailedTrial]:
    """The experiment's failed trials, latest first, with the error each ended with."""
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            sa.select(
                experiments.c.name,
                trials.c.trial_index,
                trials.c.attempts,
                trials.c.finished_at,
                trials.c.error,
            )
            .join(experiments, experiments.c.id == trials.c.experiment_id)
            .where(trials.c.experiment_id == experiment_id, trials.c.status == TrialStatus.FAILED)
            .order_by(trials.c.finished_at.desc(), trials.c.trial_index)
            .limit(limit)
        ).all()
    return [
        FailedTrial(
            row.name,
            int(row.trial_index),
            int(row.attempts),
            as_utc(row.finished_at),
            row.error or "",
        )
        for row in rows
    ]
