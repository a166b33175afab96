"""Workers training batches (``training.trials_per_batch``): real trainers on a small
synthetic experiment, on PostgreSQL and SQLite. Each trial of a batch is claimed, fenced
and stored on its own; a lost claim, a failure or a stop request touches only its own
trials."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.config import Settings
from memtail.records import Experiment
from memtail.specification import ModelSpec, load_spec
from memtail.stats import bits
from memtail.store import reaper, trials
from memtail.store.engine import db_now_plus
from memtail.store.experiments import create_experiment
from memtail.store.tables import trial_outcomes
from memtail.store.tables import trials as trials_table
from memtail.work import preemption
from memtail.work.handled import Handled
from memtail.work.runner import TrialRunner
from tests.faults.faultinject.faultcluster import spec_toml
from tests.helpers import expire_lease


def _experiment(
    engine: Engine, tmp_path: Path, n_trials: int, per_batch: int, model: str = "mlp"
) -> Experiment:
    from memtail.training.datasets import load_dataset

    path = tmp_path / "batched.toml"
    path.write_text(spec_toml("batched", n_trials))
    spec = load_spec(path)
    spec = dataclasses.replace(
        spec,
        training=dataclasses.replace(spec.training, trials_per_batch=per_batch),
        model=ModelSpec(model, width=32) if model != "mlp" else spec.model,
    )
    data = load_dataset(spec.dataset, tmp_path)
    return create_experiment(engine, spec, data.example_set()).experiment


def _runner(engine: Engine, db_url: str, name: str = "batch-worker") -> TrialRunner:
    settings = Settings(database_url=db_url, device="cpu", lease_seconds=60, heartbeat_seconds=1)
    return TrialRunner(engine, settings, name)


def _trials(engine: Engine, experiment_id: int) -> list[sa.Row]:
    stored = (
        sa.select(sa.func.count())
        .where(trial_outcomes.c.trial_id == trials_table.c.id)
        .scalar_subquery()
    )
    with engine.connect() as conn:
        return conn.execute(
            sa.select(
                trials_table.c.trial_index,
                trials_table.c.status,
                trials_table.c.attempts,
                trials_table.c.preemptions,
                trials_table.c.worker,
                trials_table.c.error,
                stored.label("outcomes"),
            )
            .where(trials_table.c.experiment_id == experiment_id)
            .order_by(trials_table.c.trial_index)
        ).all()


@pytest.mark.timeout(180)
def test_a_worker_claims_and_stores_whole_batches(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    exp = _experiment(engine, tmp_path, 6, per_batch=4)
    runner = _runner(engine, db_url)
    first = runner.run_next(exp.id)
    assert [r.trial_index for r in first] == [0, 1, 2, 3]
    assert {r.status for r in first} == {Handled.SUCCEEDED}
    assert {r.batch_size for r in first} == {4}
    assert "one of a batch of 4" in str(first[0])
    second = runner.run_next(exp.id)
    assert [r.trial_index for r in second] == [4, 5]
    assert runner.run_next(exp.id) == []
    rows = _trials(engine, exp.id)
    assert [(r.status, r.attempts, r.outcomes) for r in rows] == [("succeeded", 1, 1)] * 6
    # A batched trial's stored bits are those of the same trial trained alone, up to the
    # few examples that sit on a decision boundary.
    from memtail.training.datasets import load_dataset
    from memtail.training.trainer import Trainer

    with engine.connect() as conn:
        row = conn.execute(
            sa.select(trials_table.c.subset, trials_table.c.seed, trial_outcomes.c.train_correct)
            .join(trial_outcomes, trial_outcomes.c.trial_id == trials_table.c.id)
            .where(trials_table.c.experiment_id == exp.id, trials_table.c.trial_index == 1)
        ).one()
    dataset = load_dataset(exp.spec.dataset, tmp_path)
    alone = Trainer(dataset, device="cpu").run(
        exp.spec.model, exp.spec.training, bits.unpack(row.subset, exp.n_train), row.seed
    )
    stored = bits.unpack(row.train_correct, exp.n_train)
    assert np.mean(stored != alone.train_correct) <= 0.02


@pytest.mark.timeout(180)
def test_a_zombie_member_cannot_store_and_the_others_do(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    exp = _experiment(engine, tmp_path, 4, per_batch=4)
    claims = trials.claim_batch(engine, exp.id, "slow-worker", 60, limit=4)
    # Member 2's lease runs out and another worker claims its trial again.
    expire_lease(engine, claims[2].trial_id)
    reaper.reap(engine, max_lost=5)
    retaken = trials.claim_batch(engine, exp.id, "other-worker", 60, limit=4)
    assert [c.trial_index for c in retaken] == [2]

    reports = _runner(engine, db_url, "slow-worker").run_batch(claims)

    assert [r.status for r in reports] == [
        Handled.SUCCEEDED,
        Handled.SUCCEEDED,
        Handled.LOST,
        Handled.SUCCEEDED,
    ]
    rows = _trials(engine, exp.id)
    assert rows[2].status == "running" and rows[2].worker == "other-worker"
    assert rows[2].outcomes == 0 and rows[2].attempts == 2
    assert [r.outcomes for r in rows] == [1, 1, 0, 1]


@pytest.mark.timeout(180)
def test_a_failing_member_fails_alone(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memtail.training import batch

    real = batch.train_batch

    def one_fails(*args, **kwargs):
        results = real(*args, **kwargs)
        results[1] = RuntimeError("planted failure")
        return results

    monkeypatch.setattr(batch, "train_batch", one_fails)
    exp = _experiment(engine, tmp_path, 3, per_batch=3)
    reports = _runner(engine, db_url).run_next(exp.id)
    assert [r.status for r in reports] == [Handled.SUCCEEDED, Handled.PENDING, Handled.SUCCEEDED]
    rows = _trials(engine, exp.id)
    assert [r.status for r in rows] == ["succeeded", "pending", "succeeded"]
    assert "planted failure" in rows[1].error and rows[1].outcomes == 0


@pytest.mark.timeout(180)
def test_a_whole_batch_failure_is_each_trials_attempt(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memtail.training import batch

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (planted)")

    monkeypatch.setattr(batch, "train_batch", out_of_memory)
    exp = _experiment(engine, tmp_path, 3, per_batch=3)
    reports = _runner(engine, db_url).run_next(exp.id)
    assert [r.status for r in reports] == [Handled.PENDING] * 3
    rows = _trials(engine, exp.id)
    assert [(r.status, r.attempts, r.outcomes) for r in rows] == [("pending", 1, 0)] * 3
    assert all("out of memory" in r.error for r in rows)


@pytest.mark.timeout(180)
def test_a_stop_request_hands_the_batch_back(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(preemption, "requested", lambda: True)
    exp = _experiment(engine, tmp_path, 3, per_batch=3)
    reports = _runner(engine, db_url).run_next(exp.id)
    assert [r.status for r in reports] == [Handled.PREEMPTED] * 3
    rows = _trials(engine, exp.id)
    assert [(r.status, r.preemptions, r.outcomes) for r in rows] == [("pending", 1, 0)] * 3


def test_networks_that_do_not_stack_run_one_at_a_time(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    exp = _experiment(engine, tmp_path, 2, per_batch=8, model="cnn")
    runner = _runner(engine, db_url)
    assert runner._fitter.batch_limit(exp.id) == 1


@pytest.mark.timeout(300)
def test_memtail_run_trains_in_batches_end_to_end(tmp_path: Path) -> None:
    """The embedded run's worker processes claim, train and store whole batches."""
    import os
    import sqlite3
    import subprocess
    import sys

    spec = tmp_path / "batched.toml"
    spec.write_text(spec_toml("batched-run", 24) + "trials_per_batch = 8\n")
    out = tmp_path / "run"
    memtail = str(Path(sys.executable).parent / "memtail")
    result = subprocess.run(
        [memtail, "run", str(spec), "--out", str(out), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("MEMTAIL_")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with sqlite3.connect(out / "memtail.db") as conn:
        assert conn.execute(
            "SELECT status, count(*), max(attempts) FROM trials GROUP BY status"
        ).fetchall() == [("succeeded", 24, 1)]
        assert conn.execute("SELECT count(*) FROM trial_outcomes").fetchone() == (24,)
        # A batch is claimed by one statement: its trials share a worker and a start.
        batches = conn.execute(
            "SELECT count(*) FROM trials GROUP BY worker, started_at ORDER BY 1"
        ).fetchall()
    assert [n for (n,) in batches] == [8, 8, 8]


@pytest.mark.timeout(180)
def test_a_celery_chain_trains_its_message_trial_in_a_batch_of_undispatched_ones(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    exp = _experiment(engine, tmp_path, 8, per_batch=3)
    with engine.connect() as conn:
        ids = (
            conn.execute(
                sa.select(trials_table.c.id)
                .where(trials_table.c.experiment_id == exp.id)
                .order_by(trials_table.c.trial_index)
            )
            .scalars()
            .all()
        )
    # Trials 0-2 have broker messages (0 is the one being handled); 3-7 have none.
    with engine.begin() as conn:
        conn.execute(
            sa.update(trials_table)
            .where(trials_table.c.id.in_(ids[:3]))
            .values(dispatched_at=db_now_plus(0))
        )
    runner = _runner(engine, db_url)
    reports = runner.run_chain(ids[0], budget_seconds=600)
    assert [r.trial_index for r in reports] == [0, 3, 4, 5, 6, 7]
    assert [r.batch_size for r in reports] == [3] * 6  # [0, 3, 4], then [5, 6, 7]
    assert {r.status for r in reports} == {Handled.SUCCEEDED}
    rows = _trials(engine, exp.id)
    assert [r.status for r in rows[:3]] == ["succeeded", "pending", "pending"]
    # No budget: the message's trial alone.
    alone = runner.run_chain(ids[1], budget_seconds=0)
    assert [(r.trial_index, r.batch_size) for r in alone] == [(1, 1)]
