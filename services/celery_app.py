"""The Celery application: ``celery -A services.celery_app worker|beat``.

The process entry point reads the configuration once (here, when Celery imports the app)
and builds per-child state lazily inside each worker child, after the fork, so database
connections and CUDA are never shared across processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from celery import Celery, signals

from memtail.config import ConfigError, Settings
from memtail.store.engine import Engine, make_engine
from memtail.work import preemption, preflight
from memtail.work.broker import (
    CONTROL_QUEUE,
    ESTIMATE,
    REAP,
    RUN_TRIAL,
    TRIALS_QUEUE,
    celery_config,
)
from memtail.work.runner import TrialRunner

log = logging.getLogger("memtail.worker")


def create_app(settings: Settings) -> Celery:
    celery = Celery("memtail")
    celery.conf.update(celery_config(settings))
    celery.conf.memtail_settings = settings
    return celery


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as error:
        # Celery imports this module before its logging exists: one line and exit status
        # 2, as the command line gives, not a traceback out of Celery's import.
        print(f"memtail: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


app = create_app(_settings())


@dataclass
class _ChildState:
    engine: Engine
    runner: TrialRunner


_state: _ChildState | None = None


def _child() -> _ChildState:
    global _state
    if _state is None:
        settings: Settings = app.conf.memtail_settings
        settings = _pin_device(settings)
        engine = make_engine(settings.database_url)
        worker = f"{socket.gethostname()}:{os.getpid()}"
        _state = _ChildState(engine, TrialRunner(engine, settings, worker))
        # A child told to stop mid-trial (by the platform, or by its parent below) saves
        # the trial's state and hands it back; idle, it ends at once, as before. Installed
        # here, in the child's first task: billiard sets its own SIGTERM handler after
        # worker_process_init, which this one then wraps.
        preemption.install(settings.stop_grace_seconds)
    return _state


def _pin_device(settings: Settings) -> Settings:
    """One child per GPU: child i of a prefork pool trains on cuda:i (mod GPU count)."""
    if settings.device != "auto":
        return settings
    import dataclasses

    import torch
    from billiard.process import current_process

    count = torch.cuda.device_count()
    if count == 0:
        return settings
    index = getattr(current_process(), "index", 0) or 0
    return dataclasses.replace(settings, device=f"cuda:{index % count}")


@signals.celeryd_after_setup.connect
def _refuse_unrunnable(sender: str, instance: object, **_: object) -> None:
    """A worker that could run none of its tasks here (no GPU for MEMTAIL_DEVICE=cuda, an
    artifact folder it cannot write) exits before its pool and consumer start, so that it
    takes no message and claims no trial; each trial would otherwise fail in turn.

    SystemExit, not an exception: Celery logs and ignores a receiver's exceptions, while
    a SystemExit raised as it starts stops the worker with that exit status."""
    queues = instance.app.amqp.queues.consume_from  # type: ignore[attr-defined]
    try:
        preflight.check(
            instance.app.conf.memtail_settings,  # type: ignore[attr-defined]
            trains=TRIALS_QUEUE in queues,
            estimates=CONTROL_QUEUE in queues,
        )
    except ConfigError as error:
        log.critical("memtail: error: %s; worker %s does not start", error, sender)
        raise SystemExit(2) from None


@signals.celeryd_after_setup.connect
def _preload_estimator(sender: str, instance: object, **_: object) -> None:
    """The estimator worker imports scipy and numba once, in its parent, before forking.

    Lazily, the first estimate of each child would pay ~3 s of imports, on the CPU that
    trials on the same host train with. Only the modules are loaded here: no compiled
    kernel runs, so no thread pool exists yet when the parent forks.
    """
    if CONTROL_QUEUE in instance.app.amqp.queues.consume_from:  # type: ignore[attr-defined]
        from memtail.work.estimator import preload

        preload()
        log.info("estimator %s preloaded scipy and the compiled kernels", sender)


@signals.worker_process_init.connect
def _reset_after_fork(**_: object) -> None:
    # State built by a parent must never be used by a child: sockets and CUDA contexts
    # do not survive fork.
    global _state
    _state = None


@signals.worker_shutting_down.connect
def _preempt_children(sig: str, how: str, exitcode: int, **_: object) -> None:
    """A warm shutdown (SIGTERM to the worker) waits for the tasks in progress, which for
    a long trial means hours, past any platform's grace period: tell the pool's children
    to save their trials and hand them back instead (compose's ``stop_grace_period``
    and MEMTAIL_STOP_GRACE_SECONDS bound how long that may take)."""
    children = _children()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):  # ended meanwhile
            os.kill(pid, signal.SIGTERM)
    log.info("shutting down (%s): asked %d children to hand trials back", how, len(children))


def _children() -> list[int]:
    """This process's children (Linux: /proc), the prefork pool's trial processes."""
    pids: list[int] = []
    for tasks in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        pids += [int(pid) for pid in tasks.read_text().split()]
    return pids


@app.task(name=RUN_TRIAL, ignore_result=True)
def run_trial(trial_id: int) -> str:
    settings: Settings = app.conf.memtail_settings
    if preemption.requested():
        # Told to stop: take no trial (the coordinator sends this one again).
        return "skipped"
    reports = _child().runner.run_chain(int(trial_id), settings.chain_seconds)
    for report in reports:
        log.info("%s", report)
    return reports[0].status


@app.task(name=ESTIMATE, ignore_result=True)
def estimate() -> int:
    from memtail.work.estimator import estimate_all

    settings: Settings = app.conf.memtail_settings
    summaries = estimate_all(_child().engine, settings.estimator_device)
    for s in summaries:
        log.info(
            "estimated experiment %s from %s trials in %.2fs: %s memorization rows, %s pairs "
            "with infl above the threshold (%.1f expected by chance)%s",
            s.experiment_id,
            s.trials_used,
            s.seconds,
            s.memorization_rows,
            s.influence_rows,
            s.expected_false_pairs,
            "; complete" if s.complete else "",
        )
    return len(summaries)


@app.task(name=REAP, ignore_result=True)
def reap() -> int:
    from memtail.store.reaper import reap as reap_trials

    settings: Settings = app.conf.memtail_settings
    result = reap_trials(_child().engine, settings.max_lost, settings.lease_seconds)
    if result.requeued or result.failed:
        log.warning("reaped %s expired leases (%s failed)", result.requeued, result.failed)
    return result.requeued + result.failed
