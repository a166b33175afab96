"""The estimator's writes: one run at a time per experiment, estimates replaced atomically.

A run holds the experiment's estimator lock (``exclusive``, a row lock no analyst can
take), records itself in
``estimate_runs`` (``begin_run``), and swaps the new memorization and influence rows in
with ``replace``: one transaction, so readers see the old estimate or the new one, never
a mix, and a crash mid-run leaves the previous estimate intact.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from memtail.stats.difference import Estimate
from memtail.status import EstimateRunStatus, ExperimentStatus, TrialStatus
from memtail.store.engine import db_now_plus, is_postgres, transaction
from memtail.store.tables import (
    estimate_runs,
    estimator_locks,
    experiments,
    influence,
    memorization,
    trials,
)

if TYPE_CHECKING:  # the type only: the influence scan's GPU backend would bring torch
    from memtail.stats.influence import InfluencePairs


class EstimatorBusy(RuntimeError):
    """Another estimator is estimating the experiment now; the message names it."""


def _label(experiment_id: int) -> str:
    return f"memtail estimator: experiment {experiment_id}"


@contextmanager
def exclusive(engine: Engine, experiment_id: int) -> Iterator[None]:
    """Hold the experiment's estimator lock for the block; EstimatorBusy if another has it.

    PostgreSQL: the row lock of the experiment's ``estimator_locks`` row, in a transaction
    held open on a connection of its own for the whole run. Taking it needs UPDATE on the
    table, so no analyst can hold it; it is released when the run ends or, if the process
    dies, when its connection drops. The transaction's ``application_name`` names the
    experiment, so a second estimator can say who holds it. SQLite: the embedded runner
    has a single estimator, and the replacement itself is serialized by SQLite's write lock.
    """
    if not is_postgres(engine):
        yield
        return
    row = estimator_locks.c.experiment_id == experiment_id
    with engine.connect() as conn:
        conn.execute(
            postgresql.insert(estimator_locks)
            .values(experiment_id=experiment_id)
            .on_conflict_do_nothing()
        )
        conn.commit()
        # Local to the transaction: it ends with the lock, and the pool gets the name back.
        conn.execute(sa.select(sa.func.set_config("application_name", _label(experiment_id), True)))
        got = conn.execute(
            sa.select(estimator_locks.c.experiment_id).where(row).with_for_update(skip_locked=True)
        ).scalar_one_or_none()
        if got is None:
            holder = _holder(conn, experiment_id)
            conn.rollback()
            raise EstimatorBusy(f"experiment {experiment_id} is being estimated by {holder}")
        try:
            yield
        finally:
            conn.rollback()  # releases the row lock


def _holder(conn: Connection, experiment_id: int) -> str:
    columns = ("pid", "usename", "client_addr", "xact_start", "application_name")
    activity = sa.table("pg_stat_activity", *(sa.column(c) for c in columns))
    found = conn.execute(
        sa.select(activity.c.pid, activity.c.usename, activity.c.client_addr, activity.c.xact_start)
        .where(
            activity.c.application_name == _label(experiment_id),
            activity.c.pid != sa.func.pg_backend_pid(),
        )
        .limit(1)
    ).one_or_none()
    if found is None:
        return "another estimator"
    since = f", since {found.xact_start:%Y-%m-%d %H:%M:%S}" if found.xact_start else ""
    client = found.client_addr or "a local socket"
    return (
        f"another estimator (PostgreSQL backend {found.pid} of {found.usename} from "
        f"{client}{since})"
    )


def last_trials_used(engine: Engine, experiment_id: int) -> int | None:
    """Trials behind the experiment's current estimate; None before its first one."""
    with transaction(engine, readonly=True) as conn:
        return conn.execute(
            sa.select(estimate_runs.c.trials_used)
            .where(
                estimate_runs.c.experiment_id == experiment_id,
                estimate_runs.c.status == EstimateRunStatus.SUCCEEDED,
            )
            .order_by(estimate_runs.c.id.desc())
            .limit(1)
        ).scalar_one_or_none()


def unfinished_trials(engine: Engine, experiment_id: int) -> int:
    """Trials still pending or running."""
    with transaction(engine, readonly=True) as conn:
        return conn.execute(
            sa.select(sa.func.count())
            .select_from(trials)
            .where(
                trials.c.experiment_id == experiment_id,
                trials.c.status.in_((TrialStatus.PENDING, TrialStatus.RUNNING)),
            )
        ).scalar_one()


def experiments_to_estimate(engine: Engine) -> list[int]:
    """Experiments whose trials may still change: active and paused ones, oldest first."""
    with transaction(engine, readonly=True) as conn:
        return list(
            conn.execute(
                sa.select(experiments.c.id)
                .where(experiments.c.status.in_((ExperimentStatus.ACTIVE, ExperimentStatus.PAUSED)))
                .order_by(experiments.c.id)
            ).scalars()
        )


def begin_run(engine: Engine, experiment_id: int, trials_used: int) -> int:
    """Record a new estimator run of the experiment (the caller holds ``exclusive``); its id."""
    with transaction(engine) as conn:
        # We hold the experiment's estimator lock, so a run still marked running is one
        # whose process died mid-way; say so instead of leaving it running forever.
        conn.execute(
            sa.update(estimate_runs)
            .where(
                estimate_runs.c.experiment_id == experiment_id,
                estimate_runs.c.status == EstimateRunStatus.RUNNING,
            )
            .values(
                status=EstimateRunStatus.FAILED,
                error="interrupted: the estimator process stopped",
            )
        )
        return conn.execute(
            sa.insert(estimate_runs)
            .values(experiment_id=experiment_id, trials_used=trials_used)
            .returning(estimate_runs.c.id)
        ).scalar_one()


def fail_run(engine: Engine, run_id: int, error: str) -> None:
    with transaction(engine) as conn:
        conn.execute(
            sa.update(estimate_runs)
            .where(estimate_runs.c.id == run_id)
            .values(status=EstimateRunStatus.FAILED, finished_at=db_now_plus(0), error=error[:4000])
        )


def _nullable(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values.tolist()]


def _memorization_rows(experiment_id: int, mem: Estimate, now: object) -> list[dict]:
    columns = {
        "mem": _nullable(mem.value),
        "std_err": _nullable(mem.std_err),
        "ci_low": _nullable(mem.ci_low),
        "ci_high": _nullable(mem.ci_high),
        "acc_in": _nullable(mem.acc_in),
        "acc_out": _nullable(mem.acc_out),
        "n_in": mem.n_in.tolist(),
        "n_out": mem.n_out.tolist(),
        "hits_in": mem.hits_in.tolist(),
        "hits_out": mem.hits_out.tolist(),
    }
    names = list(columns)
    return [
        {
            "experiment_id": experiment_id,
            "example_index": i,
            "n_trials": mem.n_trials,
            "computed_at": now,
            **dict(zip(names, values, strict=True)),
        }
        for i, values in enumerate(zip(*columns.values(), strict=True))
    ]


def _influence_rows(experiment_id: int, pairs: InfluencePairs) -> list[dict]:
    columns = {
        "train_index": pairs.train_index.tolist(),
        "test_index": pairs.test_index.tolist(),
        "infl": pairs.infl.tolist(),
        "std_err": _nullable(pairs.std_err),
        "ci_low": _nullable(pairs.ci_low),
        "ci_high": _nullable(pairs.ci_high),
        "p_value": _nullable(pairs.p_value),
        "q_value": _nullable(pairs.q_value),
        "acc_in": _nullable(pairs.acc_in),
        "acc_out": _nullable(pairs.acc_out),
        "n_in": pairs.n_in.tolist(),
        "n_out": pairs.n_out.tolist(),
    }
    names = list(columns)
    return [
        {"experiment_id": experiment_id, **dict(zip(names, values, strict=True))}
        for values in zip(*columns.values(), strict=True)
    ]


def replace(
    engine: Engine,
    experiment_id: int,
    run_id: int,
    mem: Estimate,
    pairs: InfluencePairs,
    *,
    final: bool,
    started: float,
    rules: dict[str, Any] | None = None,
    stop_reason: str | None = None,
) -> float:
    """Swap in the new estimate: one transaction, so readers never see a mix.

    ``final``: the estimate covers every trial the experiment will have, so it is marked
    complete in the same transaction. ``started``: the run's ``time.perf_counter()`` at
    its start; returns the run's seconds up to the commit, as recorded. ``rules``: the
    stopping rules' values on this estimate; ``stop_reason``: why they end it (with
    ``final``).
    """
    with transaction(engine) as conn:
        now = conn.execute(sa.select(db_now_plus(0))).scalar_one()
        conn.execute(sa.delete(memorization).where(memorization.c.experiment_id == experiment_id))
        conn.execute(sa.insert(memorization), _memorization_rows(experiment_id, mem, now))
        conn.execute(sa.delete(influence).where(influence.c.experiment_id == experiment_id))
        rows = _influence_rows(experiment_id, pairs)
        if rows:
            conn.execute(sa.insert(influence), rows)
        seconds = time.perf_counter() - started
        conn.execute(
            sa.update(estimate_runs)
            .where(estimate_runs.c.id == run_id)
            .values(
                status=EstimateRunStatus.SUCCEEDED,
                finished_at=db_now_plus(0),
                duration_seconds=seconds,
                memorization_rows=int(mem.value.size),
                influence_rows=len(rows),
                pairs_examined=pairs.pairs_examined,
                expected_false_pairs=pairs.expected_null_passes,
                q_exact_below=pairs.q_exact_below,
                rules=rules,
            )
        )
        if final:
            conn.execute(_complete(experiment_id).values(stop_reason=stop_reason))
    return seconds


def mark_complete(engine: Engine, experiment_id: int) -> None:
    """An active experiment whose every trial has ended becomes complete."""
    with transaction(engine) as conn:
        conn.execute(_complete(experiment_id))


def _complete(experiment_id: int) -> sa.Update:
    return (
        sa.update(experiments)
        .where(experiments.c.id == experiment_id, experiments.c.status == ExperimentStatus.ACTIVE)
        .values(status=ExperimentStatus.COMPLETE)
    )
