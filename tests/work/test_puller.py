"""`memtail worker`: claims trials straight from the database, trains them, and exits by
itself once nothing was claimable for --idle-exit seconds; idle, SIGTERM ends it at once.
Real processes on SQLite."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.faultinject.faultcluster import VENV_BIN, spec_toml
from tests.processes import ROOT

pytestmark = pytest.mark.integration


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTAIL_")}
    env.update(
        PYTHONPATH=str(ROOT),
        MEMTAIL_DATABASE_URL=f"sqlite:///{folder / 'memtail.db'}",
        MEMTAIL_DEVICE="cpu",
        OMP_NUM_THREADS="1",
    )
    return env


def _memtail(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "memtail"), *args], cwd=folder, env=_env(folder), capture_output=True,
        text=True, timeout=180,
    )  # fmt: skip


@pytest.mark.timeout(240)
def test_a_worker_trains_what_is_pending_then_leaves(tmp_path: Path) -> None:
    assert _memtail(tmp_path, "db", "upgrade").returncode == 0
    (tmp_path / "spec.toml").write_text(spec_toml("pulled", 4))
    assert _memtail(tmp_path, "experiment", "create", str(tmp_path / "spec.toml")).returncode == 0
    started = time.monotonic()
    done = _memtail(tmp_path, "worker", "pulled", "--idle-exit", "2", "--name", "puller-1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "worker puller-1: 4 trials; exiting: no claimable trial for" in done.stdout
    assert time.monotonic() - started < 120
    with sqlite3.connect(tmp_path / "memtail.db") as conn:
        rows = conn.execute("SELECT status, worker FROM trials").fetchall()
    assert rows == [("succeeded", "puller-1")] * 4
    # An unknown experiment is a one-line error, not a worker that waits forever.
    ghost = _memtail(tmp_path, "worker", "ghost", "--idle-exit", "1")
    assert ghost.returncode == 2 and ghost.stderr.strip().count("\n") == 0


@pytest.mark.timeout(120)
def test_an_idle_worker_ends_at_once_on_sigterm(tmp_path: Path) -> None:
    assert _memtail(tmp_path, "db", "upgrade").returncode == 0
    worker = subprocess.Popen(
        [str(VENV_BIN / "memtail"), "worker", "--idle-exit", "600"], cwd=tmp_path,
        env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert "serving every active experiment" in worker.stdout.readline()
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 128 + signal.SIGTERM and "Traceback" not in err
