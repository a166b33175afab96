"""The benchmarks' harness (not a benchmark itself): synthetic trials, scratch databases,
the service's processes.

``generate`` makes synthetic trial outcomes packed exactly as trials store them. Trial t's
subset is ``memtail.stats.subsets.subset_mask(seed, t, n_train, round(0.7 n_train))``
(what an experiment with that seed stores); correctness is random with per-example accuracies, and
``planted`` test examples depend on one train example's membership with influence
0.10-0.50, so that some pairs pass the paper's 0.15 threshold and some sit near it. Rows
are generated a chunk of trials at a time, so memory stays near the packed size.

``scratch_database`` creates a PostgreSQL database with memtail's schema and drops it
afterwards; ``private_redis`` starts a Redis server of the benchmark's own;
``compose_command`` gives the command line docker-compose.yml runs for a service;
``peak_rss_mb`` reads this process's peak resident memory; ``CpuShares`` samples the CPU
time of every process on the host.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memtail.stats.outcomes import TrialOutcome
from memtail.stats.subsets import subset_mask

ROOT = Path(__file__).resolve().parents[1]
SUBSET_FRACTION = 0.7
_STRENGTHS = np.array([0.10, 0.14, 0.15, 0.16, 0.2, 0.3, 0.5])


@dataclass(frozen=True)
class TrialRows:
    """k trials as stored: one LSB-first packed row per trial and per payload."""

    masks: np.ndarray  # (k, ceil(n_train / 8)) uint8: trials.subset
    train_correct: np.ndarray  # (k, ceil(n_train / 8)) uint8
    test_correct: np.ndarray  # (k, ceil(n_test / 8)) uint8
    planted_train: np.ndarray  # train example i of each planted pair
    planted_test: np.ndarray  # ... and its test example j
    n_train: int
    n_test: int

    @property
    def k(self) -> int:
        return int(self.masks.shape[0])


def generate(
    k: int, n_train: int, n_test: int, *, seed: int = 0, planted: int = 200, first: int = 0
) -> TrialRows:
    """Trials first .. first + k - 1 of a synthetic experiment (same seed: same trials)."""
    rng = np.random.default_rng(seed)  # per-example parameters: the same for any k
    m = int(round(SUBSET_FRACTION * n_train))
    train_acc = rng.uniform(0.5, 1.0, n_train)
    test_acc = rng.uniform(0.3, 1.0, n_test)
    planted = min(planted, n_test, n_train)
    p_train = rng.choice(n_train, planted, replace=False)
    p_test = rng.choice(n_test, planted, replace=False)
    strength = _STRENGTHS[np.arange(planted) % _STRENGTHS.size]
    base = rng.uniform(0.2, 1.0 - strength)
    rows_m, rows_c, rows_t = [], [], []
    chunk = 256
    for t0 in range(first, first + k, chunk):
        t1 = min(t0 + chunk, first + k)
        trial_rng = np.random.default_rng([seed, t0])
        masks = np.stack([subset_mask(seed, t, n_train, m) for t in range(t0, t1)])
        # Models get their own training examples right more often: memorization.
        p_correct = np.where(masks, np.maximum(train_acc, 0.95), train_acc)
        correct = trial_rng.random(masks.shape) < p_correct
        test = trial_rng.random((t1 - t0, n_test)) < test_acc
        test[:, p_test] = trial_rng.random((t1 - t0, planted)) < base + strength * masks[:, p_train]
        for rows, x in ((rows_m, masks), (rows_c, correct), (rows_t, test)):
            rows.append(np.packbits(x, axis=1, bitorder="little"))
    empty = [np.zeros((0, (n + 7) // 8), np.uint8) for n in (n_train, n_train, n_test)]
    m_rows, c_rows, t_rows = (
        np.concatenate(r) if r else e for r, e in zip((rows_m, rows_c, rows_t), empty, strict=True)
    )
    return TrialRows(m_rows, c_rows, t_rows, p_train, p_test, n_train, n_test)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (ru_maxrss)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """Yield the URL of a new, migrated PostgreSQL database; drop it at the end."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from memtail.store import migrate

    name = f"memtail_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            # The read-only role the migrations made for it outlives a database.
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{name}_analyst"'))
        admin.dispose()


def store_trials(url: str, rows: TrialRows, *, seed: int, name: str, margins: bool = False):
    """Create an experiment whose subsets are ``rows.masks`` and store every trial's
    outcomes through memtail.store (trials.claim, then outcomes.store), as workers do.

    Returns (engine, experiment). ``rows`` must come from ``generate(seed=seed)``: the
    experiment derives its subsets from the same seed, and this checks they agree.
    """
    import sqlalchemy as sa

    from memtail.records import ExampleSet
    from memtail.specification import DatasetSpec, ExperimentSpec
    from memtail.stats import bits
    from memtail.store import outcomes, trials
    from memtail.store.engine import make_engine
    from memtail.store.experiments import create_experiment
    from memtail.store.tables import trials as trials_table

    engine = make_engine(url)
    rng = np.random.default_rng(seed)
    spec = ExperimentSpec(
        name=name, dataset=DatasetSpec(name="synthetic-longtail"), trials=rows.k, seed=seed
    )
    data = ExampleSet(
        train_labels=rng.integers(0, 100, rows.n_train),
        test_labels=rng.integers(0, 100, rows.n_test),
    )
    experiment = create_experiment(engine, spec, data).experiment
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(trials_table.c.id, trials_table.c.subset)
            .where(trials_table.c.experiment_id == experiment.id)
            .order_by(trials_table.c.trial_index)
        ).all()
    for t, (trial_id, subset) in enumerate(stored):
        if bytes(subset) != rows.masks[t].tobytes():
            raise RuntimeError(f"trial {t}: stored subset differs from the generated one")
        claim = trials.claim(engine, trial_id, "benchmark", 600)
        assert claim is not None
        train = bits.unpack(rows.train_correct[t].tobytes(), rows.n_train)
        test = bits.unpack(rows.test_correct[t].tobytes(), rows.n_test)
        outcome = TrialOutcome(
            train_correct=train,
            test_correct=test,
            train_accuracy=float(train.mean()),
            test_accuracy=float(test.mean()),
            train_margin=rng.normal(size=rows.n_train).astype(np.float16) if margins else None,
            test_margin=rng.normal(size=rows.n_test).astype(np.float16) if margins else None,
        )
        outcomes.store(engine, claim, outcome, rows.n_train, rows.n_test)
    return engine, experiment


ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


@contextmanager
def private_redis() -> Iterator[str]:
    """A Redis server of the benchmark's own on a free port, keeping nothing; its URL."""
    import redis

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="memtail-bench-redis-")
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", folder],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the benchmark's redis-server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        server.kill()
        server.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def compose_command(service: str, env: dict[str, str]) -> list[str]:
    """What docker-compose.yml runs for ``service``, ``${VAR:-default}`` filled from ``env``
    and executables taken from this interpreter's environment: the benchmarks measure the
    very commands the service runs."""
    import yaml

    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][service][
        "command"
    ]
    filled = [
        re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1), m.group(2)), arg)
        for arg in command
    ]
    exe = Path(sys.executable).parent / filled[0]
    return [str(exe) if exe.exists() else filled[0], *filled[1:]]


class CpuShares:
    """CPU time of every process on the host, sampled from /proc twice a second.

    Says where the cores went during a window of a run: to the processes that train,
    or to PostgreSQL, Redis, the Celery parents, the coordinator, the estimator, beat and
    the host's own daemons. Both wall clocks are ``time.time()``.
    """

    def __init__(self) -> None:
        self._tick = os.sysconf("SC_CLK_TCK")
        self._samples: list[tuple[float, dict[int, tuple[int, int, str, float]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self._samples.append((time.time(), self._snapshot()))

    def _snapshot(self) -> dict[int, tuple[int, int, str, float]]:
        """pid -> (ppid, pgid, command, CPU seconds so far)."""
        out = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:  # exited meanwhile
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            cpu = (int(fields[11]) + int(fields[12])) / self._tick
            name = command.decode(errors="replace")
            out[int(entry)] = (int(fields[1]), int(fields[2]), name, cpu)
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def cores(
        self, start: float, end: float, group: Callable[[int, int, int, str], str]
    ) -> dict[str, float]:
        """Cores used per group between two times; ``group(pid, ppid, pgid, command)``."""
        (t0, first), (t1, last) = (
            min(self._samples, key=lambda sample: abs(sample[0] - t)) for t in (start, end)
        )
        used: dict[str, float] = {}
        for pid, (ppid, pgid, command, cpu) in last.items():
            before = first[pid][3] if pid in first else 0.0
            name = group(pid, ppid, pgid, command)
            used[name] = used.get(name, 0.0) + (cpu - before) / (t1 - t0)
        return used


def shared_group(pid: int, command: str) -> str:
    if pid == os.getpid():
        return "benchmark"
    if "postgres" in command:
        return "postgres"
    if "redis-server" in command:
        return "redis"
    return "host"
