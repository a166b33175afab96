"""`memtail run` under faults: its workers never outlive it, a dead worker is replaced at
once, and a run whose every trial fails says why. Real processes on SQLite, with the fault
injector (``tests/faults/faultinject``) inside the workers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from memtail.stats.subsets import training_seed
from tests.faults.faultinject.faultcluster import FAULTINJECT, VENV_BIN, spec_toml
from tests.processes import ROOT, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTAIL_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(FAULTINJECT), str(ROOT)) if p)
    env.update(MEMTAIL_DEVICE="cpu", OMP_NUM_THREADS="1", **extra)
    return env


def _run(folder: Path, spec: Path, env: dict[str, str], workers: int = 2) -> subprocess.Popen:
    return subprocess.Popen(
        [str(VENV_BIN / "memtail"), "run", str(spec), "--workers", str(workers), "--out",
         str(folder)],
        cwd=folder, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip


def _rows(folder: Path, query: str) -> list[tuple]:
    with sqlite3.connect(folder / "memtail.db") as conn:
        return conn.execute(query).fetchall()


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                found.add(int(entry))
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if state[state.rfind(")") + 2] != "Z":  # a zombie is dead, only not yet reaped
            alive.add(pid)
    return alive


def _training(marks: Path) -> dict[int, int]:
    """Worker pid -> the seed it trains now (the injector's marks)."""
    return {int(p.name): int(p.read_text() or 0) for p in marks.iterdir() if p.read_text()}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_the_run_and_a_rerun_completes(
    tmp_path: Path, sig: signal.Signals
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_toml("orphans", 12))
    marks = tmp_path / "marks"
    marks.mkdir()
    env = _env(MEMTAIL_TEST_SLOW_TRAINING="1.5", MEMTAIL_TEST_TRAINING_MARKS=str(marks))
    run = _run(tmp_path, spec, env)
    try:
        wait_for(lambda: len(_training(marks)) == 2, 120, "both workers to train")
        workers = _children(run.pid)
        assert set(_training(marks)) <= workers
        run.send_signal(sig)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    # No process of the run survives it, whichever signal ended it.
    wait_for(lambda: not _alive(workers), 10, "the workers to die with their parent")
    if sig == signal.SIGTERM:
        assert run.returncode == 143 and "Traceback" not in err
        (line,) = [line for line in err.splitlines() if line.startswith("memtail:")]
        assert line.startswith("memtail: interrupted: ") and "run the same command" in line
        assert _rows(tmp_path, "SELECT count(*) FROM trials WHERE status = 'running'") == [(0,)]
    # The same command again resumes and completes, every trial stored once.
    again = subprocess.run(
        [str(VENV_BIN / "memtail"), "run", str(spec), "--workers", "2", "--out", str(tmp_path)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert _rows(tmp_path, "SELECT status, count(*) FROM trials GROUP BY status") == [
        ("succeeded", 12)
    ]
    assert _rows(tmp_path, "SELECT count(*), count(DISTINCT trial_id) FROM trial_outcomes") == [
        (12, 12)
    ]


def test_a_dead_worker_is_replaced_and_its_trial_released_at_once(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_toml("replaced", 8))
    marks = tmp_path / "marks"
    marks.mkdir()
    # A lease far longer than the test: the trial can only come back by the runner's release.
    env = _env(
        MEMTAIL_TEST_SLOW_TRAINING="1.0",
        MEMTAIL_TEST_TRAINING_MARKS=str(marks),
        MEMTAIL_LEASE_SECONDS="3600",
        MEMTAIL_HEARTBEAT_SECONDS="30",
    )
    run = _run(tmp_path, spec, env)
    try:
        wait_for(lambda: len(_training(marks)) >= 1, 120, "a worker to train")
        victim, seed = next(iter(_training(marks).items()))
        os.kill(victim, signal.SIGKILL)
        started = time.monotonic()
        out, err = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 0, err[-3000:]
    assert time.monotonic() - started < 120
    (row,) = _rows(tmp_path, f"SELECT status, attempts, error FROM trials WHERE seed = {seed}")
    assert row[0] == "succeeded" and row[1] == 2 and "died (exit code -9)" in row[2]
    assert _rows(tmp_path, "SELECT status, count(*) FROM trials GROUP BY status") == [
        ("succeeded", 8)
    ]


def test_a_run_whose_every_trial_fails_says_why_and_plots_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_toml("doomed", 3, seed=3))
    poison = ",".join(str(training_seed(3, t)) for t in range(3))
    env = _env(MEMTAIL_TEST_POISON_SEEDS=poison, MEMTAIL_MAX_ATTEMPTS="1")
    run = subprocess.run(
        [str(VENV_BIN / "memtail"), "run", str(spec), "--workers", "1", "--out", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    (line,) = [line for line in run.stderr.splitlines() if line.startswith("memtail:")]
    assert line.startswith("memtail: error: all 3 trials of 'doomed' failed (trial 0: ")
    assert "poison trial" in line and "Traceback" not in run.stderr
    assert not list(tmp_path.glob("*.png"))
