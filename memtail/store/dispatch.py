"""Dispatch state: which pending trials have a broker message out (``trials.dispatched_at``).

The coordinator's side of the trial lifecycle (``memtail.store.trials`` is the workers'
side): it reserves a bounded window of pending trials, sends one message for each
(``memtail.work.coordinator``), and releases what it could not send. A broker message
only says "run trial 17"; a duplicate is harmless because its claim finds the trial taken.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.status import TrialStatus
from memtail.store.engine import db_now_plus, is_postgres, transaction
from memtail.store.statements import READY
from memtail.store.tables import trials

_PENDING = trials.c.status == TrialStatus.PENDING


def reserve(
    engine: Engine, experiment_id: int, *, window: int, redispatch_after: float
) -> list[int]:
    """Mark pending trials as dispatched so that at most ``window`` are queued; their ids.

    A trial counts as queued from its mark until ``redispatch_after`` seconds pass: a
    message lost after the mark (a crash between the commit and the send, a broker that
    lost its data) is sent again then. Lowest trial indexes go first.
    """
    stale = db_now_plus(-redispatch_after)
    queued = sa.and_(trials.c.dispatched_at.is_not(None), trials.c.dispatched_at >= stale)
    with transaction(engine) as conn:
        in_queue = conn.execute(
            sa.select(sa.func.count())
            .select_from(trials)
            .where(trials.c.experiment_id == experiment_id, _PENDING, queued)
        ).scalar_one()
        room = window - in_queue
        if room <= 0:
            return []
        query = (
            sa.select(trials.c.id)
            .where(
                trials.c.experiment_id == experiment_id,
                _PENDING,
                # A probe trial's message waits until its features exist: sent earlier, its
                # claim would fail and the trial would wait out ``redispatch_after``.
                READY,
                sa.or_(trials.c.dispatched_at.is_(None), trials.c.dispatched_at < stale),
            )
            .order_by(trials.c.trial_index)
            .limit(room)
        )
        if is_postgres(conn):
            # Two coordinators (a restart overlapping the old one) must not both send.
            query = query.with_for_update(skip_locked=True)
        ids = list(conn.execute(query).scalars())
        if ids:
            conn.execute(
                sa.update(trials).where(trials.c.id.in_(ids)).values(dispatched_at=db_now_plus(0))
            )
    return ids


def release(engine: Engine, trial_ids: list[int]) -> None:
    """Undo ``reserve`` for trials whose message was never sent (still pending ones only)."""
    with transaction(engine) as conn:
        conn.execute(
            sa.update(trials).where(trials.c.id.in_(trial_ids), _PENDING).values(dispatched_at=None)
        )


def forget_lost_dispatches(engine: Engine, broker_depth: int, grace_seconds: float) -> int:
    """Mark dispatched-but-unclaimed trials as undelivered when the broker lacks them.

    With late acks and prefetch 1, a message a worker holds belongs to a trial it already
    claimed (chains only ever claim trials without a message), so every pending trial
    dispatched more than ``grace_seconds`` ago should still be in the queue. When the
    queue holds fewer messages than that (the broker restarted without persistence, or a
    message was purged), the oldest ones are presumed lost and dispatched again at once
    instead of after ``redispatch_after``. A wrong guess only costs a duplicate message,
    which its claim drops.
    """
    waiting = sa.and_(
        _PENDING,
        trials.c.dispatched_at.is_not(None),
        trials.c.dispatched_at < db_now_plus(-grace_seconds),
    )
    with transaction(engine) as conn:
        expected = conn.execute(sa.select(sa.func.count()).where(waiting)).scalar_one()
        lost = expected - broker_depth
        if lost <= 0:
            return 0
        oldest = sa.select(trials.c.id).where(waiting).order_by(trials.c.dispatched_at).limit(lost)
        return conn.execute(
            sa.update(trials)
            .where(trials.c.id.in_(list(conn.execute(oldest).scalars())))
            .values(dispatched_at=None)
        ).rowcount
