"""A trial worker that needs only the database: ``memtail worker``.

It claims pending trials of the experiments it serves straight from the database (the
claim is the whole protocol; a broker message for a trial it took is dropped by whoever
receives it), trains and stores them with the same runner as every other worker, and
exits on its own once none of its experiments has had a claimable trial for
``idle_exit`` seconds, so that a cluster allocation (``memtail slurm submit``) is given
back instead of idling to its time limit. SIGTERM (SLURM's warning signal before the
time limit, ``scancel``) saves the trial in progress and hands it back
(``memtail.work.preemption``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from memtail.config import Settings
from memtail.store.engine import Engine, with_retries
from memtail.store.experiments import active_experiment_ids
from memtail.work import preemption
from memtail.work.handled import Handled, TrialReport
from memtail.work.runner import TrialRunner

log = logging.getLogger(__name__)

#: Seconds between looks for a claimable trial while there is none.
POLL_SECONDS = 1.0


@dataclass
class PullSummary:
    """What a worker did before it exited, and why it exited."""

    reports: list[TrialReport] = field(default_factory=list)
    reason: str = ""

    def count(self, status: Handled) -> int:
        return sum(1 for report in self.reports if report.status == status)


def pull(
    engine: Engine,
    settings: Settings,
    name: str,
    *,
    experiments: list[int] | None,
    idle_exit: float,
    on_report: Callable[[TrialReport], None] = lambda report: None,
) -> PullSummary:
    """Claim and run trials of ``experiments`` (None: every active experiment) until
    none was claimable for ``idle_exit`` seconds, or the process was told to stop."""
    runner = TrialRunner(engine, settings, name)
    summary = PullSummary()
    idle_since = time.monotonic()
    while True:
        if preemption.requested():
            summary.reason = "told to stop (SIGTERM)"
            return summary
        reports = _run_next(engine, runner, experiments)
        if not reports:
            idle = time.monotonic() - idle_since
            if idle >= idle_exit:
                summary.reason = f"no claimable trial for {idle:.0f} s (--idle-exit {idle_exit:g})"
                return summary
            time.sleep(min(POLL_SECONDS, max(0.0, idle_exit - idle)))
            continue
        for report in reports:
            summary.reports.append(report)
            on_report(report)
        idle_since = time.monotonic()


def _run_next(
    engine: Engine, runner: TrialRunner, experiments: list[int] | None
) -> list[TrialReport]:
    """The next trials (a batch, or one) of the first served experiment that has any."""
    active = with_retries(lambda: active_experiment_ids(engine))
    served = active if experiments is None else [e for e in experiments if e in active]
    for experiment_id in served:
        reports = runner.run_next(experiment_id)
        if reports:
            return reports
    return []
