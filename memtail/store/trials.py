"""The trial lifecycle in the database: claim, heartbeat, fail, hand back.

The database is the source of truth; a broker message only says "run trial 17". Every
function here is one short transaction; on PostgreSQL the hot ones (claim, heartbeat,
store, fail) are each a single statement in autocommit, one round trip apiece.

    pending --claim--> running --store--> succeeded
       ^                  |
       +--fail / reap-----+--(attempts exhausted)--> failed --retry--> pending

A claim increments ``attempts``; every later write of that claim is fenced by
``attempts = <claimed attempt>``, so a zombie (a worker whose lease expired and whose trial
was claimed again) can neither heartbeat nor store. Lease times come from the database's
clock (``db_now_plus``) because workers on different hosts do not share one. Storing a
claim's outcome is ``memtail.store.outcomes``'s part, returning the claims of workers that
are gone ``memtail.store.reaper``'s, and which pending trials have a broker message
``memtail.store.dispatch``'s.

Every claim ends one of four ways, each counted apart: stored; failed (an error the
trial raised, ``attempts - retried_attempts - preemptions - lost`` of them, bounded by
MEMTAIL_MAX_ATTEMPTS); preempted (handed back, ``preemptions``); or lost (its worker
died, was killed or stopped heartbeating and recorded no error, ``lost``, bounded by
the much larger MEMTAIL_MAX_LOST). A kill is not the trial's fault, so it must not use
up the few attempts that real errors get.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.records import Claim
from memtail.status import TrialStatus
from memtail.store import statements
from memtail.store.engine import db_now_plus, is_postgres, one_statement, transaction
from memtail.store.tables import trials


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


def claim_batch(
    engine: Engine,
    experiment_id: int,
    worker: str,
    lease_seconds: float,
    limit: int,
    *,
    undispatched_only: bool = False,
) -> list[Claim]:
    """Claim up to ``limit`` pending trials of an experiment in one statement, lowest
    index first; each is its own claim (leased, fenced and stored on its own).

    Concurrent claimants on PostgreSQL skip each other's locked rows, so no trial is
    handed to two of them and none waits behind another's batch.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    statement = statements.CLAIM_BATCH[undispatched_only, is_postgres(engine)]
    with one_statement(engine) as conn:
        rows = conn.execute(
            statement,
            {
                "experiment": experiment_id,
                "limit": int(limit),
                "claimant": worker,
                "lease": float(lease_seconds),
            },
        ).all()
    claims = [_claim_of(row, worker) for row in rows]
    return sorted(claims, key=lambda c: c.trial_index)


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
    return None if row is None else _claim_of(row, worker)


def _claim_of(row: sa.Row, worker: str) -> Claim:
    return Claim(
        trial_id=row.id,
        experiment_id=row.experiment_id,
        trial_index=row.trial_index,
        seed=row.seed,
        subset=bytes(row.subset),
        attempt=row.attempts,
        worker=worker,
    )


def fence(claim: Claim) -> dict[str, object]:
    """Parameters of statements.FENCED: writes of a stale claim match no row."""
    return {"trial_id": claim.trial_id, "attempt": claim.attempt}


def heartbeat(engine: Engine, claim: Claim, lease_seconds: float) -> None:
    """Extend the lease; raises LeaseLost if the claim is no longer current."""
    with one_statement(engine) as conn:
        updated = conn.execute(
            statements.HEARTBEAT, {**fence(claim), "lease": float(lease_seconds)}
        ).rowcount
    if updated != 1:
        raise LeaseLost(f"trial {claim.trial_id} attempt {claim.attempt} lost its lease")


def heartbeat_many(engine: Engine, claims: list[Claim], lease_seconds: float) -> list[Claim]:
    """Extend the leases of a batch's claims in one statement; returns the claims that
    are no longer current (each one's trial was reaped or claimed again)."""
    if not claims:
        return []
    with one_statement(engine) as conn:
        current = set(
            conn.execute(
                statements.HEARTBEAT_MANY,
                {
                    "claims": [(c.trial_id, c.attempt) for c in claims],
                    "lease": float(lease_seconds),
                },
            ).scalars()
        )
    return [c for c in claims if c.trial_id not in current]


#: Claims since the last retry that ended in an error (the current one included).
FAILURES = trials.c.attempts - trials.c.retried_attempts - trials.c.preemptions - trials.c.lost


def released(exhausted: sa.ColumnElement[bool]) -> dict[str, object]:
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
                **released(FAILURES >= max_attempts),
            )
            .returning(trials.c.status),
            fence(claim),
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
                **released(exhausted),
                preemptions=trials.c.preemptions + 1,
                error=sa.case((exhausted, sa.literal(message)), else_=trials.c.error),
            )
            .returning(trials.c.status),
            fence(claim),
        ).one_or_none()
    return None if row is None else TrialStatus(row.status)


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
