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
import signal
import time
from pathlib import Path

from tqdm import tqdm

from memtail.config import Settings
from memtail.status import ExperimentStatus, TrialStatus
from memtail.store import trials
from memtail.store.engine import Engine, make_engine
from memtail.store.experiments import get_experiment
from memtail.work.estimator import estimate_experiment
from memtail.work.runner import TrialRunner

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
    # The parent handles Ctrl-C for the whole run: it stops us and returns our trial.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine = make_engine(settings.database_url)
    runner = TrialRunner(engine, settings, name)
    while True:
        claim = trials.claim_next(engine, experiment_id, name, settings.lease_seconds)
        if claim is None:
            if not _claimable_later(engine, experiment_id):
                return
            # A sibling's trial may still fail and come back: wait for it.
            time.sleep(0.5)
            continue
        runner.run_claimed(claim)


def _claimable_later(engine: Engine, experiment_id: int) -> bool:
    """Whether a trial of the experiment may still become claimable: it is active and has
    a pending trial, or a running one that may fail back to pending."""
    if get_experiment(engine, experiment_id).status != ExperimentStatus.ACTIVE:
        return False
    counts = trials.status_counts(engine, experiment_id)
    return counts[TrialStatus.PENDING] + counts[TrialStatus.RUNNING] > 0


def run_trials(
    engine: Engine, settings: Settings, experiment_id: int, total: int, n_workers: int
) -> dict[TrialStatus, int]:
    """Train the experiment's pending trials in ``n_workers`` local processes; return the
    trial counts once none is left to claim (all ended, or the experiment was paused).

    Shows a progress bar of ``total`` trials whose rate and ETA count this run's trials
    only, reaps dead leases and re-estimates every ``settings.estimate_interval`` seconds
    meanwhile. Trials left running by an interrupted local run are ours and dead: they go
    back to pending at once instead of after a lease (Celery workers' trials are left
    alone). On Ctrl-C the workers stop at once and their trials go back to pending.
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
    counts = trials.status_counts(engine, experiment_id)
    ended = counts[TrialStatus.SUCCEEDED] + counts[TrialStatus.FAILED]
    try:
        with tqdm(
            total=total, initial=ended, unit="trial", desc="trials", smoothing=0.1, mininterval=1
        ) as bar:
            while True:
                counts = trials.status_counts(engine, experiment_id)
                bar.update(counts[TrialStatus.SUCCEEDED] + counts[TrialStatus.FAILED] - bar.n)
                bar.set_postfix(
                    running=counts[TrialStatus.RUNNING],
                    failed=counts[TrialStatus.FAILED],
                    refresh=False,
                )
                if not any(p.is_alive() for p in procs):
                    if _claimable_later(engine, experiment_id):
                        raise RuntimeError("all local workers exited with trials left; see above")
                    return counts
                trials.reap(engine, settings.max_attempts)
                if time.monotonic() - last_estimate > settings.estimate_interval:
                    estimate_experiment(engine, experiment_id, device=settings.estimator_device)
                    last_estimate = time.monotonic()
                time.sleep(0.5)
    except BaseException:
        for proc in procs:
            proc.terminate()  # mid-trial: the trial goes back to pending below
        raise
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        mine = f"{LOCAL_PREFIX}{os.getpid()}:"
        trials.release_running(engine, experiment_id, worker_prefix=mine)
