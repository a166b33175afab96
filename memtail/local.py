"""``memtail run``: the embedded default, no servers needed.

A single SQLite file is the database, and local worker processes (one per core, one torch
thread each) pull trials with the same claim, train, store and estimate code the Celery
workers use. Re-running the same command resumes: the experiment already exists and only
unfinished trials run.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import time
from pathlib import Path

from sqlalchemy.engine import Engine
from tqdm import tqdm

from memtail import trials
from memtail.config import Settings

DEFAULT_SPEC = Path(__file__).resolve().parents[1] / "experiments" / "digits-mlp.toml"
# Worker names of local processes: "local:<parent pid>:<i>".
LOCAL_PREFIX = "local:"


def _worker_main(settings: Settings, experiment_id: int, name: str) -> None:
    from memtail.db.engine import make_engine
    from memtail.runner import TrialRunner

    engine = make_engine(settings.database_url)
    runner = TrialRunner(engine, settings, name)
    while True:
        claim = trials.claim_next(engine, experiment_id, name, settings.lease_seconds)
        if claim is None:
            counts = trials.status_counts(engine, experiment_id)
            if counts["pending"] == 0 and counts["running"] == 0:
                return
            # A sibling's trial may still fail and come back: wait for it.
            time.sleep(0.5)
            continue
        runner.run_claimed(claim)


def run_local(args: argparse.Namespace, settings: Settings) -> int:
    from memtail.commands import load_spec_arg
    from memtail.datasets import load_dataset
    from memtail.db import migrate
    from memtail.db.engine import make_engine
    from memtail.estimates import estimate_experiment
    from memtail.experiments import ExampleSet, create_experiment, get_experiment
    from memtail.summary import print_summary

    out = Path(args.out)
    if settings.database_url == Settings().database_url:
        # No database chosen (flag or MEMTAIL_DATABASE_URL): a SQLite file next to the plots.
        out.mkdir(parents=True, exist_ok=True)
        settings = dataclasses.replace(settings, database_url=f"sqlite:///{out / 'memtail.db'}")
    spec_path = args.spec or str(DEFAULT_SPEC)
    spec = load_spec_arg(spec_path, args)
    migrate.upgrade(settings.database_url)
    dataset = load_dataset(spec.dataset, settings.data_root, download=args.download)
    engine = make_engine(settings.database_url)
    result = create_experiment(
        engine,
        spec,
        ExampleSet.from_dataset(dataset),
    )
    experiment = result.experiment
    verb = "created" if result.created else "resuming"
    print(
        f"{verb} experiment {experiment.name!r}: {experiment.target_trials} trials, "
        f"m={experiment.subset_size} of n_train={experiment.n_train}, n_test={experiment.n_test}"
    )
    n_workers = args.workers or os.cpu_count() or 1
    # Trials left running by an interrupted local run are ours and dead: they go back to
    # pending at once instead of after a lease (Celery workers' trials are left alone).
    trials.release_running(engine, experiment.id, worker_prefix=LOCAL_PREFIX)
    _drive(engine, settings, experiment.id, experiment.target_trials, n_workers)
    estimate_experiment(engine, experiment.id, device=settings.estimator_device)
    print_summary(engine, experiment.id, settings.database_url)
    from memtail.plots import plot_experiment

    for path in plot_experiment(engine, get_experiment(engine, experiment.id), out, dataset):
        print(f"  plot: {path}")
    return 0


def _drive(
    engine: Engine, settings: Settings, experiment_id: int, total: int, n_workers: int
) -> None:
    from memtail.estimates import estimate_experiment

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
                done = counts["succeeded"] + counts["failed"]
                bar.update(done - bar.n)
                bar.set_postfix(running=counts["running"], failed=counts["failed"], refresh=False)
                if counts["pending"] == 0 and counts["running"] == 0:
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
