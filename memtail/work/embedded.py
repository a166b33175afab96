"""The embedded run behind ``memtail run``: one SQLite file and local worker processes.

A single SQLite file is the database, and local worker processes (one per core, one torch
thread each) pull trials with the same claim, train, store and estimate code the Celery
workers use. Re-running the same command resumes: the experiment already exists and only
unfinished trials run.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import time
from pathlib import Path

from tqdm import tqdm

from memtail.config import Settings
from memtail.status import TrialStatus
from memtail.store import trials
from memtail.store.engine import Engine, make_engine
from memtail.work.estimator import estimate_experiment
from memtail.work.runner import TrialRunner

#: The bundled spec ``memtail run`` trains when given none.
DEFAULT_SPEC = "digits-mlp"
# Worker names of local processes: "local:<parent pid>:<i>".
LOCAL_PREFIX = "local:"


def embedded_settings(settings: Settings, out: Path) -> Settings:
    """``settings`` with the database in ``out/memtail.db`` when none was chosen (by flag
    or MEMTAIL_DATABASE_URL): the embedded run keeps its database next to its plots."""
    if settings.database_url != Settings().database_url:
        return settings
    out.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(settings, database_url=f"sqlite:///{out / 'memtail.db'}")


def _worker_main(settings: Settings, experiment_id: int, name: str) -> None:
    engine = make_engine(settings.database_url)
    runner = TrialRunner(engine, settings, name)
    while True:
        claim = trials.claim_next(engine, experiment_id, name, settings.lease_seconds)
        if claim is None:
            counts = trials.status_counts(engine, experiment_id)
            if counts[TrialStatus.PENDING] == 0 and counts[TrialStatus.RUNNING] == 0:
                return
            # A sibling's trial may still fail and come back: wait for it.
            time.sleep(0.5)
            continue
        runner.run_claimed(claim)


def run_trials(
    engine: Engine, settings: Settings, experiment_id: int, total: int, n_workers: int
) -> None:
    """Train the experiment's pending trials in ``n_workers`` local processes; return when
    none is pending or running.

    Shows a progress bar (rate, ETA) of ``total`` trials, reaps dead leases and
    re-estimates every ``settings.estimate_interval`` seconds meanwhile. Trials left
    running by an interrupted local run are ours and dead: they go back to pending at
    once instead of after a lease (Celery workers' trials are left alone).
    """
    trials.release_running(engine, experiment_id, worker_prefix=LOCAL_PREFIX)
    ctx = mp.get_context("spawn")  # children import torch fresh; no forked thread pools
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(settings, experiment_id, f"{LOCAL_PREFIX}{os.getpid()}:{i}"),
            daemon=True,
        )
        for i in range(n_workers)
    ]
    for proc in procs:
        proc.start()
    last_estimate = time.monotonic()
    try:
        with tqdm(total=total, unit="trial", desc="trials", smoothing=0.1, mininterval=1) as bar:
            while True:
                counts = trials.status_counts(engine, experiment_id)
                done = counts[TrialStatus.SUCCEEDED] + counts[TrialStatus.FAILED]
                bar.update(done - bar.n)
                bar.set_postfix(
                    running=counts[TrialStatus.RUNNING],
                    failed=counts[TrialStatus.FAILED],
                    refresh=False,
                )
                if counts[TrialStatus.PENDING] == 0 and counts[TrialStatus.RUNNING] == 0:
                    break
                if not any(p.is_alive() for p in procs):
                    raise RuntimeError("all local workers exited with trials left; see above")
                trials.reap(engine, settings.max_attempts)
                if time.monotonic() - last_estimate > settings.estimate_interval:
                    estimate_experiment(engine, experiment_id, device=settings.estimator_device)
                    last_estimate = time.monotonic()
                time.sleep(0.5)
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        mine = f"{LOCAL_PREFIX}{os.getpid()}:"
        trials.release_running(engine, experiment_id, worker_prefix=mine)
