"""TrialRunner chains: a message's trial, then undispatched trials straight from the database.

Real trainers on a small synthetic experiment, on PostgreSQL and SQLite. The chain must
take only trials without a broker message, respect its time budget, stop after a trial
that did not succeed, and have every store finished (on the writer thread, overlapping
the next trial's training) before it returns.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.config import Settings
from memtail.store import outcomes
from memtail.store.tables import trial_outcomes
from memtail.store.tables import trials as trials_table
from memtail.work.runner import TrialRunner
from tests.helpers import trained_experiment


def _rows(engine: Engine, experiment_id: int) -> list[sa.Row]:
    outcomes = (
        sa.select(sa.func.count())
        .where(trial_outcomes.c.trial_id == trials_table.c.id)
        .scalar_subquery()
    )
    with engine.connect() as conn:
        return conn.execute(
            sa.select(
                trials_table.c.id,
                trials_table.c.trial_index,
                trials_table.c.status,
                trials_table.c.attempts,
                outcomes.label("outcomes"),
            )
            .where(trials_table.c.experiment_id == experiment_id)
            .order_by(trials_table.c.trial_index)
        ).all()


def _mark_dispatched(engine: Engine, ids: list[int]) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.update(trials_table)
            .where(trials_table.c.id.in_(ids))
            .values(dispatched_at=sa.func.current_timestamp())
        )


def _runner(engine: Engine, db_url: str) -> TrialRunner:
    settings = Settings(database_url=db_url, device="cpu", lease_seconds=60, heartbeat_seconds=1)
    return TrialRunner(engine, settings, "chain-worker")


@pytest.mark.timeout(120)
def test_chain_takes_undispatched_trials_and_leaves_queued_ones(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    exp = trained_experiment(engine, tmp_path, "chain", 6)
    rows = _rows(engine, exp.id)
    # Trials 0-2 have broker messages (0 is the message being handled); 3-5 have none.
    _mark_dispatched(engine, [r.id for r in rows[:3]])

    reports = _runner(engine, db_url).run_chain(rows[0].id, budget_seconds=600)

    assert [r.trial_id for r in reports] == [rows[i].id for i in (0, 3, 4, 5)]
    assert {r.status for r in reports} == {"succeeded"}
    after = _rows(engine, exp.id)
    assert [(r.status, r.outcomes) for r in after] == [
        ("succeeded", 1),
        ("pending", 0),  # still queued in the broker: its message will run it
        ("pending", 0),
        ("succeeded", 1),
        ("succeeded", 1),
        ("succeeded", 1),
    ]


@pytest.mark.timeout(120)
def test_chain_budget_zero_runs_only_the_message_trial(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    exp = trained_experiment(engine, tmp_path, "nochain", 3)
    rows = _rows(engine, exp.id)
    reports = _runner(engine, db_url).run_chain(rows[1].id, budget_seconds=0)
    assert [(r.trial_id, r.status) for r in reports] == [(rows[1].id, "succeeded")]
    assert [r.status for r in _rows(engine, exp.id)] == ["pending", "succeeded", "pending"]


@pytest.mark.timeout(120)
def test_a_duplicate_message_neither_trains_nor_chains(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    exp = trained_experiment(engine, tmp_path, "dup", 3)
    rows = _rows(engine, exp.id)
    runner = _runner(engine, db_url)
    assert [r.status for r in runner.run_chain(rows[0].id, budget_seconds=0)] == ["succeeded"]
    assert [r.status for r in runner.run_chain(rows[0].id, budget_seconds=600)] == ["skipped"]
    assert [r.status for r in _rows(engine, exp.id)] == ["succeeded", "pending", "pending"]


@pytest.mark.timeout(120)
def test_chain_stops_after_a_failed_trial(engine: Engine, db_url: str, tmp_path: Path) -> None:
    exp = trained_experiment(engine, tmp_path, "poison", 5)
    rows = _rows(engine, exp.id)
    runner = _runner(engine, db_url)
    trainer = runner._fitter.trainer(exp.id)[1]
    train = trainer.run
    calls = []

    def second_fails(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return train(*args, **kwargs)

    trainer.run = second_fails  # type: ignore[method-assign]
    reports = runner.run_chain(rows[0].id, budget_seconds=600)

    assert [(r.trial_id, r.status) for r in reports] == [
        (rows[0].id, "succeeded"),
        (rows[1].id, "pending"),  # attempt 1 of 3 failed: back to pending for a retry
    ]
    assert "illegal memory access" in (reports[1].error or "")
    after = _rows(engine, exp.id)
    assert [(r.status, r.attempts) for r in after] == [
        ("succeeded", 1),
        ("pending", 1),
        ("pending", 0),
        ("pending", 0),
        ("pending", 0),
    ]


@pytest.mark.timeout(120)
def test_stores_run_on_the_writer_thread_and_finish_before_the_chain_returns(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = trained_experiment(engine, tmp_path, "writer", 4)
    rows = _rows(engine, exp.id)
    store = outcomes.store
    threads: list[str] = []
    started = [0]  # trainings begun so far
    changed = threading.Condition()
    overlapped: list[bool] = []

    def recording_store(*args: object, **kwargs: object) -> None:
        threads.append(threading.current_thread().name)
        # Hold this store until the next trial's training has begun (or 5 s passed).
        with changed:
            seen = started[0]
            overlapped.append(changed.wait_for(lambda: started[0] > seen, timeout=5))
        store(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(outcomes, "store", recording_store)
    runner = _runner(engine, db_url)
    trainer = runner._fitter.trainer(exp.id)[1]
    train = trainer.run

    def signalling_train(*args: object, **kwargs: object) -> object:
        with changed:
            started[0] += 1
            changed.notify_all()
        return train(*args, **kwargs)

    trainer.run = signalling_train  # type: ignore[method-assign]
    reports = runner.run_chain(rows[0].id, budget_seconds=600)

    assert [r.status for r in reports] == ["succeeded"] * 4
    assert all(name.startswith("memtail-store") for name in threads) and len(threads) == 4
    # Stores 1-3 overlapped the next trial's training; the last had no next trial.
    assert overlapped == [True, True, True, False]
    assert [(r.status, r.outcomes) for r in _rows(engine, exp.id)] == [("succeeded", 1)] * 4
