"""A worker told to stop saves its trial, hands it back without a failed attempt, and the
next worker resumes it: a trial preempted again and again still finishes, with the bits
of one never interrupted; one preempted too often is reported. Real trainers, PostgreSQL
and SQLite."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.config import Settings
from memtail.records import Experiment
from memtail.specification import load_spec
from memtail.store import trials
from memtail.store.experiments import create_experiment
from memtail.store.tables import artifacts, trial_outcomes
from memtail.store.tables import trials as trials_table
from memtail.training.datasets import load_dataset
from memtail.work import preemption
from memtail.work.handled import Handled
from memtail.work.runner import TrialRunner
from tests.faults.faultinject.faultcluster import spec_toml


def _experiment(engine: Engine, tmp_path: Path, name: str) -> Experiment:
    path = tmp_path / f"{name}.toml"
    # [training] is spec_toml's last table: every epoch saves a checkpoint.
    path.write_text(spec_toml(name, 1, epochs=5) + 'checkpoint_every = "1"\n')
    spec = load_spec(path)
    data = load_dataset(spec.dataset, tmp_path)
    return create_experiment(engine, spec, data.example_set()).experiment


def _runner(engine: Engine, db_url: str, **settings: object) -> TrialRunner:
    values = {"database_url": db_url, "device": "cpu", "lease_seconds": 60, **settings}
    return TrialRunner(engine, Settings(**values), "preempted-worker")  # type: ignore[arg-type]


def _trial(engine: Engine, experiment: Experiment) -> sa.Row:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(
                trials_table,
                trial_outcomes.c.train_correct,
                trial_outcomes.c.test_correct,
            )
            .outerjoin(trial_outcomes, trial_outcomes.c.trial_id == trials_table.c.id)
            .where(trials_table.c.experiment_id == experiment.id)
        ).one()


def _checkpoints(engine: Engine, experiment: Experiment) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).where(artifacts.c.experiment_id == experiment.id)
        ).scalar_one()


def _every_third_step_stops() -> object:
    """A stop request on every third question: each attempt trains two steps."""
    calls = itertools.count(1)
    return lambda: next(calls) % 3 == 0


@pytest.mark.timeout(180)
def test_a_trial_preempted_again_and_again_still_finishes(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _experiment(engine, tmp_path, "uninterrupted")
    runner = _runner(engine, db_url)
    claim = trials.claim_next(engine, reference.id, "w", 60)
    assert claim is not None and runner.run_claimed(claim).status == Handled.SUCCEEDED

    cut = _experiment(engine, tmp_path, "preempted")
    monkeypatch.setattr(preemption, "requested", _every_third_step_stops())
    for times in range(1, 5):
        claim = trials.claim_next(engine, cut.id, "w", 60)
        assert claim is not None
        report = runner.run_claimed(claim)
        assert report.status == Handled.PREEMPTED, report
        row = _trial(engine, cut)
        # Pending again, the preemption counted apart from failures, the claim counter on.
        assert (row.status, row.preemptions, row.attempts) == ("pending", times, times)
        assert row.worker is None and row.error is None and _checkpoints(engine, cut) >= 1
    monkeypatch.setattr(preemption, "requested", lambda: False)
    claim = trials.claim_next(engine, cut.id, "w", 60)
    assert claim is not None and runner.run_claimed(claim).status == Handled.SUCCEEDED
    done, want = _trial(engine, cut), _trial(engine, reference)
    assert (done.status, done.preemptions, done.attempts) == ("succeeded", 4, 5)
    assert bytes(done.train_correct) == bytes(want.train_correct)
    assert bytes(done.test_correct) == bytes(want.test_correct)
    assert done.resumed_seconds > 0 and want.resumed_seconds is None
    assert _checkpoints(engine, cut) == 0  # gone once it succeeded


@pytest.mark.timeout(120)
def test_a_trial_preempted_too_often_is_reported(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut = _experiment(engine, tmp_path, "never-finishes")
    runner = _runner(engine, db_url, max_preemptions=2)
    monkeypatch.setattr(preemption, "requested", _every_third_step_stops())
    statuses = []
    for _ in range(2):
        claim = trials.claim_next(engine, cut.id, "w", 60)
        assert claim is not None
        statuses.append(runner.run_claimed(claim).status)
    assert statuses == [Handled.PREEMPTED, Handled.FAILED]
    row = _trial(engine, cut)
    assert (row.status, row.preemptions) == ("failed", 2)
    assert row.error.startswith("preempted 2 times: raise MEMTAIL_MAX_PREEMPTIONS")
