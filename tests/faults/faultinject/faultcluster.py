"""The fault suite's cluster: compose services as subprocesses, plus what tests inspect.

Every service is started from its docker-compose.yml command (``tests.processes``) with
``tests/faults/faultinject`` first on ``PYTHONPATH``, so ``sitecustomize.py`` can inject faults
inside the real processes when a test sets ``MEMTAIL_TEST_*`` variables. Helpers that
signal processes only ever touch a process group that this test started.
(Named uniquely because this folder is on subprocesses' import path.)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.store.engine import make_engine
from tests.processes import (
    ROOT,
    Proc,
    Procs,
    base_env,
    compose_command,
    migrate,
    private_redis,
    wait_for,
)

FAULTINJECT = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent  # where tests.processes finds the compose commands


def spec_toml(name: str, trials: int, *, epochs: int = 5, n_train: int = 120, seed: int = 3) -> str:
    """A small synthetic-longtail experiment: each trial trains in well under a second."""
    return f"""
name = "{name}"
seed = {seed}
trials = {trials}
subset_fraction = 0.7

[dataset]
name = "synthetic-longtail"
n_train = {n_train}
n_test = {n_train // 2}
seed = 1

[model]
name = "mlp"
width = 32

[training]
epochs = {epochs}
batch_size = 32
lr = 0.05
"""


def fault_env(database_url: str, broker_url: str, **settings: str) -> dict[str, str]:
    """base_env plus the fault injector on PYTHONPATH (inert until MEMTAIL_TEST_* is set)."""
    env = base_env(database_url, broker_url, **settings)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(FAULTINJECT), str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    return env


def memtail_cli(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "memtail"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Cluster:
    """The compose services of one test, and queries about its one experiment."""

    def __init__(self, procs: Procs, engine: Engine, name: str, tmp_path: Path) -> None:
        self.procs = procs
        self.engine = engine
        self.name = name
        self.tmp_path = tmp_path
        self.workers: list[Proc] = []
        self.redis: tuple = ()
        self.marks = tmp_path / "training"
        self.marks.mkdir(exist_ok=True)

    # -- services ----------------------------------------------------------------------
    def start_coordinator(self, name: str = "coordinator") -> Proc:
        return self.procs.start_service("coordinator", name)

    def start_worker(self, name: str = "worker", concurrency: int = 1, **env: str) -> Proc:
        env = {"MEMTAIL_TEST_TRAINING_MARKS": str(self.marks), **env}
        full = {**self.procs.env, **env, "MEMTAIL_GPUS_PER_WORKER": str(concurrency)}
        # A node name per worker, as containers have distinct hostnames.
        command = [*compose_command("worker", full), "--hostname", f"{name}@%h"]
        proc = self.procs.start(name, command, MEMTAIL_GPUS_PER_WORKER=str(concurrency), **env)
        self.workers.append(proc)
        return proc

    def start_estimator(self) -> Proc:
        return self.procs.start_service("estimator")

    def start_beat(self, name: str = "beat") -> Proc:
        # The schedule file in this test's folder: tests may run beside other beats.
        command = [
            str(self.tmp_path / "celerybeat-schedule") if a == "/tmp/celerybeat-schedule" else a
            for a in compose_command("beat", self.procs.env)
        ]
        return self.procs.start(name, command)

    def start_all(self, workers: int = 1, concurrency: int = 1, **worker_env: str) -> None:
        """What ``docker compose up`` starts (migrate already ran)."""
        self.start_coordinator()
        for i in range(workers):
            self.start_worker(f"worker{i + 1}", concurrency, **worker_env)
        self.start_estimator()
        self.start_beat()

    def assert_all_alive(self) -> None:
        for proc in self.procs.started:
            assert proc.alive(), f"{proc.name} died:\n{proc.output()[-3000:]}"

    # -- processes ---------------------------------------------------------------------
    def owned(self, pid: int) -> Proc | None:
        """The started process whose group holds ``pid``, or None (never signal it then)."""
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            return None
        return next((p for p in self.procs.started if p.pid == group and p.alive()), None)

    def pool_children(self, worker: Proc) -> list[int]:
        """Pids of a Celery worker's prefork children (parent = the worker, same group)."""
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            ppid, pgid = int(fields[1]), int(fields[2])
            if ppid == worker.pid and pgid == worker.pid:
                children.append(int(entry.name))
        return children

    def kill_pid(self, pid: int, sig: int = signal.SIGKILL) -> bool:
        """Signal one pid, only if it belongs to a process group this test started."""
        if self.owned(pid) is None:
            return False
        os.kill(pid, sig)
        return True

    # -- database ----------------------------------------------------------------------
    def experiment_status(self) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT status FROM experiments WHERE name = :n"), {"n": self.name}
            ).scalar_one_or_none()

    def wait_complete(self, timeout: float) -> None:
        wait_for(
            lambda: self.experiment_status() == "complete",
            timeout=timeout,
            what=f"experiment {self.name} to complete",
            procs=self.procs,
        )

    def training_trials(self) -> list[tuple[int, int]]:
        """(trial_id, pid) of trials inside ``Trainer.run`` right now (running, and the
        worker's training mark from the fault injector names the trial's seed)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT t.id, t.worker, t.seed FROM trials t JOIN experiments e "
                    "ON e.id = t.experiment_id WHERE e.name = :n AND t.status = 'running' "
                    "ORDER BY t.id"
                ),
                {"n": self.name},
            ).all()
        found = []
        for row in rows:
            pid = int(row.worker.rsplit(":", 1)[1])
            try:
                if (self.marks / str(pid)).read_text() == str(row.seed):
                    found.append((row.id, pid))
            except (OSError, ValueError):
                continue
        return found

    def trials(self) -> list[sa.Row]:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT t.id, t.trial_index, t.seed, t.status, t.attempts, t.error, "
                    "t.worker, (SELECT count(*) FROM trial_outcomes o WHERE o.trial_id = t.id) "
                    "AS outcomes FROM trials t JOIN experiments e ON e.id = t.experiment_id "
                    "WHERE e.name = :n ORDER BY t.trial_index"
                ),
                {"n": self.name},
            ).all()

    def succeeded(self) -> int:
        return sum(1 for t in self.trials() if t.status == "succeeded")


# Short leases so that a killed worker's trial is reaped within seconds.
FAST = dict(
    lease_seconds="6",
    heartbeat_seconds="1",
    coordinator_interval="1",
    estimate_interval="2",
    dispatch_window="8",
)


@contextmanager
def cluster(
    database_url: str, tmp_path: Path, name: str, spec: str, **settings: str
) -> Iterator[Cluster]:
    """A migrated database, a private Redis and an empty Procs; everything stopped after.

    Yields before any service starts; ``cluster.redis`` holds (url, stop, start).
    """
    spec_path = tmp_path / f"{name}.toml"
    spec_path.write_text(spec)
    with private_redis() as redis:
        env = fault_env(
            database_url, redis[0], **{**FAST, "default_spec": str(spec_path), **settings}
        )
        migrate(env)
        procs = Procs(env, tmp_path)
        engine = make_engine(database_url)
        c = Cluster(procs, engine, name, tmp_path)
        c.redis = redis
        try:
            yield c
        finally:
            procs.stop_all()
            engine.dispose()


@dataclass(frozen=True)
class Tally:
    """Every trial ends exactly once: the figures the suite asserts and prints."""

    trials: int
    statuses: dict[str, int]
    duplicates: int  # trials with more than one outcome row
    lost: int  # trials not terminal, or succeeded without exactly one outcome row
    retried: int  # trials that needed more than one attempt


def tally(rows: list[sa.Row]) -> Tally:
    statuses = Counter(row.status for row in rows)
    return Tally(
        trials=len(rows),
        statuses=dict(statuses),
        duplicates=sum(1 for row in rows if row.outcomes > 1),
        lost=sum(
            1
            for row in rows
            if row.status not in ("succeeded", "failed")
            or (row.status == "succeeded" and row.outcomes != 1)
            or (row.status == "failed" and row.outcomes != 0)
        ),
        retried=sum(1 for row in rows if row.attempts >= 2),
    )


def worker_log_counts(procs: list[Proc]) -> Counter[str]:
    """How many run_trial tasks each outcome had, from the workers' ``trial N: X`` lines."""
    counts: Counter[str] = Counter()
    for proc in procs:
        for match in re.finditer(r"trial \d+: (\w+)", proc.output()):
            counts[match.group(1)] += 1
    return counts
