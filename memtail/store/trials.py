"""The trial lifecycle in the database: claim, heartbeat, store, fail, reap.

The database is the source of truth; a broker message only says "run trial 17". Every
function here is one short transaction; on PostgreSQL the hot ones (claim, heartbeat,
store, fail) are each a single statement in autocommit, one round trip apiece.

    pending --claim--> running --store--> succeeded
       ^                  |
       +--fail / reap-----+--(attempts exhausted)--> failed --retry--> pending

A claim increments ``attempts``; every later write of that claim is fenced by
``attempts = <claimed attempt>``, so a zombie (a worker whose lease expired and whose trial
was claimed again) can neither heartbeat nor store. Lease times come from the database's
clock (``db_now_plus``) because workers on different hosts do not share one. Which
pending trials have a broker message is ``memtail.store.dispatch``'s part.

Every claim ends one of four ways, each counted apart: stored; failed (an error the
trial raised, ``attempts - retried_attempts - preemptions - lost`` of them, bounded by
MEMTAIL_MAX_ATTEMPTS); preempted (handed back, ``preemptions``); or lost (its worker
died, was killed or stopped heartbeating and recorded no error, ``lost``, bounded by
the much larger MEMTAIL_MAX_LOST). A kill is not the trial's fault, so it must not use
up the few attempts that real errors get.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.records import FEATURE_TRIAL, Claim
from memtail.specification import ExperimentKind
from memtail.stats import bits
from memtail.stats.outcomes import TrialOutcome
from memtail.status import TrialStatus
from memtail.store import statements
from memtail.store.artifacts import Staged, complete
from memtail.store.engine import db_now_plus, is_postgres, one_statement, transaction
from memtail.store.tables import experiments, trials


class LeaseLost(RuntimeError):
    """This worker's claim is no longer current: the trial was reaped or re-claimed."""


def claim(engine: Engine, trial_id: int, worker: str, lease_seconds: float) -> Claim | None:
    """Claim a pending trial of an active experiment; None if someone else has it.

    A conditional UPDATE is the whole protocol: of two workers racing for one trial
    (duplicate delivery is normal), exactly one matches ``status = pending``.
    """
    return _claim(engine, statements.CLAIM, {"trial_id": trial_id}, worker, lease_seconds)


def claim_next(
    engine: Engine,
    experiment_id: int,
    worker: str,
    lease_seconds: float,
    *,
    undispatched_only: bool = False,
) -> Claim | None:
    """Claim the lowest-index pending trial of an experiment.

    Pull-based local workers take any pending trial. A Celery worker chaining past its
    message takes only ``undispatched_only`` trials: those have no broker message, so
    pulling them never turns a queued message into a duplicate.
    """
    statement = statements.CLAIM_NEXT[undispatched_only, is_postgres(engine)]
    return _claim(engine, statement, {"experiment": experiment_id}, worker, lease_seconds)


def _claim(
    engine: Engine,
    statement: sa.Update,
    which: dict[str, object],
    worker: str,
    lease_seconds: float,
) -> Claim | None:
    with one_statement(engine) as conn:
        row = conn.execute(
            statement, {**which, "claimant": worker, "lease": float(lease_seconds)}
        ).one_or_none()
    if row is None:
        return None
    return Claim(
        trial_id=row.id,
        experiment_id=row.experiment_id,
        trial_index=row.trial_index,
        seed=row.seed,
        subset=bytes(row.subset),
        attempt=row.attempts,
        worker=worker,
    )


def _fence(claim: Claim) -> dict[str, object]:
    """Parameters of statements.FENCED: writes of a stale claim match no row."""
    return {"trial_id": claim.trial_id, "attempt": claim.attempt}


def heartbeat(engine: Engine, claim: Claim, lease_seconds: float) -> None:
    """Extend the lease; raises LeaseLost if the claim is no longer current."""
    with one_statement(engine) as conn:
        updated = conn.execute(
            statements.HEARTBEAT, {**_fence(claim), "lease": float(lease_seconds)}
        ).rowcount
    if updated != 1:
        raise LeaseLost(f"trial {claim.trial_id} attempt {claim.attempt} lost its lease")


def store(engine: Engine, claim: Claim, outcome: TrialOutcome, n_train: int, n_test: int) -> None:
    """Store outcomes and mark success atomically, fenced by the claim.

    A payload of the wrong length is rejected before anything is written. If the claim is
    stale, nothing is written and LeaseLost is raised: the current claimant's result is
    the one that counts.
    """
    mark = {
        **_fence(claim),
        "train_acc": float(outcome.train_accuracy),
        "test_acc": float(outcome.test_accuracy),
        "seconds": float(outcome.seconds),
        "resumed_seconds": float(outcome.resumed_seconds) or None,
    }
    payload = {
        "out_experiment_id": claim.experiment_id,
        "out_attempt": claim.attempt,
        "out_train_correct": _packed(outcome.train_correct, n_train, "train_correct"),
        "out_test_correct": _packed(outcome.test_correct, n_test, "test_correct"),
        "out_train_margin": _margins(outcome.train_margin, n_train, "train_margin"),
        "out_test_margin": _margins(outcome.test_margin, n_test, "test_margin"),
        "out_train_wrong_class": _wrong_classes(outcome),
    }
    if is_postgres(engine):
        with one_statement(engine) as conn:
            stored = conn.execute(statements.STORE, {**mark, **payload}).rowcount
    else:
        with transaction(engine) as conn:
            stored = conn.execute(statements.MARK_SUCCEEDED, mark).rowcount
            if stored == 1:
                conn.execute(statements.INSERT_OUTCOME, {**payload, "out_trial_id": claim.trial_id})
    if stored != 1:
        raise LeaseLost(
            f"trial {claim.trial_id} attempt {claim.attempt} is no longer claimed; result discarded"
        )


def store_features(engine: Engine, claim: Claim, outcome: TrialOutcome, features: Staged) -> None:
    """Complete a probe's feature trial: mark it succeeded (with its model's accuracies)
    and make its staged features artifact visible, in one transaction fenced by the claim.

    The feature trial stores no ``trial_outcomes`` row: its model saw every example, and
    an outcome of it would count as a subset trial in every estimate. If the claim is
    stale, nothing is written and LeaseLost is raised (the caller discards the artifact).
    """
    mark = {
        **_fence(claim),
        "train_acc": float(outcome.train_accuracy),
        "test_acc": float(outcome.test_accuracy),
        "seconds": float(outcome.seconds),
        "resumed_seconds": float(outcome.resumed_seconds) or None,
    }
    with transaction(engine) as conn:
        stored = conn.execute(statements.MARK_SUCCEEDED, mark).rowcount
        if stored == 1:
            complete(conn, features)
    if stored != 1:
        raise LeaseLost(
            f"trial {claim.trial_id} attempt {claim.attempt} is no longer claimed; "
            "features discarded"
        )


def _packed(flags: np.ndarray, n: int, what: str) -> bytes:
    flags = np.asarray(flags)
    if flags.shape != (n,):
        raise bits.PayloadError(f"{what}: shape {flags.shape} but the experiment has {n}")
    return bits.pack(flags)


def _margins(values: np.ndarray | None, n: int, what: str) -> bytes | None:
    if values is None:
        return None
    values = np.asarray(values)
    if values.shape != (n,):
        raise bits.PayloadError(f"{what}: shape {values.shape} but the experiment has {n}")
    return values.astype("<f2").tobytes()


def _wrong_classes(outcome: TrialOutcome) -> bytes | None:
    """The predicted classes of the misclassified train examples, one per zero bit."""
    if outcome.train_wrong_class is None:
        return None
    classes = np.asarray(outcome.train_wrong_class)
    wrong = int(np.count_nonzero(~np.asarray(outcome.train_correct, dtype=bool)))
    if classes.shape != (wrong,):
        raise bits.PayloadError(
            f"train_wrong_class: {classes.size} classes for {wrong} misclassified examples"
        )
    if classes.size and classes.min() < 0:
        raise bits.PayloadError("train_wrong_class: a negative class")
    # Two bytes a class, four past 65,535 classes; a reader tells them apart by length.
    wide = classes.size and classes.max() > np.iinfo(np.uint16).max
    return classes.astype("<u4" if wide else "<u2").tobytes()


#: Claims since the last retry that ended in an error (the current one included).
FAILURES = trials.c.attempts - trials.c.retried_attempts - trials.c.preemptions - trials.c.lost


def _released(exhausted: sa.ColumnElement[bool]) -> dict[str, object]:
    """Column values of a running trial whose claim ended unstored: back to pending, or
    failed for good when ``exhausted``."""
    return {
        "status": sa.case((exhausted, TrialStatus.FAILED), else_=TrialStatus.PENDING),
        "worker": None,
        "lease_expires_at": None,
        # A retry needs a new message; the coordinator sends one for NULL.
        "dispatched_at": None,
        "finished_at": sa.case((exhausted, db_now_plus(0)), else_=None),
    }


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
        **_released(exhausted),
        "lost": trials.c.lost + 1,
        "error": sa.case((exhausted, sa.literal(reason) + why), else_=why),
    }


def fail(engine: Engine, claim: Claim, error: str, max_attempts: int) -> TrialStatus | None:
    """Record a failed attempt: back to pending, or failed when out of attempts.

    Returns the new status, or None if the claim was stale (nothing written).
    """
    with one_statement(engine) as conn:
        row = conn.execute(
            sa.update(trials)
            .where(statements.FENCED)
            .values(
                error=error[:4000],
                **_released(FAILURES >= max_attempts),
            )
            .returning(trials.c.status),
            _fence(claim),
        ).one_or_none()
    return None if row is None else TrialStatus(row.status)


def hand_back(engine: Engine, claim: Claim, max_preemptions: int) -> TrialStatus | None:
    """A preempted claim returns its trial: back to pending with ``preemptions`` counted
    and no failed attempt, or failed once preempted ``max_preemptions`` times (a trial no
    worker is ever let finish is reported, not retried forever). None if the claim was
    stale (nothing written)."""
    exhausted = trials.c.preemptions + 1 >= max_preemptions
    message = (
        f"preempted {max_preemptions} times: raise MEMTAIL_MAX_PREEMPTIONS or give its "
        "workers longer (a SLURM --time, a spot instance's lifetime)"
    )
    with one_statement(engine) as conn:
        row = conn.execute(
            sa.update(trials)
            .where(statements.FENCED)
            .values(
                **_released(exhausted),
                preemptions=trials.c.preemptions + 1,
                error=sa.case((exhausted, sa.literal(message)), else_=trials.c.error),
            )
            .returning(trials.c.status),
            _fence(claim),
        ).one_or_none()
    return None if row is None else TrialStatus(row.status)


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


def status_counts(engine: Engine, experiment_id: int) -> dict[TrialStatus, int]:
    """Trials of the experiment by status (every status present, 0 if none)."""
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            sa.select(trials.c.status, sa.func.count())
            .where(trials.c.experiment_id == experiment_id)
            .group_by(trials.c.status)
        ).all()
    counts = dict.fromkeys(TrialStatus, 0)
    counts.update({TrialStatus(status): int(n) for status, n in rows})
    return counts
