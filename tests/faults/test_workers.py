"""Fault injection on workers: kill -9 mid-training, poison trials, and a chaos soak.

Real processes (the docker-compose.yml commands) against a per-test PostgreSQL database and
a private Redis; faults are injected by signals to processes this test started and by
``tests/faults/faultinject/sitecustomize.py`` inside the workers. Guarantees: every trial
ends exactly once, a worker dying costs at most the trial it trains, poison trials fail
alone.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
import redis

from memtail.stats.subsets import training_seed
from memtail.work.broker import TRIALS_QUEUE
from tests.faults.faultinject.faultcluster import cluster, memtail_cli, spec_toml, tally
from tests.processes import wait_for


class QueueDepths:
    """Samples the trials queue's length ten times a second until stopped; the largest."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._seen = [0]
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.1):
            try:
                self._seen.append(int(self._client.llen(TRIALS_QUEUE)))
            except redis.RedisError:
                pass

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return max(self._seen)


pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]


@pytest.mark.timeout(240)
def test_worker_killed_mid_training_three_times(pg_empty_url: str, tmp_path: Path) -> None:
    name, window = "faults-kill9", 4
    spec = spec_toml(name, 12)
    with cluster(pg_empty_url, tmp_path, name, spec, dispatch_window=str(window)) as c:
        c.start_all(concurrency=2, MEMTAIL_TEST_SLOW_TRAINING="1.5")
        depths = QueueDepths(c.redis[0])
        killed: dict[int, int] = {}  # trial id -> pid killed while training it
        deadline = time.monotonic() + 120
        while len(killed) < 3 and time.monotonic() < deadline:
            victims = [(t, pid) for t, pid in c.training_trials() if t not in killed]
            if victims and c.kill_pid(victims[0][1]):
                killed[victims[0][0]] = victims[0][1]
            time.sleep(0.1)
        assert len(killed) == 3, c.procs.logs()
        c.wait_complete(timeout=150)
        c.assert_all_alive()
        rows = c.trials()
        most = depths.stop()
    # The bound that holds: the window, plus one message per worker killed holding one
    # (late acks put it back in the queue, where its duplicate claim finds the trial taken).
    print(f"kill -9: most messages queued {most} (window {window}, {len(killed)} kills)")
    assert 1 <= most <= window + len(killed)

    figures = tally(rows)
    print(f"kill -9: trials={figures.trials} kills={len(killed)} {figures}")
    assert figures.statuses == {"succeeded": 12}
    assert figures.duplicates == 0 and figures.lost == 0
    for row in rows:
        if row.id in killed:
            # The killed attempt counts: the trial ran again (on the same subset).
            assert row.attempts >= 2, row
            assert "lease expired" in (row.error or ""), row


@pytest.mark.timeout(180)
def test_poison_trials_fail_after_max_attempts(pg_empty_url: str, tmp_path: Path) -> None:
    name, seed, poisoned = "faults-poison", 5, (2, 6)
    seeds = ",".join(str(training_seed(seed, t)) for t in poisoned)
    with cluster(pg_empty_url, tmp_path, name, spec_toml(name, 10, seed=seed)) as c:
        c.start_all(concurrency=1, MEMTAIL_TEST_POISON_SEEDS=seeds)
        c.wait_complete(timeout=150)
        c.assert_all_alive()
        rows = c.trials()
        status = memtail_cli(c.procs.env, "status", name)

    figures = tally(rows)
    assert figures.statuses == {"succeeded": 8, "failed": 2}
    assert figures.duplicates == 0 and figures.lost == 0
    for row in rows:
        if row.trial_index in poisoned:
            # Retried up to MEMTAIL_MAX_ATTEMPTS (3), then failed for good with the reason.
            assert row.status == "failed" and row.attempts == 3, row
            assert row.error.startswith("RuntimeError: poison trial"), row
        else:
            assert row.status == "succeeded" and row.attempts == 1, row
    assert status.returncode == 0, status.stderr
    assert f"{name} [complete]" in status.stdout
    assert "succeeded 8  failed 2" in status.stdout
    for index in poisoned:
        assert f"failed trial {index}: RuntimeError: poison trial" in status.stdout, status.stdout


# Enough trials that the chaos (up to 10 kills, one every 0.5-1.5 s) fits in the run on a
# fast host too: 200 trials with kills every 1-2.5 s once finished after only 2 kills.
SOAK_TRIALS = 400
SOAK_MAX_KILLS = 10
SOAK_MAX_SECONDS = 60.0


@pytest.mark.timeout(300)
def test_soak_chaos_kills_random_workers(pg_empty_url: str, tmp_path: Path) -> None:
    name = "faults-soak"
    spec = spec_toml(name, SOAK_TRIALS, epochs=10, n_train=100)
    # Five attempts: a trial whose worker is killed again and again should still succeed.
    with cluster(pg_empty_url, tmp_path, name, spec, max_attempts="5", dispatch_window="16") as c:
        c.start_all(workers=2, concurrency=1)
        wait_for(lambda: c.succeeded() >= 10, 120, "the workers to warm up", c.procs)
        rng = random.Random(5)
        kills = 0
        started = time.monotonic()
        # Chaos: bounded in count and time, and only pool children of workers started here.
        while (
            kills < SOAK_MAX_KILLS
            and time.monotonic() - started < SOAK_MAX_SECONDS
            and c.experiment_status() != "complete"
        ):
            time.sleep(rng.uniform(0.5, 1.5))
            children = [pid for w in c.workers for pid in c.pool_children(w)]
            if children and c.kill_pid(rng.choice(children)):
                kills += 1
        c.wait_complete(timeout=200)
        c.assert_all_alive()
        rows = c.trials()
        seconds = time.monotonic() - started

    figures = tally(rows)
    print(
        f"soak: trials={figures.trials}, kills={kills}, duplicates={figures.duplicates}, "
        f"lost={figures.lost}, retried={figures.retried}, seconds={seconds:.0f}"
    )
    assert figures.trials == SOAK_TRIALS
    assert figures.statuses == {"succeeded": SOAK_TRIALS}
    assert figures.duplicates == 0 and figures.lost == 0
    assert kills >= 5
