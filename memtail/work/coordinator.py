"""The coordinator: keep every active experiment's queue filled, reap dead leases.

The database decides what needs running; the coordinator only turns "pending and not
recently dispatched" rows into broker messages, a bounded window at a time. Restarting it
is always safe: its state is the ``trials`` table.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from memtail.config import Settings
from memtail.store import artifacts, reaper
from memtail.store import dispatch as dispatch_state
from memtail.store.engine import Engine
from memtail.store.experiments import active_experiment_ids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassReport:
    dispatched: int
    requeued: int
    failed: int
    lost: int = 0


# Seconds a fresh message may take from publish to the queue count (and to a claim).
LOST_GRACE_SECONDS = 10.0


def dispatch(
    engine: Engine,
    experiment_id: int,
    send: Callable[[int], None],
    *,
    window: int,
    redispatch_after: float,
) -> int:
    """Send messages for pending trials, keeping at most ``window`` queued; how many sent.

    Rows are marked dispatched before sending; if sending fails the unsent ones are
    unmarked. A crash between the mark and the send loses those messages only until
    ``redispatch_after`` seconds pass, when the trials count as undelivered and go again
    (a duplicate message is harmless: its claim finds the trial no longer pending).
    """
    ids = dispatch_state.reserve(
        engine, experiment_id, window=window, redispatch_after=redispatch_after
    )
    sent = 0
    try:
        for trial_id in ids:
            send(trial_id)
            sent += 1
    finally:
        if sent < len(ids):
            dispatch_state.release(engine, ids[sent:])
    return sent


def coordinate_once(
    engine: Engine,
    settings: Settings,
    send: Callable[[int], None],
    broker_depth: Callable[[], int] | None = None,
) -> PassReport:
    """One pass: reap expired leases, re-send lost messages, top up every window."""
    reaped = reaper.reap(engine, settings.max_lost, settings.lease_seconds)
    artifacts.sweep(engine, artifacts.ABANDONED_SECONDS, folder=settings.artifact_folder)
    lost = 0
    if broker_depth is not None:
        lost = dispatch_state.forget_lost_dispatches(engine, broker_depth(), LOST_GRACE_SECONDS)
    dispatched = 0
    for experiment_id in active_experiment_ids(engine):
        dispatched += dispatch(
            engine,
            experiment_id,
            send,
            window=settings.dispatch_window,
            redispatch_after=settings.redispatch_after,
        )
    return PassReport(dispatched, reaped.requeued, reaped.failed, lost)


def run_forever(
    engine: Engine,
    settings: Settings,
    send: Callable[[int], None],
    stop: threading.Event,
    broker_depth: Callable[[], int] | None = None,
) -> None:
    """Coordinate until ``stop`` is set; survive database and broker outages with backoff."""
    backoff = settings.coordinator_interval
    while not stop.is_set():
        try:
            report = coordinate_once(engine, settings, send, broker_depth)
            if report.dispatched or report.requeued or report.failed or report.lost:
                log.info(
                    "dispatched %d (%d presumed lost by the broker), requeued %d expired, "
                    "failed %d",
                    report.dispatched,
                    report.lost,
                    report.requeued,
                    report.failed,
                )
            backoff = settings.coordinator_interval
        except Exception as error:  # noqa: BLE001 - kombu and psycopg2 raise their own types
            # PostgreSQL restarting or the broker unreachable: wait and retry, never exit;
            # nothing is lost because the next pass re-reads the truth from the database.
            log.warning("coordinator pass failed (%r); retrying in %.0fs", error, backoff)
            backoff = min(backoff * 2, 60.0)
            stop.wait(backoff)
            continue
        stop.wait(settings.coordinator_interval)
    log.info("coordinator stopped")
