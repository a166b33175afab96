"""The rate `memtail status` and the summary show: live, over the recent window while
trials remain; a finished experiment's average over its run, not its last rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.store import lifecycle
from memtail.store.experiments import get_experiment
from memtail.store.progress import progress
from memtail.store.tables import trials
from memtail.views.text import format_progress
from tests.helpers import make_experiment, run_all_trials


def _times(engine: Engine, experiment_id: int, minutes: list[tuple[float, float]]) -> None:
    """Set each stored trial's (started, finished) to that many minutes before now."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        ids = conn.execute(
            sa.select(trials.c.id)
            .where(trials.c.experiment_id == experiment_id, trials.c.status == "succeeded")
            .order_by(trials.c.trial_index)
        ).scalars()
        for trial_id, (started, finished) in zip(ids, minutes, strict=True):
            conn.execute(
                sa.update(trials)
                .where(trials.c.id == trial_id)
                .values(
                    started_at=now - timedelta(minutes=started),
                    finished_at=now - timedelta(minutes=finished),
                )
            )


def test_a_finished_experiment_shows_its_average_over_the_run(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=6).experiment
    run_all_trials(engine, exp.id, 20, 10)
    # Started 10 minutes ago; one trial a minute from 9 to 4 minutes ago, then idle.
    _times(engine, exp.id, [(10, 9), (9, 8), (8, 7), (7, 6), (6, 5), (5, 4)])
    done = progress(engine, get_experiment(engine, exp.id))
    # 6 trials over the 6 minutes from the first start to the last end; not 6 over the
    # 5 minutes between the first and the last end.
    assert done.rate_is_average and done.trials_per_minute == pytest.approx(1.0, rel=0.01)
    assert "1.0/min on average" in format_progress(done)


def test_a_running_experiment_shows_its_rate_over_the_recent_window(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=6).experiment
    run_all_trials(engine, exp.id, 20, 10)
    lifecycle.extend(engine, get_experiment(engine, exp.id), 7)  # one still to train
    # Two long ago, four in the last window: 4 minutes, 3, 2 and 1 ago, running for 6.
    _times(engine, exp.id, [(30, 29), (29, 28), (6, 4), (6, 3), (6, 2), (6, 1)])
    live = progress(engine, get_experiment(engine, exp.id))
    # 4 trials over the 5-minute window (the work began before it), not 4 over the 4
    # minutes since the window's first trial ended.
    assert not live.rate_is_average
    assert live.trials_per_minute == pytest.approx(4 / 5, rel=0.02)
    text = format_progress(live)
    assert "0.8/min  ETA" in text and "on average" not in text


def test_a_run_that_began_within_the_window_is_not_diluted(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=3).experiment
    run_all_trials(engine, exp.id, 20, 10)
    lifecycle.extend(engine, get_experiment(engine, exp.id), 4)
    # Resumed 2 minutes ago: three trials since.
    _times(engine, exp.id, [(2, 1.5), (2, 1), (2, 0.5)])
    live = progress(engine, get_experiment(engine, exp.id))
    assert live.trials_per_minute == pytest.approx(3 / 2, rel=0.02)
