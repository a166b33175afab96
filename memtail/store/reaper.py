"""Claims whose worker is gone return their trials: expired leases, stopped local workers.

A worker that died, was killed or stopped heartbeating recorded no error, so its claim
counts as lost, not failed (``memtail.store.trials`` says how the four ends of a claim
are counted); a trial lost MEMTAIL_MAX_LOST times is failed for good.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.records import FEATURE_TRIAL
from memtail.specification import ExperimentKind
from memtail.status import TrialStatus
from memtail.store.engine import db_now_plus, is_postgres, transaction
from memtail.store.tables import experiments, trials
from memtail.store.trials import released


def _lost(max_lost: int, why: sa.ColumnElement[str]) -> dict[str, object]:
    """Column values of a running trial whose worker is gone without recording an error:
    ``lost`` counted, no failed attempt; failed once lost ``max_lost`` times (a trial
    that kills every worker it meets is reported, not retried forever)."""
    exhausted = trials.c.lost + 1 >= max_lost
    reason = (
        f"lost {max_lost} times (its worker died or was killed under it each time; raise "
        "MEMTAIL_MAX_LOST, or find what kills it, then `memtail experiment retry`); last: "
    )
    return {
        **released(exhausted),
        "lost": trials.c.lost + 1,
        "error": sa.case((exhausted, sa.literal(reason) + why), else_=why),
    }


@dataclass(frozen=True)
class ReapResult:
    requeued: int
    failed: int


def reap(
    engine: Engine,
    max_lost: int,
    grace_after_restart: float = 0.0,
    *,
    experiment_id: int | None = None,
) -> ReapResult:
    """Return expired leases (of every experiment, or of ``experiment_id``) to pending,
    each counted as lost, not failed; failed once lost ``max_lost`` times.

    After a PostgreSQL restart every lease looks expired at once, although the workers
    are alive and were only unable to heartbeat. With ``grace_after_restart`` (a lease
    length) nothing is reaped until the server has been up that long, so live workers get
    one lease period to heartbeat again before their finished work would be discarded.
    """
    expired = sa.and_(
        trials.c.status == TrialStatus.RUNNING, trials.c.lease_expires_at < db_now_plus(0)
    )
    if experiment_id is not None:
        expired = sa.and_(expired, trials.c.experiment_id == experiment_id)
    if grace_after_restart > 0 and is_postgres(engine):
        expired = sa.and_(
            expired, sa.func.pg_postmaster_start_time() < db_now_plus(-grace_after_restart)
        )
    with transaction(engine) as conn:
        rows = conn.execute(
            sa.update(trials)
            .where(expired)
            .values(
                **_lost(
                    max_lost,
                    "lease expired (worker "
                    + sa.func.coalesce(trials.c.worker, "?")
                    + " stopped heartbeating)",
                )
            )
            .returning(trials.c.status)
        ).all()
        blocked = _fail_blocked(conn)
    failed = sum(1 for row in rows if row.status == TrialStatus.FAILED)
    return ReapResult(requeued=len(rows) - failed, failed=failed + blocked)


def _fail_blocked(conn: sa.Connection) -> int:
    """Fail the pending probe trials of experiments whose feature trial failed for good:
    without features they can never run, and a run waiting for them would never end."""
    feature = trials.alias("feature")
    blocked = sa.select(experiments.c.id).where(
        experiments.c.kind == ExperimentKind.PROBE,
        sa.select(feature.c.id)
        .where(
            feature.c.experiment_id == experiments.c.id,
            feature.c.trial_index == FEATURE_TRIAL,
            feature.c.status == TrialStatus.FAILED,
        )
        .exists(),
    )
    return conn.execute(
        sa.update(trials)
        .where(trials.c.experiment_id.in_(blocked), trials.c.status == TrialStatus.PENDING)
        .values(
            status=TrialStatus.FAILED,
            finished_at=db_now_plus(0),
            error="its feature trial (trial index 0) failed; see that trial's error",
        )
    ).rowcount


def release_running(
    engine: Engine,
    experiment_id: int,
    worker_prefix: str,
    *,
    exact: bool = False,
    died: str | None = None,
    max_lost: int,
) -> int:
    """Return running trials of workers named ``worker_prefix...`` (``exact``: of the one
    worker of that name) to pending; how many.

    Only for the embedded runner, whose worker processes it knows are stopped (it started
    and ended them, or found them gone: a killed ``memtail run`` leaves its trials
    running). Trials of other workers keep their leases. Each released claim counts as
    lost, not failed, as a reaped lease does (``died``: why, kept as the trial's error);
    lost ``max_lost`` times, the trial is failed for good, so one that keeps killing its
    worker cannot loop forever.
    """
    why = died or f"local worker {worker_prefix}{'' if exact else '*'} stopped under it"
    values = _lost(max_lost, sa.literal(why[:4000]))
    with transaction(engine) as conn:
        return conn.execute(
            sa.update(trials)
            .where(
                trials.c.experiment_id == experiment_id,
                trials.c.status == TrialStatus.RUNNING,
                trials.c.worker == worker_prefix
                if exact
                else trials.c.worker.startswith(worker_prefix, autoescape=True),
            )
            .values(**values)
        ).rowcount
