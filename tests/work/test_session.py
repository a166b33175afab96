"""The embedded run's loop, with real local worker processes on SQLite: one pool trains
experiment after experiment and batch after batch without starting a process again, a
worker killed meanwhile is replaced, and every trial ends stored once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.config import Settings
from memtail.records import Experiment
from memtail.specification import load_spec
from memtail.status import TrialStatus
from memtail.store import lifecycle
from memtail.store.engine import make_engine
from memtail.store.experiments import create_experiment, get_experiment
from memtail.store.tables import trials
from memtail.training.datasets import load_dataset
from memtail.work.session import LocalSession
from tests.faults.faultinject.faultcluster import spec_toml

pytestmark = pytest.mark.integration


def _experiment(engine: Engine, tmp_path: Path, name: str, k: int) -> Experiment:
    path = tmp_path / f"{name}.toml"
    path.write_text(spec_toml(name, k, epochs=2))
    spec = load_spec(path)
    data = load_dataset(spec.dataset, tmp_path)
    return create_experiment(engine, spec, data.example_set()).experiment


def _workers(engine: Engine, experiment: Experiment) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.select(trials.c.worker).where(trials.c.experiment_id == experiment.id)
            ).scalars()
        )


@pytest.mark.timeout(240)
def test_one_pool_trains_every_batch_and_experiment(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(sqlite_url)
    settings = Settings(database_url=sqlite_url, device="cpu", data_root=tmp_path)
    first = _experiment(engine, tmp_path, "first", 4)
    second = _experiment(engine, tmp_path, "second", 3)
    said: list[str] = []
    with LocalSession(engine, settings, 2, say=said.append) as session:
        pool = session._pool
        assert pool is not None
        done = session.run(first)
        # It grows (as stopping rules would), and the same workers train the new batch.
        lifecycle.extend(engine, get_experiment(engine, first.id), 6)
        grown = session.run(get_experiment(engine, first.id))
        # A worker killed between experiments is replaced before the next one.
        victim = next(iter(pool._workers.values()))
        os.kill(victim.pid, signal.SIGKILL)
        victim.join()
        other = session.run(second)
        started = pool.started
    assert not done.paused and done.counts[TrialStatus.SUCCEEDED] == 4
    assert grown.counts[TrialStatus.SUCCEEDED] == 6 and other.counts[TrialStatus.SUCCEEDED] == 3
    assert started == 3  # two at the start and one replacement: none per batch or experiment
    assert _workers(engine, first) | _workers(engine, second) <= {
        f"local:{os.getpid()}:{n}" for n in range(3)
    }
    # Each batch ends with its average rate, not the bar's last reading.
    assert [line.split(":")[0] for line in said] == ["first", "first", "second"]
    assert all(line.endswith("/min on average") for line in said)
    # The bar's last line, left on the screen, shows that average too.
    bars = capsys.readouterr().err
    for line in said:
        average = line.rsplit(", ", 1)[1]
        assert f"{average}, running=0, failed=0]" in bars, (line, bars[-2000:])
    # The workers are gone with the session.
    assert all(not process.is_alive() for process in pool._workers.values())
