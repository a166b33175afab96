"""Repeated `kill -9`s of `memtail run`'s workers and of the run itself lose no trial: a
killed claim is counted as lost, not as a failed attempt, and a re-run stores them all.
Real processes on SQLite, with the fault injector marking which worker trains what."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.faults.faultinject.faultcluster import VENV_BIN, spec_toml
from tests.faults.test_embedded import _alive, _env, _rows, _run, _training
from tests.processes import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration]

TRIALS = 40
ROUNDS = 2


def _busy(marks: Path) -> dict[int, int]:
    """Live workers that are training now -> their seed."""
    training = _training(marks)
    return {pid: seed for pid, seed in training.items() if pid in _alive(set(training))}


def test_kills_of_workers_and_of_the_run_lose_no_trial(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_toml("killed", TRIALS, epochs=1))
    # One attempt for real errors: before lost claims were counted apart, the first kill
    # under a trial failed it for good.
    env = _env(MEMTAIL_MAX_ATTEMPTS="1", MEMTAIL_TEST_SLOW_TRAINING="1.0")
    killed_workers = killed_runs = 0
    for round_ in range(ROUNDS):
        marks = tmp_path / f"marks{round_}"
        marks.mkdir()
        run = _run(tmp_path, spec, {**env, "MEMTAIL_TEST_TRAINING_MARKS": str(marks)})

        def training_or_done() -> bool:
            return bool(_busy(marks)) or run.poll() is not None  # noqa: B023

        try:
            wait_for(training_or_done, 120, "a worker to train")
            if run.poll() is None:  # a worker killed under its trial, then the run
                victim = next(iter(_busy(marks)))
                os.kill(victim, signal.SIGKILL)
                killed_workers += 1
                wait_for(lambda: not _alive({victim}), 30, "the worker to die")  # noqa: B023
                wait_for(training_or_done, 120, "a worker to train again")
                if run.poll() is None and _busy(marks):
                    killed_runs += 1
        finally:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate(timeout=60)
    assert killed_workers and killed_runs  # the kills happened under trials
    assert _rows(tmp_path, "SELECT count(*) FROM trials WHERE status = 'failed'") == [(0,)]
    again = subprocess.run(
        [str(VENV_BIN / "memtail"), "run", str(spec), "--workers", "2", "--out", str(tmp_path)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert _rows(tmp_path, "SELECT status, count(*) FROM trials GROUP BY status") == [
        ("succeeded", TRIALS)
    ]
    assert _rows(tmp_path, "SELECT count(*), count(DISTINCT trial_id) FROM trial_outcomes") == [
        (TRIALS, TRIALS)
    ]
    # Every claim that did not store was counted as lost, none as a failed attempt. Which
    # kills landed under a claim is a race (a worker seen training may store and be between
    # trials when the run is killed), so claims are counted exactly per trial, not per kill.
    assert _rows(
        tmp_path, "SELECT count(*) FROM trials WHERE attempts != 1 + lost + preemptions"
    ) == [(0,)]
    ((lost,),) = _rows(tmp_path, "SELECT sum(lost) FROM trials")
    # A victim is killed moments after it is seen inside training (over a second long).
    assert lost >= killed_workers
