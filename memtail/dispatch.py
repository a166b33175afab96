"""Dispatch: turning pending trials into broker messages, a bounded window at a time.

The coordinator's side of the trial lifecycle (``memtail.trials`` is the workers' side).
The database says what was sent (``trials.dispatched_at``); a broker message only says
"run trial 17", and a duplicate is harmless because its claim finds the trial taken.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.db.engine import db_now_plus, is_postgres, transaction
from memtail.db.tables import trials


def dispatch(
    engine: Engine,
    experiment_id: int,
    send: Callable[[int], None],
    *,
    window: int,
    redispatch_after: float,
) -> int:
    """Send messages for pending trials, keeping at most ``window`` queued.

    Rows are marked dispatched before sending; if sending fails they are unmarked. A
    crash between the commit and the send loses those messages only until
    ``redispatch_after`` seconds pass, when the trials count as undelivered and go again
    (a duplicate message is harmless: its claim finds the trial no longer pending).
    """
    stale = db_now_plus(-redispatch_after)
    queued = sa.and_(trials.c.dispatched_at.is_not(None), trials.c.dispatched_at >= stale)
    with transaction(engine) as conn:
        in_queue = conn.execute(
            sa.select(sa.func.count())
            .select_from(trials)
            .where(trials.c.experiment_id == experiment_id, trials.c.status == "pending", queued)
        ).scalar_one()
        room = window - in_queue
        if room <= 0:
            return 0
        query = (
            sa.select(trials.c.id)
            .where(
                trials.c.experiment_id == experiment_id,
                trials.c.status == "pending",
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
    sent = 0
    try:
        for trial_id in ids:
            send(trial_id)
            sent += 1
    finally:
        if sent < len(ids):
            with transaction(engine) as conn:
                conn.execute(
                    sa.update(trials)
                    .where(trials.c.id.in_(ids[sent:]), trials.c.status == "pending")
                    .values(dispatched_at=None)
                )
    return sent


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
        trials.c.status == "pending",
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
