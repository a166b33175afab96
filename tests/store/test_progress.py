"""What `memtail status`, `top` and `pairs` compute, on both backends."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from memtail.store.experiments import get_experiment
from memtail.store.progress import progress
from memtail.store.results import top_memorized
from memtail.views.text import format_progress, format_top
from memtail.work import estimator
from tests.helpers import make_experiment, run_all_trials


def test_progress_of_a_running_and_a_finished_experiment(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=6).experiment
    fresh = progress(engine, exp)
    assert fresh.done == 0 and fresh.trials_per_minute == 0 and fresh.eta_seconds is None
    assert "estimate: none yet" in format_progress(fresh)

    run_all_trials(engine, exp.id, 20, 10)
    estimator.estimate_experiment(engine, exp.id)
    done = progress(engine, get_experiment(engine, exp.id))
    assert done.counts == {"pending": 0, "running": 0, "succeeded": 6, "failed": 0}
    assert done.eta_seconds == 0.0
    # Finished: the rate is that of the run's last window, not diluted by time since.
    assert done.trials_per_minute > 0
    assert done.last_estimate_trials == 6
    text = format_progress(done)
    assert "[complete]" in text and "6/6 trials" in text and "#" * 30 in text


def test_top_memorized_is_sorted_with_labels(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=12).experiment
    run_all_trials(engine, exp.id, 20, 10)
    estimator.estimate_experiment(engine, exp.id)
    rows = top_memorized(engine, exp.id, limit=5)
    assert len(rows) == 5
    assert [r.mem for r in rows] == sorted((r.mem for r in rows), reverse=True)
    assert all(r.ci_low <= r.mem <= r.ci_high and r.source.startswith("train-") for r in rows)
    assert "95% interval" in format_top(rows)
