"""A trial's worker killed (SIGKILL) or told to stop (SIGTERM) at a random step after its
first checkpoint, then resumed by another worker process, stores the outcomes of the same
trial run without interruption, bit for bit: for each network of memtail's own, trained
with augmentation on images. Real `memtail run` processes on SQLite, with the fault
injector slowing epochs down so that the signal lands between checkpoints. A checkpoint
that reads back whole but does not fit the trial is passed over for the one before it."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import torch

from memtail.cli.main import main
from memtail.specification import load_spec
from memtail.stats import bits
from memtail.stats.subsets import subset_mask, training_seed
from memtail.store.artifacts import write_artifact
from memtail.store.engine import make_engine
from memtail.training.datasets import load_dataset
from memtail.training.snapshot import Checkpointing, TrainingState, decode, encode
from memtail.training.trainer import Trainer
from tests.faults.faultinject.faultcluster import (
    VENV_BIN,
    Cluster,
    cluster,
    spec_toml,
    tally,
)
from tests.faults.test_embedded import _alive, _children, _env, _rows, _run
from tests.processes import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration]


def _spec(folder: Path, name: str, model: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(
        f"""
name = "{name}"
seed = 11
trials = 2

[dataset]
name = "npz"
path = "{folder / "images.npz"}"

[model]
name = "{model}"
width = 8

[training]
epochs = 6
batch_size = 32
lr = 0.05
flip = true
crop = 2
margins = true
checkpoint_every = "1"
"""
    )
    return path


def _images(folder: Path) -> None:
    """200 + 50 random 3 x 12 x 12 images of 4 classes (a brighter channel per class)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 200), ("test", 50)):
        y = rng.integers(0, 4, n)
        x = rng.normal(size=(n, 3, 12, 12)).astype(np.float32)
        x[np.arange(n), y % 3] += 0.5 + 0.5 * (y // 3)[:, None, None]
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    np.savez(folder / "images.npz", **arrays)


def _stored(folder: Path, name: str) -> list[tuple]:
    """Per trial, in trial order: its four outcome columns, then attempts, preemptions,
    resumed_seconds and status."""
    return _rows(
        folder,
        "SELECT o.train_correct, o.test_correct, o.train_margin, o.test_margin, "
        "t.attempts, t.preemptions, t.resumed_seconds, t.status FROM trials t "
        "JOIN experiments e ON e.id = t.experiment_id "
        f"JOIN trial_outcomes o ON o.trial_id = t.id WHERE e.name = '{name}' "
        "ORDER BY t.trial_index",
    )


def _uninterrupted(spec_path: Path, trial_index: int) -> tuple:
    """The trial trained here without a pause, as a worker trains it (one thread)."""
    spec = load_spec(spec_path)
    data = load_dataset(spec.dataset, spec_path.parent)
    m = spec.resolve_subset_size(data.n_train)
    threads = torch.get_num_threads()
    try:
        outcome = Trainer(data, "cpu", 1).run(
            spec.model,
            spec.training,
            subset_mask(spec.seed, trial_index, data.n_train, m),
            training_seed(spec.seed, trial_index),
        )
    finally:
        torch.set_num_threads(threads)
    return (
        outcome.train_correct,
        outcome.test_correct,
        outcome.train_margin,
        outcome.test_margin,
    )


def _bits(row: tuple, n_train: int, n_test: int) -> tuple:
    return (
        bits.unpack(row[0], n_train),
        bits.unpack(row[1], n_test),
        np.frombuffer(row[2], dtype="<f2"),
        np.frombuffer(row[3], dtype="<f2"),
    )


def _worker(run: subprocess.Popen) -> int:
    (pid,) = {p for p in _alive(_children(run.pid)) if not _tracker(p)}
    return pid


def _checkpointed(folder: Path, trial_index: int) -> bool:
    if not (folder / "memtail.db").exists():  # connecting would create it
        return False
    try:
        return bool(
            _rows(
                folder,
                f"SELECT 1 FROM artifacts WHERE name = 'checkpoint-{trial_index}' "
                "AND status = 'complete'",
            )
        )
    except sqlite3.OperationalError:  # the schema is still being created
        return False


@pytest.mark.timeout(300)
@pytest.mark.parametrize("model", ["mlp", "cnn", "fastnet"])
def test_a_killed_or_stopped_trial_resumes_to_the_same_bits(tmp_path: Path, model: str) -> None:
    _images(tmp_path)
    spec = _spec(tmp_path, "cut", model)
    rng = random.Random(model)
    run = _run(tmp_path, spec, _env(MEMTAIL_TEST_EPOCH_PAUSE="0.4"), workers=1)
    try:
        # Trial 0's worker is killed, trial 1's told to stop, each at a random point after
        # the trial's first checkpoint; the run replaces them and the new ones resume.
        for index, sig in ((0, signal.SIGKILL), (1, signal.SIGTERM)):
            wait_for(lambda index=index: _checkpointed(tmp_path, index), 120, "a checkpoint")
            time.sleep(rng.uniform(0.0, 0.6))
            os.kill(_worker(run), sig)
        out, err = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 0, err[-3000:]
    rows = _stored(tmp_path, "cut")
    assert [row[7] for row in rows] == ["succeeded"] * 2
    for index, row in enumerate(rows):
        got = _bits(row, 200, 50)
        for name, a, b in zip(("train", "test", "train margin", "test margin"), got,
                              _uninterrupted(spec, index), strict=True):  # fmt: skip
            assert np.array_equal(a, b), f"{model} trial {index}: {name} differs"
        assert row[6] > 0  # resumed: training it did not repeat
    # SIGKILL costs an attempt (the worker died under it); SIGTERM is a preemption.
    assert [row[4:6] for row in rows] == [(2, 0), (2, 1)]
    assert _rows(tmp_path, "SELECT count(*) FROM artifacts") == [(0,)]
    # `memtail status` counts the resumed trials, the training they did not repeat, and
    # the preemption.
    status = subprocess.run(
        [str(VENV_BIN / "memtail"), "--database-url", f"sqlite:///{tmp_path / 'memtail.db'}",
         "status", "--format", "json"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    (record,) = json.loads(status.stdout)
    assert (record["resumed_trials"], record["preemptions"]) == (2, 1)
    assert record["resumed_seconds"] > 0


def _tracker(pid: int) -> bool:
    """multiprocessing's resource tracker, a child of `memtail run` that trains nothing."""
    try:
        return b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(240)
def test_a_stopped_celery_worker_hands_its_trial_back_in_time(
    pg_empty_url: str, tmp_path: Path
) -> None:
    name = "faults-sigterm"
    spec = spec_toml(name, 2, epochs=8) + 'checkpoint_every = "1"\n'
    with cluster(pg_empty_url, tmp_path, name, spec, stop_grace_seconds="20") as c:
        c.start_coordinator()
        worker = c.start_worker("worker1", 1, MEMTAIL_TEST_EPOCH_PAUSE="0.5")
        wait_for(
            lambda: _checkpoints_stored(c) >= 1, 120, "a checkpoint of the first trial", c.procs
        )
        # SIGTERM to the Celery worker (what `docker compose stop` sends): a warm shutdown
        # that would wait for the trial; its children hand their trials back instead.
        stopped = time.monotonic()
        os.kill(worker.pid, signal.SIGTERM)  # the main process only, as Docker does
        wait_for(lambda: not worker.alive(), 20, "the worker to stop within its grace", c.procs)
        assert time.monotonic() - stopped < 20
        handed_back = [t for t in _trial_rows(c) if t.preemptions]
        assert len(handed_back) == 1, c.procs.logs()
        (handed,) = handed_back
        assert (handed.status, handed.attempts, handed.preemptions) == ("pending", 1, 1)
        assert not [t for t in _trial_rows(c) if t.status == "running"]
        # Another worker resumes it from its checkpoint; nothing is lost or duplicated.
        c.start_worker("worker2", 1)
        wait_for(lambda: c.succeeded() == 2, 120, "both trials to succeed", c.procs)
        counts = tally(c.trials())
        assert (counts.duplicates, counts.lost) == (0, 0)
        (resumed,) = [t for t in _trial_rows(c) if t.preemptions]
        assert (resumed.status, resumed.attempts) == ("succeeded", 2)
        assert resumed.resumed_seconds > 0 and _checkpoints_stored(c) == 0


def _trial_rows(c: Cluster) -> list:
    with c.engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT t.status, t.attempts, t.preemptions, t.resumed_seconds FROM trials t "
                "JOIN experiments e ON e.id = t.experiment_id WHERE e.name = :n"
            ),
            {"n": c.name},
        ).all()


def _checkpoints_stored(c: Cluster) -> int:
    with c.engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT count(*) FROM artifacts WHERE status = 'complete'")
        ).scalar_one()


def _trained_states(spec_path: Path, trial_index: int) -> list[TrainingState]:
    """The trial's state after each epoch, trained here as a worker trains it."""
    spec = load_spec(spec_path)
    data = load_dataset(spec.dataset, spec_path.parent)
    m = spec.resolve_subset_size(data.n_train)
    states: list[TrainingState] = []
    threads = torch.get_num_threads()
    try:
        Trainer(data, "cpu", 1).run(
            spec.model,
            spec.training,
            subset_mask(spec.seed, trial_index, data.n_train, m),
            training_seed(spec.seed, trial_index),
            # Through bytes at once, as a worker stores it: the live model trains on.
            checkpointing=Checkpointing(
                save=lambda state: states.append(decode(encode(state))), every_epochs=1
            ),
        )
    finally:
        torch.set_num_threads(threads)
    return states


@pytest.mark.timeout(300)
def test_a_checkpoint_that_does_not_fit_is_passed_over_by_memtail_run(tmp_path: Path) -> None:
    _images(tmp_path)
    spec = _spec(tmp_path, "unfit", "mlp")
    url = f"sqlite:///{tmp_path / 'memtail.db'}"
    assert main(["--database-url", url, "db", "upgrade"]) == 0
    assert main(["--database-url", url, "experiment", "create", str(spec), "--no-dispatch"]) == 0
    # Trial 0: a latest checkpoint of another width over a real one of epoch 2; trial 1:
    # only one without a parameter. Planted as any writer would, with no claim.
    states = _trained_states(spec, 0)
    fallback, wider = states[1], states[3]
    name = next(iter(wider.model))
    wider.model[name] = torch.zeros(wider.model[name].shape[0] + 1, *wider.model[name].shape[1:])
    missing = _trained_states(spec, 1)[2]
    del missing.model[next(iter(missing.model))]
    engine = make_engine(url)
    try:
        (experiment_id,) = _rows(tmp_path, "SELECT id FROM experiments")[0]
        for artifact, state in (("checkpoint-0-previous", fallback), ("checkpoint-0", wider),
                                ("checkpoint-1", missing)):  # fmt: skip
            write_artifact(engine, experiment_id, artifact, [encode(state)])
    finally:
        engine.dispose()
    run = _run(tmp_path, spec, _env(), workers=1)
    try:
        out, err = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 0, err[-3000:]
    rows = _stored(tmp_path, "unfit")
    # Both succeeded in their first attempt, to the bits of an uninterrupted run: trial 0
    # from the checkpoint before (its seconds carried in), trial 1 from epoch 1.
    assert [(row[7], row[4]) for row in rows] == [("succeeded", 1)] * 2
    for index, row in enumerate(rows):
        got = _bits(row, 200, 50)
        for a, b in zip(got, _uninterrupted(spec, index), strict=True):
            assert np.array_equal(a, b), f"trial {index} differs"
    assert rows[0][6] == pytest.approx(fallback.seconds) and not rows[1][6]
    assert _rows(tmp_path, "SELECT count(*) FROM artifacts") == [(0,)]
