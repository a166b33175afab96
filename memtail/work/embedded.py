"""The embedded run behind ``memtail run``: one SQLite file and local worker processes.

A single SQLite file is the database, and local worker processes (one per core, one torch
thread each, ``memtail.work.pool``) pull trials with the same claim, train, store and
estimate code the Celery workers use. Re-running the same command resumes: the experiment
already exists and only unfinished trials run.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

from tqdm import tqdm

from memtail.config import Settings
from memtail.status import TrialStatus
from memtail.store import artifacts, trials
from memtail.store.engine import Engine
from memtail.work import preemption
from memtail.work.estimator import estimate_experiment
from memtail.work.pool import LOCAL_PREFIX, LocalPool, claimable_later


def embedded_settings(settings: Settings, out: Path) -> Settings:
    """``settings`` with the database in ``out/memtail.db`` when none was chosen (by flag
    or MEMTAIL_DATABASE_URL): the embedded run keeps its database next to its plots."""
    if settings.database_url != Settings().database_url:
        return settings
    out.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(settings, database_url=f"sqlite:///{out / 'memtail.db'}")


def run_trials(
    engine: Engine, settings: Settings, experiment_id: int, total: int, n_workers: int
) -> dict[TrialStatus, int]:
    """Train the experiment's pending trials in ``n_workers`` local processes; return the
    trial counts once none is left to claim (all ended, or the experiment was paused).

    Shows a progress bar of ``total`` trials whose rate and ETA count this run's trials
    only, replaces a worker that dies, reaps dead leases and re-estimates every
    ``settings.estimate_interval`` seconds meanwhile. Trials left running by a stopped
    local run go back to pending at once (Celery workers' trials are left alone). On
    Ctrl-C or SIGTERM the workers stop at once and their trials go back to pending.
    """
    trials.release_running(engine, experiment_id, LOCAL_PREFIX)
    artifacts.sweep(engine, artifacts.ABANDONED_SECONDS, folder=settings.artifact_folder)
    pool = LocalPool(engine, settings, experiment_id, n_workers)
    last_estimate = time.monotonic()
    counts = trials.status_counts(engine, experiment_id)
    ended = counts[TrialStatus.SUCCEEDED] + counts[TrialStatus.FAILED]
    finished = False
    try:
        with tqdm(
            total=total, initial=ended, unit="trial", desc="trials", smoothing=0.1, mininterval=1
        ) as bar:
            while True:
                if preemption.requested():
                    # SIGTERM whose exception was lost (raised inside a finalizer): send
                    # it again, now that plain code runs, so the command ends as it should.
                    os.kill(os.getpid(), signal.SIGTERM)
                counts = trials.status_counts(engine, experiment_id)
                bar.update(counts[TrialStatus.SUCCEEDED] + counts[TrialStatus.FAILED] - bar.n)
                bar.set_postfix(
                    running=counts[TrialStatus.RUNNING],
                    failed=counts[TrialStatus.FAILED],
                    refresh=False,
                )
                pool.replace_dead(stored=counts[TrialStatus.SUCCEEDED] - ended)
                if not pool.alive() and not claimable_later(engine, experiment_id):
                    finished = True
                    return counts
                trials.reap(engine, settings.max_attempts)
                if time.monotonic() - last_estimate > settings.estimate_interval:
                    estimate_experiment(engine, experiment_id, device=settings.estimator_device)
                    last_estimate = time.monotonic()
                time.sleep(0.5)
    finally:
        pool.stop(now=not finished)
