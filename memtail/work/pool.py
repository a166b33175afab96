"""The embedded run's worker processes: started fresh, replaced when they die, never orphaned.

Each worker is a spawned process (it imports torch itself; no forked thread pools) that
claims and trains trials of one experiment until none is left to claim. Workers die with
their parent: on Linux the kernel sends them SIGKILL when it exits, however it exits
(``prctl(PR_SET_PDEATHSIG)``); elsewhere a thread watches the parent's pid. A worker that
dies under a trial (killed, out of memory) is replaced at once, and its trial goes back
to pending with the attempt counted, as a reaped lease would.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from multiprocessing.process import BaseProcess

from memtail.config import Settings
from memtail.status import ExperimentStatus, TrialStatus
from memtail.store import trials
from memtail.store.engine import Engine, make_engine
from memtail.store.experiments import get_experiment
from memtail.work import preemption
from memtail.work.runner import TrialRunner

# Worker names of local processes: "local:<parent pid>:<n>".
LOCAL_PREFIX = "local:"
# prctl(2): ask the kernel for a signal when the parent exits.
_PR_SET_PDEATHSIG = 1


def claimable_later(engine: Engine, experiment_id: int) -> bool:
    """Whether a trial of the experiment may still become claimable: it is active and has
    a pending trial, or a running one that may fail back to pending."""
    if get_experiment(engine, experiment_id).status != ExperimentStatus.ACTIVE:
        return False
    counts = trials.status_counts(engine, experiment_id)
    return counts[TrialStatus.PENDING] + counts[TrialStatus.RUNNING] > 0


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    else:

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="memtail-parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _worker_main(settings: Settings, experiment_id: int, name: str, parent: int) -> None:
    _die_with_parent(parent)
    # The parent handles Ctrl-C for the whole run: it stops us and returns our trial.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM (the parent's stop, or anyone's): save the trial, hand it back, exit 0.
    preemption.install(settings.stop_grace_seconds)
    engine = make_engine(settings.database_url)
    runner = TrialRunner(engine, settings, name)
    while not preemption.requested():
        claim = trials.claim_next(engine, experiment_id, name, settings.lease_seconds)
        if claim is None:
            if not claimable_later(engine, experiment_id):
                return
            # A sibling's trial may still fail and come back: wait for it.
            time.sleep(0.5)
            continue
        runner.run_claimed(claim)


class WorkerDeaths(RuntimeError):
    """Local workers keep dying before they store anything; the message says so."""


class LocalPool:
    """``size`` local worker processes on one experiment, kept at that size while there is
    work; ``stop`` ends them and returns their trials to pending."""

    def __init__(self, engine: Engine, settings: Settings, experiment_id: int, size: int) -> None:
        self._engine = engine
        self._settings = settings
        self._experiment_id = experiment_id
        self._context = mp.get_context("spawn")
        self._prefix = f"{LOCAL_PREFIX}{os.getpid()}:"
        self._started = 0
        self._deaths = 0
        self._workers: dict[str, BaseProcess] = {}
        for _ in range(size):
            self._start()

    def _start(self) -> None:
        name = f"{self._prefix}{self._started}"
        self._started += 1
        process = self._context.Process(
            target=_worker_main,
            args=(self._settings, self._experiment_id, name, os.getpid()),
            daemon=True,
        )
        process.start()
        self._workers[name] = process

    def alive(self) -> bool:
        return any(process.is_alive() for process in self._workers.values())

    def replace_dead(self, stored: int) -> list[str]:
        """Replace every worker that ended while there is still work to claim, returning
        the trial of one that died under it at once; the names of those that died.

        ``stored``: trials stored so far, to tell workers that die under trials (each
        death then costs that trial an attempt) from workers that cannot start at all.
        """
        died = []
        for name, process in list(self._workers.items()):
            if process.is_alive():
                continue
            del self._workers[name]
            if process.exitcode != 0:
                died.append(name)
                self._deaths += 1
                trials.release_running(
                    self._engine,
                    self._experiment_id,
                    name,
                    exact=True,
                    died=f"local worker {name} died (exit code {process.exitcode}) under it",
                    max_attempts=self._settings.max_attempts,
                )
            if claimable_later(self._engine, self._experiment_id):
                if self._deaths > 2 * stored + 3 * max(1, len(self._workers)) + 3:
                    raise WorkerDeaths(
                        f"local workers keep dying ({self._deaths} so far, the last with exit "
                        f"code {process.exitcode}); see the messages above"
                    )
                self._start()
        return died

    def stop(self, *, now: bool) -> None:
        """End the workers (``now``: mid-trial, each saving its trial's state and handing
        it back within the grace period) and return their trials to pending."""
        for process in self._workers.values():
            if now:
                process.terminate()
        for process in self._workers.values():
            process.join(timeout=self._settings.stop_grace_seconds + 5)
            if process.is_alive():
                process.kill()
                process.join()
        trials.release_running(self._engine, self._experiment_id, self._prefix)
