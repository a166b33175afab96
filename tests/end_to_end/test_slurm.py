"""Workers on a real SLURM cluster: `memtail slurm submit` runs a 2-task job array of
`memtail worker`s against PostgreSQL, every trial succeeds through them, and they give
the allocation back on their own; a task cancelled mid-trial hands its trial to the
other, with nothing lost or duplicated. A private single-node cluster (tests/slurmcluster.py),
CPU only, started and stopped by the test."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from memtail.store.engine import make_engine
from tests.faults.faultinject.faultcluster import FAULTINJECT, VENV_BIN, spec_toml, tally
from tests.processes import ROOT, wait_for
from tests.slurmcluster import slurm_cluster

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]


def _memtail(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "memtail"), *args], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def _env(database_url: str, slurm: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTAIL_")}
    # sbatch exports this environment to the tasks: the database URL reaches them without
    # being written into the script.
    env.update(slurm)
    env["PYTHONPATH"] = os.pathsep.join((str(FAULTINJECT), str(ROOT)))
    env.update(MEMTAIL_DATABASE_URL=database_url, MEMTAIL_DEVICE="cpu", OMP_NUM_THREADS="1")
    env.update(MEMTAIL_LEASE_SECONDS="30", MEMTAIL_HEARTBEAT_SECONDS="2", **extra)
    return env


def _trials(engine: sa.Engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT t.id, t.trial_index, t.status, t.attempts, t.preemptions, t.worker, "
                "t.error, (SELECT count(*) FROM trial_outcomes o WHERE o.trial_id = t.id) "
                "AS outcomes FROM trials t ORDER BY t.trial_index"
            )
        ).all()


def _queued(env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        ["squeue", "--noheader", "--array", "--format=%i %T"], env=env, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    return done.stdout.split("\n")[:-1]


def _submit(env: dict[str, str], tmp_path: Path, name: str, idle: str) -> str:
    submitted = _memtail(
        env, "slurm", "submit", name, "--workers", "2", "--gpus-per-worker", "0",
        "--time", "10:00", "--idle-exit", idle, "--logs", str(tmp_path / "logs"), cwd=tmp_path,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.split()[3].rstrip(":")
    script = next((tmp_path / "logs").glob(f"*-{job}.sbatch")).read_text()
    assert env["MEMTAIL_DATABASE_URL"] not in script  # the secret stays out of the script
    return job


@pytest.mark.timeout(420)
def test_a_job_array_trains_every_trial_and_gives_its_allocation_back(
    pg_empty_url: str, tmp_path: Path
) -> None:
    with slurm_cluster(tmp_path / "slurm") as slurm:
        env = _env(pg_empty_url, slurm)
        assert _memtail(env, "db", "upgrade", cwd=tmp_path).returncode == 0
        created = _memtail(
            env, "experiment", "create", "digits-mlp", "--name", "slurm-array", "--trials",
            "8", "--no-dispatch", cwd=tmp_path,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        dry = _memtail(env, "slurm", "submit", "slurm-array", "--workers", "2", "--dry-run",
                       cwd=tmp_path)  # fmt: skip
        assert "#SBATCH --array=0-1" in dry.stdout and "--gres=gpu:1" in dry.stdout
        job = _submit(env, tmp_path, "slurm-array", idle="5")
        engine = make_engine(pg_empty_url)
        try:
            wait_for(
                lambda: all(t.status == "succeeded" for t in _trials(engine)),
                240,
                "every trial to succeed through the array's workers",
            )
            rows = _trials(engine)
            assert all(t.worker.startswith(f"slurm-{job}_") for t in rows)
            counts = tally(rows)
            assert (counts.duplicates, counts.lost) == (0, 0)
            # Idle for 5 s, the workers exit and the tasks end by themselves.
            wait_for(lambda: not _queued(env), 60, "the array's tasks to end by themselves")
            status = _memtail(env, "slurm", "status", cwd=tmp_path)
            assert status.returncode == 0, status.stderr
            assert "SLURM: 0 memtail array tasks" in status.stdout
            assert f"slurm-{job}_" in status.stdout  # the workers the database knows
        finally:
            engine.dispose()
        logs = sorted((tmp_path / "logs").glob(f"memtail-slurm-array-{job}_*.out"))
        assert len(logs) == 2
        for log in logs:
            assert "exiting: no claimable trial for" in log.read_text(), log.read_text()[-2000:]


@pytest.mark.timeout(420)
@pytest.mark.parametrize(
    "cancel",
    [
        [],  # scancel: SIGTERM to every process of the task
        # What the script's --signal=B:TERM@... delivers before the time limit: SIGTERM to
        # the batch shell only, which passes it on to its workers.
        ["--batch", "--signal=TERM"],
    ],
    ids=["scancel", "time-limit-warning"],
)
def test_a_cancelled_task_hands_its_trial_to_the_other(
    pg_empty_url: str, tmp_path: Path, cancel: list[str]
) -> None:
    with slurm_cluster(tmp_path / "slurm") as slurm:
        # Slow epochs, saved every epoch: a trial is in progress when the task is cancelled.
        env = _env(pg_empty_url, slurm, MEMTAIL_TEST_EPOCH_PAUSE="0.5")
        assert _memtail(env, "db", "upgrade", cwd=tmp_path).returncode == 0
        spec = spec_toml("slurm-cancel", 4, epochs=6) + 'checkpoint_every = "1"\n'
        (tmp_path / "cancel.toml").write_text(spec)
        created = _memtail(
            env, "experiment", "create", str(tmp_path / "cancel.toml"), "--no-dispatch",
            cwd=tmp_path,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        job = _submit(env, tmp_path, "slurm-cancel", idle="5")
        engine = make_engine(pg_empty_url)
        try:

            def running() -> dict[str, int]:
                return {t.worker: t.trial_index for t in _trials(engine) if t.status == "running"}

            wait_for(lambda: len(running()) == 2, 120, "both tasks to train a trial")
            victim = next(w for w in running() if w.startswith(f"slurm-{job}_0-"))
            held = running()[victim]
            time.sleep(1.0)  # past the trial's first checkpoint
            subprocess.run(["scancel", *cancel, f"{job}_0"], env=env, check=True)
            wait_for(
                lambda: all(t.status == "succeeded" for t in _trials(engine)),
                240,
                "every trial to succeed, the cancelled task's one through the other task",
            )
            rows = _trials(engine)
            counts = tally(rows)
            assert (counts.duplicates, counts.lost) == (0, 0)
            (taken,) = [t for t in rows if t.trial_index == held]
            # Handed back on scancel's SIGTERM (no failed attempt), finished by task 1.
            assert taken.preemptions == 1 and taken.worker.startswith(f"slurm-{job}_1-")
            wait_for(lambda: not _queued(env), 60, "the other task to end by itself")
        finally:
            engine.dispose()
