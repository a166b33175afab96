"""The estimator killed (SIGKILL) inside its replacement transaction: nothing half-written.

``memtail estimate NAME`` runs as a subprocess with the fault injector pausing it inside
``memtail.store.estimate_runs.replace``, after the old memorization and influence rows were
deleted in the open transaction. Another connection still sees the previous estimate,
before and after the kill; the next run succeeds. Guarantee: estimates are replaced
atomically.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.store import outcomes, trials
from memtail.store.engine import make_engine
from memtail.work.estimator import estimate_experiment
from tests.faults.faultinject.faultcluster import VENV_BIN, fault_env
from tests.helpers import make_experiment, random_outcome
from tests.processes import ROOT, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.postgres]

N_TRAIN, N_TEST, TRIALS = 20, 10, 12


def _store_some(engine: Engine, experiment_id: int, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(count):
        claim = trials.claim_next(engine, experiment_id, "test-worker", 60)
        assert claim is not None
        outcomes.store(engine, claim, random_outcome(rng, N_TRAIN, N_TEST), N_TRAIN, N_TEST)


def _snapshot(engine: Engine, experiment_id: int) -> tuple[list, list, list]:
    with engine.connect() as conn:
        mem = conn.execute(
            sa.text(
                "SELECT example_index, mem, n_trials FROM memorization "
                "WHERE experiment_id = :e ORDER BY example_index"
            ),
            {"e": experiment_id},
        ).all()
        infl = conn.execute(
            sa.text(
                "SELECT train_index, test_index, infl FROM influence WHERE experiment_id = :e "
                "ORDER BY train_index, test_index"
            ),
            {"e": experiment_id},
        ).all()
        runs = conn.execute(
            sa.text(
                "SELECT status, trials_used FROM estimate_runs WHERE experiment_id = :e ORDER BY id"
            ),
            {"e": experiment_id},
        ).all()
    return mem, infl, runs


@pytest.mark.timeout(120)
def test_estimator_killed_mid_write_keeps_the_previous_estimate(
    pg_url: str, tmp_path: Path
) -> None:
    engine = make_engine(pg_url)
    # infl_threshold 0: every pair is stored, so the influence table is never empty.
    exp = make_experiment(engine, name="faults-estimate", trials_=TRIALS, infl_threshold=0.0)
    exp = exp.experiment
    _store_some(engine, exp.id, 8, seed=1)
    assert estimate_experiment(engine, exp.id) is not None
    mem, infl, runs = _snapshot(engine, exp.id)
    assert len(mem) == N_TRAIN and {r.n_trials for r in mem} == {8} and infl
    assert runs == [("succeeded", 8)]

    _store_some(engine, exp.id, TRIALS - 8, seed=2)
    mark = tmp_path / "inside-replace"
    env = fault_env(pg_url, "redis://127.0.0.1:1/0")
    env.update(MEMTAIL_TEST_ESTIMATE_PAUSE="60", MEMTAIL_TEST_PAUSE_FILE=str(mark))
    command = [str(VENV_BIN / "memtail"), "estimate", exp.name]
    victim = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: mark.exists() or victim.poll() is not None, 60, "the pause")
        assert victim.poll() is None, victim.stdout.read().decode() if victim.stdout else ""
        # Inside the replacement: deletes done, not committed. Readers see the old rows.
        assert _snapshot(engine, exp.id)[:2] == (mem, infl)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(10)
    finally:
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(10)
    after_mem, after_infl, after_runs = _snapshot(engine, exp.id)
    assert (after_mem, after_infl) == (mem, infl)  # the previous estimate, intact
    # The killed run's row says it never finished; it is never taken for a result.
    assert after_runs == [("succeeded", 8), ("running", TRIALS)]

    # The next run is not blocked (the dead run's advisory lock went with its connection).
    env.pop("MEMTAIL_TEST_ESTIMATE_PAUSE")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{TRIALS} trials" in done.stdout, done.stdout
    new_mem, new_infl, new_runs = _snapshot(engine, exp.id)
    assert len(new_mem) == N_TRAIN and {r.n_trials for r in new_mem} == {TRIALS}
    assert new_infl and new_infl != infl
    # ... and the next run, holding the lock, marks the dead run's row as failed.
    assert new_runs == [("succeeded", 8), ("failed", TRIALS), ("succeeded", TRIALS)]
    engine.dispose()
