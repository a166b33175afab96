"""Duplicate messages, racing workers and zombies: one trial, one stored outcome.

In-process: real ``TrialRunner``s and ``Heartbeat``s (two per test, each with its own
engine, as two worker processes would have) on a real PostgreSQL database and a real
``Trainer``. With real processes: two Celery workers (the compose command), the same
``memtail.run_trial`` message published twice through ``memtail.work.broker.Broker``, and
a worker frozen with SIGSTOP until its lease was reaped and its trial re-run. Guarantees:
every trial ends exactly once, a zombie cannot store, duplicate messages are harmless.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.config import Settings
from memtail.store import reaper
from memtail.store.engine import make_engine
from memtail.work.broker import Broker
from memtail.work.runner import TrialRunner
from tests.faults.faultinject.faultcluster import cluster, memtail_cli, spec_toml, worker_log_counts
from tests.helpers import trained_experiment
from tests.processes import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]


def _trial_ids(engine: Engine, experiment_id: int) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text("SELECT id FROM trials WHERE experiment_id = :e ORDER BY trial_index"),
                {"e": experiment_id},
            ).scalars()
        )


def _state(engine: Engine, trial_id: int) -> tuple[sa.Row, list[sa.Row]]:
    with engine.connect() as conn:
        trial = conn.execute(
            sa.text("SELECT status, attempts, worker FROM trials WHERE id = :t"), {"t": trial_id}
        ).one()
        outcomes = conn.execute(
            sa.text("SELECT attempt FROM trial_outcomes WHERE trial_id = :t"), {"t": trial_id}
        ).all()
    return trial, outcomes


def _runner(url: str, settings: Settings, worker: str, experiment_id: int) -> TrialRunner:
    runner = TrialRunner(make_engine(url), settings, worker)
    runner._fitter.trainer(experiment_id)  # load the dataset now: the race is about claims
    return runner


def _hold_training(runner: TrialRunner, experiment_id: int, until: threading.Event) -> None:
    """Make the runner's next trial wait (as a slow or frozen worker) before training."""
    trainer = runner._fitter.trainer(experiment_id)[1]
    train = trainer.run

    def run(*args: object, **kwargs: object) -> object:
        assert until.wait(30)
        return train(*args, **kwargs)

    trainer.run = run  # type: ignore[method-assign]


@pytest.mark.timeout(120)
def test_two_runners_race_for_one_trial(pg_url: str, tmp_path: Path) -> None:
    engine = make_engine(pg_url)
    exp = trained_experiment(engine, tmp_path, "race", 2)
    settings = Settings(database_url=pg_url, device="cpu", lease_seconds=30, heartbeat_seconds=1)
    runners = [_runner(pg_url, settings, f"w{i}", exp.id) for i in range(2)]
    trial_id = _trial_ids(engine, exp.id)[0]
    start = threading.Barrier(2)
    reports: list[str] = []

    def race(runner: TrialRunner) -> None:
        start.wait()
        reports.append(runner.run(trial_id).status)

    threads = [threading.Thread(target=race, args=(r,)) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(reports) == ["skipped", "succeeded"]
    # A late duplicate of the same message: the trial is done, nothing runs.
    assert runners[0].run(trial_id).status == "skipped"
    trial, outcomes = _state(engine, trial_id)
    assert (trial.status, trial.attempts, len(outcomes)) == ("succeeded", 1, 1)


@pytest.mark.timeout(120)
def test_zombie_cannot_store_after_its_trial_was_reclaimed(pg_url: str, tmp_path: Path) -> None:
    engine = make_engine(pg_url)
    exp = trained_experiment(engine, tmp_path, "zombie", 2)
    healthy = Settings(database_url=pg_url, device="cpu", lease_seconds=30, heartbeat_seconds=0.2)
    first, second = _trial_ids(engine, exp.id)

    # 1. The zombie's heartbeat never runs (a frozen process, a partition): its lease of
    #    one second expires, the reaper requeues the trial and another worker runs it.
    frozen = dataclasses.replace(healthy, lease_seconds=1.0, heartbeat_seconds=3600.0)
    zombie = _runner(pg_url, frozen, "zombie", exp.id)
    thaw = threading.Event()
    _hold_training(zombie, exp.id, thaw)
    report: list[str] = []
    thread = threading.Thread(target=lambda: report.append(zombie.run(first).status))
    thread.start()
    wait_for(lambda: _state(engine, first)[0].status == "running", 30, "the zombie's claim")
    time.sleep(1.2)
    assert reaper.reap(engine, max_lost=3).requeued == 1
    assert _runner(pg_url, healthy, "new", exp.id).run(first).status == "succeeded"
    thaw.set()  # the zombie wakes up, finishes training and tries to store
    thread.join(60)
    assert report == ["lost"]
    trial, outcomes = _state(engine, first)
    assert (trial.status, trial.attempts, trial.worker) == ("succeeded", 2, "new")
    assert [o.attempt for o in outcomes] == [2]  # the new worker's result, stored once

    # 2. A zombie whose heartbeat still runs learns of the loss from it and stops
    #    training at the next epoch instead of finishing a trial nobody will keep.
    slow = _runner(pg_url, healthy, "slow", exp.id)
    go = threading.Event()
    _hold_training(slow, exp.id, go)
    report.clear()
    thread = threading.Thread(target=lambda: report.append(slow.run(second).status))
    thread.start()
    wait_for(lambda: _state(engine, second)[0].status == "running", 30, "the slow claim")
    for _ in range(20):  # the lease lapses (as if heartbeats were lost), then is reaped
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE trials SET lease_expires_at = now() - interval '1 second' WHERE id = :t"
                ),
                {"t": second},
            )
        if reaper.reap(engine, max_lost=3).requeued:
            break
    assert _runner(pg_url, healthy, "other", exp.id).run(second).status == "succeeded"
    time.sleep(0.5)  # a heartbeat of the slow runner now finds its claim gone
    go.set()
    thread.join(60)
    assert report == ["lost"]
    trial, outcomes = _state(engine, second)
    assert (trial.status, trial.worker, [o.attempt for o in outcomes]) == (
        "succeeded",
        "other",
        [2],
    )
    engine.dispose()


@pytest.mark.timeout(180)
def test_duplicate_messages_and_a_frozen_worker(pg_empty_url: str, tmp_path: Path) -> None:
    name = "faults-dup"
    # One trial per message (no chaining): the test counts what each message did.
    settings = {"lease_seconds": "3", "heartbeat_seconds": "1", "chain_seconds": "0"}
    with cluster(pg_empty_url, tmp_path, name, spec_toml(name, 3), **settings) as c:
        created = memtail_cli(
            c.procs.env, "experiment", "create", "--no-dispatch", str(tmp_path / f"{name}.toml")
        )
        assert created.returncode == 0, created.stderr
        for i in (1, 2):
            c.start_worker(f"worker{i}", MEMTAIL_TEST_SLOW_TRAINING="2")
        broker = Broker(Settings.from_env(c.procs.env))
        ids = [row.id for row in c.trials()]

        # The same message twice, with two idle workers: both take one; one stores.
        broker.send(ids[0])
        broker.send(ids[0])
        wait_for(
            lambda: sum(worker_log_counts(c.workers).values()) == 2,
            90,
            "both copies to be handled",
            c.procs,
        )
        assert worker_log_counts(c.workers) == {"succeeded": 1, "skipped": 1}

        # A worker frozen mid-training (SIGSTOP) loses its lease; the trial runs again on
        # the other worker; thawed, the old one must not store (its heartbeat is fenced).
        broker.send(ids[1])
        wait_for(lambda: bool(c.training_trials()), 60, "trial 2 in training", c.procs)
        ((trial_id, pid),) = c.training_trials()
        assert c.kill_pid(pid, signal.SIGSTOP)
        try:
            wait_for(
                lambda: reaper.reap(c.engine, max_lost=3).requeued == 1,
                30,
                "the frozen worker's lease to be reaped",
            )
            broker.send(trial_id)
            wait_for(lambda: c.succeeded() == 2, 60, "the re-run to succeed", c.procs)
        finally:
            c.kill_pid(pid, signal.SIGCONT)
        wait_for(
            lambda: worker_log_counts(c.workers)["lost"] == 1, 30, "the zombie to give up", c.procs
        )
        c.assert_all_alive()
        rows = {row.id: row for row in c.trials()}

    assert worker_log_counts(c.workers) == {"succeeded": 2, "skipped": 1, "lost": 1}
    assert rows[ids[0]].outcomes == 1 and rows[ids[0]].attempts == 1
    assert rows[trial_id].outcomes == 1 and rows[trial_id].attempts == 2
    assert rows[trial_id].status == "succeeded"
