"""The trial lifecycle's hot statements, built once with bound parameters.

Every trial runs a claim and a store. Building a SQLAlchemy statement is thousands of
Python calls, and right after a trial trained, that code runs with cold caches: measured
with benchmarks/system_overhead.py, constructing the store each time cost several
milliseconds per trial. Built once, each execution only binds values. The statements are
executed by :mod:`memtail.store.trials` and :mod:`memtail.store.outcomes`, which own their
meaning.
"""

from __future__ import annotations

import sqlalchemy as sa

from memtail.records import FEATURE_TRIAL
from memtail.specification import ExperimentKind
from memtail.status import ExperimentStatus, TrialStatus
from memtail.store.engine import db_now_plus
from memtail.store.tables import experiments, trial_outcomes, trials

#: Bound parameters: trial_id, attempt (the claim being fenced).
FENCED = sa.and_(
    trials.c.id == sa.bindparam("trial_id"),
    trials.c.status == TrialStatus.RUNNING,
    trials.c.attempts == sa.bindparam("attempt"),
)

_feature_trial = trials.alias("feature_trial")

#: A probe trial trains on its experiment's features: claimable once the feature trial
#: stored them. Any other trial is ready when pending.
READY = sa.or_(
    trials.c.trial_index == FEATURE_TRIAL,
    ~sa.select(experiments.c.id)
    .where(experiments.c.id == trials.c.experiment_id, experiments.c.kind == ExperimentKind.PROBE)
    .exists(),
    sa.select(_feature_trial.c.id)
    .where(
        _feature_trial.c.experiment_id == trials.c.experiment_id,
        _feature_trial.c.trial_index == FEATURE_TRIAL,
        _feature_trial.c.status == TrialStatus.SUCCEEDED,
    )
    .exists(),
)

_ACTIVE = (
    sa.select(experiments.c.id)
    .where(
        experiments.c.id == trials.c.experiment_id, experiments.c.status == ExperimentStatus.ACTIVE
    )
    .exists()
)


def _claim(which: sa.ColumnElement[bool]) -> sa.Update:
    """Bound parameters: worker, lease (seconds), and those of ``which``."""
    return (
        sa.update(trials)
        .where(which, trials.c.status == TrialStatus.PENDING, _ACTIVE, READY)
        .values(
            status=TrialStatus.RUNNING,
            attempts=trials.c.attempts + 1,
            worker=sa.bindparam("claimant"),
            started_at=db_now_plus(0),
            heartbeat_at=db_now_plus(0),
            lease_expires_at=db_now_plus(sa.bindparam("lease", type_=sa.Float)),
            finished_at=None,
        )
        .returning(
            trials.c.id,
            trials.c.experiment_id,
            trials.c.trial_index,
            trials.c.seed,
            trials.c.subset,
            trials.c.attempts,
        )
    )


def _pending(undispatched_only: bool) -> sa.ColumnElement[bool]:
    """Claimable trials of the experiment bound as ``experiment``."""
    pending = sa.and_(
        trials.c.experiment_id == sa.bindparam("experiment"),
        trials.c.status == TrialStatus.PENDING,
        READY,
    )
    if undispatched_only:
        # A Celery chain takes only trials without a broker message.
        pending = sa.and_(pending, trials.c.dispatched_at.is_(None))
    return pending


def _next(undispatched_only: bool, skip_locked: bool) -> sa.Update:
    """Claim of the lowest-index pending trial; bound parameter: experiment."""
    pending = _pending(undispatched_only)
    pick = sa.select(trials.c.id).where(pending).order_by(trials.c.trial_index).limit(1)
    if skip_locked:
        # Concurrent pickers skip each other's row instead of queueing behind it.
        pick = pick.with_for_update(skip_locked=True)
    return _claim(trials.c.id == pick.scalar_subquery())


def _batch(undispatched_only: bool, postgres: bool) -> sa.Update:
    """Claim of up to ``limit`` lowest-index pending trials; bound parameters: experiment,
    limit. On PostgreSQL the picked rows are a CTE locked with SKIP LOCKED and joined:
    ``id IN (subquery ... LIMIT)`` is not a fence there, since the planner may run the
    subquery again per row and claim more than the limit. SQLite has one writer at a
    time, so the plain subquery is exact."""
    pending = _pending(undispatched_only)
    pick = (
        sa.select(trials.c.id)
        .where(pending)
        .order_by(trials.c.trial_index)
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )
    if not postgres:
        return _claim(trials.c.id.in_(pick.scalar_subquery()))
    picked = pick.with_for_update(skip_locked=True).cte("picked")
    return _claim(trials.c.id == picked.c.id)


CLAIM = _claim(trials.c.id == sa.bindparam("trial_id"))
#: (undispatched_only, postgres) -> statement; SQLite has no row locks to skip.
CLAIM_NEXT = {(u, pg): _next(u, skip_locked=pg) for u in (False, True) for pg in (False, True)}
#: (undispatched_only, postgres) -> statement.
CLAIM_BATCH = {(u, pg): _batch(u, pg) for u in (False, True) for pg in (False, True)}

#: Bound parameters: those of FENCED, lease.
HEARTBEAT = (
    sa.update(trials)
    .where(FENCED)
    .values(
        heartbeat_at=db_now_plus(0),
        lease_expires_at=db_now_plus(sa.bindparam("lease", type_=sa.Float)),
    )
)

#: Bound parameters: claims (an expanding list of (trial_id, attempt) pairs), lease; the
#: ids it returns are the claims still current.
HEARTBEAT_MANY = (
    sa.update(trials)
    .where(
        sa.tuple_(trials.c.id, trials.c.attempts).in_(sa.bindparam("claims", expanding=True)),
        trials.c.status == TrialStatus.RUNNING,
    )
    .values(
        heartbeat_at=db_now_plus(0),
        lease_expires_at=db_now_plus(sa.bindparam("lease", type_=sa.Float)),
    )
    .returning(trials.c.id)
)

#: Bound parameters: those of FENCED, train_acc, test_acc, seconds, resumed_seconds.
MARK_SUCCEEDED = (
    sa.update(trials)
    .where(FENCED)
    .values(
        status=TrialStatus.SUCCEEDED,
        finished_at=db_now_plus(0),
        lease_expires_at=None,
        train_accuracy=sa.bindparam("train_acc", type_=sa.Float),
        test_accuracy=sa.bindparam("test_acc", type_=sa.Float),
        seconds=sa.bindparam("seconds", type_=sa.Float),
        resumed_seconds=sa.bindparam("resumed_seconds", type_=sa.Float),
    )
)

#: The outcome columns a store binds, each as a parameter ``out_<column>``.
OUTCOME_COLUMNS = (
    "experiment_id",
    "attempt",
    "train_correct",
    "test_correct",
    "train_margin",
    "test_margin",
    "train_wrong_class",
)

#: SQLite's second statement of a store: bound parameters out_trial_id, out_<column>.
INSERT_OUTCOME = sa.insert(trial_outcomes).values(
    trial_id=sa.bindparam("out_trial_id"),
    **{c: sa.bindparam(f"out_{c}", type_=trial_outcomes.c[c].type) for c in OUTCOME_COLUMNS},
)


def _store_in_one_statement() -> sa.Insert:
    # PostgreSQL: the outcome row is inserted from what the fenced UPDATE returns, so a
    # stale claim marks nothing and inserts nothing, in one round trip.
    marked = MARK_SUCCEEDED.returning(trials.c.id).cte("marked")
    values = [
        sa.cast(sa.bindparam(f"out_{c}", type_=trial_outcomes.c[c].type), trial_outcomes.c[c].type)
        for c in OUTCOME_COLUMNS
    ]
    return (
        sa.insert(trial_outcomes)
        .add_cte(marked)
        .from_select(
            [trial_outcomes.c.trial_id, *(trial_outcomes.c[c] for c in OUTCOME_COLUMNS)],
            sa.select(marked.c.id, *values),
        )
    )


STORE = _store_in_one_statement()
