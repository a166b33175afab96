"""How far an experiment is: trial counts, the rate of recent trials, the latest estimate.

Rates come from trial finish times in the database, so any process (even on another
host) sees the same progress the workers make.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.records import FEATURE_TRIAL, Experiment
from memtail.specification import ExperimentKind
from memtail.status import EstimateRunStatus, TrialStatus
from memtail.store.engine import as_utc, db_now_plus, transaction
from memtail.store.tables import PAIRS_VIEW, estimate_runs, memorization, trials

#: The live rate's window: long enough to hold several trials of minutes each.
RATE_WINDOW_SECONDS = 300.0


@dataclass(frozen=True)
class Progress:
    experiment: Experiment
    counts: dict[TrialStatus, int]
    #: While work goes on (a trial runs, or one was stored within the window): trials per
    #: minute over the last RATE_WINDOW_SECONDS (a stall shows as a falling rate). Once
    #: all have ended, or while none runs (paused, no worker): the run's average, from its
    #: first stored trial's start to its last's end (0: too few to say).
    trials_per_minute: float
    last_estimate_at: datetime | None
    last_estimate_trials: int | None
    now: datetime
    memorized: int  # examples with mem >= the experiment's threshold
    failures: list[tuple[int, str]]  # (trial_index, error) of failed trials
    #: Test accuracy of the trained models: mean, standard deviation, min, max over the
    #: succeeded trials (None before the first).
    test_accuracy: tuple[float, float, float, float] | None = None
    #: Rows of the high_influence_pairs view (the paper's rule).
    pairs: int = 0
    #: Of the latest estimate: pairs in the influence table (infl >= threshold), and how
    #: many of them chance alone would give (None before the first estimate).
    influence_rows: int | None = None
    expected_false_pairs: float | None = None
    #: The stopping rules' values on the latest estimate (``estimate_runs.rules``).
    stopping: dict[str, Any] | None = None
    #: Succeeded trials that resumed from a checkpoint, and the training seconds that
    #: saved (work earlier attempts did that the resumed ones did not repeat).
    resumed: int = 0
    resumed_seconds: float = 0.0
    #: Times workers were told to stop and handed a trial of this experiment back.
    preemptions: int = 0
    #: Claims lost to workers that died under a trial (killed, out of memory, a lease
    #: that expired): retried, and bounded apart from failures (MEMTAIL_MAX_LOST).
    lost: int = 0
    #: ``trials_per_minute`` is the run's average (finished or idle), not a live rate.
    rate_is_average: bool = False

    @property
    def done(self) -> int:
        return self.counts[TrialStatus.SUCCEEDED] + self.counts[TrialStatus.FAILED]

    @property
    def eta_seconds(self) -> float | None:
        remaining = self.experiment.target_trials - self.done
        if remaining <= 0:
            return 0.0
        # An idle experiment's average says how fast it went, not when it will end.
        if self.trials_per_minute <= 0 or self.rate_is_average:
            return None
        return 60.0 * remaining / self.trials_per_minute


def _subset_models(experiment: Experiment) -> list[sa.ColumnElement[bool]]:
    """Which succeeded trials' accuracies describe the experiment's subset models: all,
    except a probe's feature trial (a network trained on every example)."""
    if experiment.kind == ExperimentKind.PROBE:
        return [trials.c.trial_index != FEATURE_TRIAL]
    return []


def progress(engine: Engine, experiment: Experiment) -> Progress:
    """Everything ``memtail status`` and the pages show of an experiment, read in one
    read-only transaction, so that the numbers agree with each other."""
    mine = trials.c.experiment_id == experiment.id
    with transaction(engine, readonly=True) as conn:
        counts = _counts(conn, mine)
        remaining = counts[TrialStatus.PENDING] + counts[TrialStatus.RUNNING] > 0
        now = conn.execute(sa.select(db_now_plus(0))).scalar_one()
        now = as_utc(now) if isinstance(now, datetime) else datetime.now(UTC)
        rate = _live_rate(conn, experiment, now) if remaining else 0.0
        # Idle (nothing runs, nothing stored within the window): a live 0/min would say
        # only that no one works on it now; its average says how fast it went.
        live = counts[TrialStatus.RUNNING] > 0 or rate > 0
        if not live:
            rate = _average_rate(conn, experiment)
        accuracy = _accuracy(conn, experiment)
        pairs = _pairs(conn, experiment.id)
        run = _latest_run(conn, experiment.id)
        memorized = _memorized(conn, experiment)
        resumed, saved, preempted, lost = _interruptions(conn, mine)
        failures = _failures(conn, mine)
    return Progress(
        experiment=experiment,
        counts=counts,
        trials_per_minute=rate,
        rate_is_average=not live,
        last_estimate_at=as_utc(run.finished_at) if run else None,
        last_estimate_trials=run.trials_used if run else None,
        now=now,
        memorized=memorized,
        failures=failures,
        test_accuracy=accuracy,
        pairs=pairs,
        influence_rows=run.influence_rows if run else None,
        expected_false_pairs=run.expected_false_pairs if run else None,
        stopping=run.rules if run else None,
        resumed=resumed,
        resumed_seconds=saved,
        preemptions=preempted,
        lost=lost,
    )


def _counts(conn: sa.Connection, mine: sa.ColumnElement[bool]) -> dict[TrialStatus, int]:
    rows = conn.execute(
        sa.select(trials.c.status, sa.func.count()).where(mine).group_by(trials.c.status)
    ).all()
    counts = dict.fromkeys(TrialStatus, 0)
    counts.update({TrialStatus(status): int(n) for status, n in rows})
    return counts


def _accuracy(
    conn: sa.Connection, experiment: Experiment
) -> tuple[float, float, float, float] | None:
    accuracy = conn.execute(
        sa.select(
            sa.func.count(trials.c.test_accuracy),
            sa.func.avg(trials.c.test_accuracy),
            sa.func.avg(trials.c.test_accuracy * trials.c.test_accuracy),
            sa.func.min(trials.c.test_accuracy),
            sa.func.max(trials.c.test_accuracy),
        ).where(
            trials.c.experiment_id == experiment.id,
            trials.c.status == TrialStatus.SUCCEEDED,
            *_subset_models(experiment),
        )
    ).one()
    return _spread(*accuracy)


def _pairs(conn: sa.Connection, experiment_id: int) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(PAIRS_VIEW)
            .where(PAIRS_VIEW.c.experiment_id == experiment_id)
        ).scalar_one()
    )


def _latest_run(conn: sa.Connection, experiment_id: int) -> sa.Row | None:
    return conn.execute(
        sa.select(
            estimate_runs.c.finished_at,
            estimate_runs.c.trials_used,
            estimate_runs.c.influence_rows,
            estimate_runs.c.expected_false_pairs,
            estimate_runs.c.rules,
        )
        .where(
            estimate_runs.c.experiment_id == experiment_id,
            estimate_runs.c.status == EstimateRunStatus.SUCCEEDED,
        )
        .order_by(estimate_runs.c.id.desc())
        .limit(1)
    ).one_or_none()


def _memorized(conn: sa.Connection, experiment: Experiment) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(
                memorization.c.experiment_id == experiment.id,
                memorization.c.mem >= experiment.spec.estimate.mem_threshold,
            )
        ).scalar_one()
    )


def _interruptions(
    conn: sa.Connection, mine: sa.ColumnElement[bool]
) -> tuple[int, float, int, int]:
    """Trials resumed from a checkpoint, the training seconds that saved, trials handed
    back by workers told to stop, and claims lost to workers that died."""
    resumed, saved, preempted, lost = conn.execute(
        sa.select(
            sa.func.count(trials.c.resumed_seconds),
            sa.func.coalesce(sa.func.sum(trials.c.resumed_seconds), 0.0),
            sa.func.coalesce(sa.func.sum(trials.c.preemptions), 0),
            sa.func.coalesce(sa.func.sum(trials.c.lost), 0),
        ).where(mine)
    ).one()
    return int(resumed), float(saved), int(preempted), int(lost)


def _failures(conn: sa.Connection, mine: sa.ColumnElement[bool]) -> list[tuple[int, str]]:
    """The first five failed trials, with their errors."""
    rows = conn.execute(
        sa.select(trials.c.trial_index, trials.c.error)
        .where(mine, trials.c.status == TrialStatus.FAILED)
        .order_by(trials.c.trial_index)
        .limit(5)
    ).all()
    return [(int(i), str(e)) for i, e in rows]


def _live_rate(conn: sa.Connection, experiment: Experiment, now: datetime) -> float:
    """Trials stored per minute over the last RATE_WINDOW_SECONDS, or since the work now
    going on began (the earliest start of a trial stored in the window or running), if
    later: a run that resumed a minute ago is not diluted by the idle time before."""
    since = now - timedelta(seconds=RATE_WINDOW_SECONDS)
    mine = trials.c.experiment_id == experiment.id
    recent = sa.and_(
        mine,
        trials.c.status == TrialStatus.SUCCEEDED,
        trials.c.finished_at >= db_now_plus(-RATE_WINDOW_SECONDS),
    )
    count = conn.execute(sa.select(sa.func.count()).where(recent)).scalar_one()
    if not count:
        return 0.0
    began = conn.execute(
        sa.select(sa.func.min(trials.c.started_at)).where(
            sa.or_(recent, sa.and_(mine, trials.c.status == TrialStatus.RUNNING))
        )
    ).scalar_one()
    if isinstance(began, datetime):
        since = max(since, as_utc(began))
    return 60.0 * count / max((now - since).total_seconds(), 1.0)


def _average_rate(conn: sa.Connection, experiment: Experiment) -> float:
    """Trials stored per minute over the whole run: from the first stored trial's start to
    the last one's end (0 with fewer than two, where a rate says nothing)."""
    count, began, ended = conn.execute(
        sa.select(
            sa.func.count(), sa.func.min(trials.c.started_at), sa.func.max(trials.c.finished_at)
        ).where(trials.c.experiment_id == experiment.id, trials.c.status == TrialStatus.SUCCEEDED)
    ).one()
    if count < 2 or not isinstance(began, datetime) or not isinstance(ended, datetime):
        return 0.0
    return 60.0 * count / max((as_utc(ended) - as_utc(began)).total_seconds(), 1.0)


def _spread(
    n: int, mean: float | None, mean_square: float | None, low: float | None, high: float | None
) -> tuple[float, float, float, float] | None:
    if not n or mean is None or mean_square is None:
        return None
    std = max(float(mean_square) - float(mean) ** 2, 0.0) ** 0.5
    return float(mean), std, float(low), float(high)


def feature_accuracy(engine: Engine, experiment: Experiment) -> float | None:
    """Test accuracy of a probe's feature network (trained on every example), once stored."""
    with transaction(engine, readonly=True) as conn:
        return conn.execute(
            sa.select(trials.c.test_accuracy).where(
                trials.c.experiment_id == experiment.id,
                trials.c.trial_index == FEATURE_TRIAL,
                trials.c.status == TrialStatus.SUCCEEDED,
            )
        ).scalar_one_or_none()
