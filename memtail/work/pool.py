"""The embedded run's worker processes: started once per command, given one experiment after
another, replaced when they die, never orphaned.

Each worker is a spawned process (it imports torch itself; no forked thread pools) that
claims and trains trials of the experiment the pool serves, and waits for the next one
when none is left: starting a process (interpreter, torch, the dataset) takes seconds,
so a command that trains several batches or experiments starts its workers once.
Workers die with their parent: on Linux the kernel sends them SIGKILL when it exits,
however it exits (``prctl(PR_SET_PDEATHSIG)``); elsewhere a thread watches the parent's
pid. A worker that dies under a trial (killed, out of memory) is replaced at once, and
its trial goes back to pending, counted as lost, as a reaped lease would be.

Workers run in their own process group, so a terminal's Ctrl-C reaches the parent only;
the parent stops them by passing on the signal it got (SIGINT or SIGTERM), and each
saves its trial and hands it back, saying which signal arrived.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.process import BaseProcess

from memtail.config import Settings
from memtail.status import ExperimentStatus, TrialStatus
from memtail.store import reaper, trials
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


#: Seconds an idle worker waits for new work before it looks at the database anyway.
IDLE_CHECK_SECONDS = 2.0


def _worker_main(
    settings: Settings, served: ctypes.c_int64, generation: ctypes.c_int64, name: str, parent: int
) -> None:
    _die_with_parent(parent)
    if hasattr(os, "setpgid"):
        # Out of the terminal's process group: its Ctrl-C is the parent's to pass on.
        os.setpgid(0, 0)
    # The parent's stop (SIGINT after a Ctrl-C, SIGTERM) or anyone's SIGTERM: save the
    # trial, hand it back, exit 0.
    preemption.install(settings.stop_grace_seconds, signals=(signal.SIGTERM, signal.SIGINT))
    engine = make_engine(settings.database_url)
    runner = TrialRunner(engine, settings, name)
    while not preemption.requested():
        experiment_id = served.value
        if experiment_id and runner.run_next(experiment_id):
            continue
        if experiment_id and claimable_later(engine, experiment_id):
            # A sibling's trial may still fail and come back (or, in a probe, the
            # feature trial's features make the others claimable): look again soon.
            time.sleep(0.5)
        else:
            # Nothing to do until the parent serves more work (or a while has passed).
            _wait_for_change(generation, IDLE_CHECK_SECONDS)


def _wait_for_change(generation: ctypes.c_int64, seconds: float) -> None:
    seen, deadline = generation.value, time.monotonic() + seconds
    while generation.value == seen and time.monotonic() < deadline:
        time.sleep(0.1)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """A process started meanwhile inherits an ignored SIGINT (across exec, and Python
    keeps it so), until it has left the terminal's process group and installed its own
    handler: a Ctrl-C in between is then no KeyboardInterrupt traceback in it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


class WorkerDeaths(RuntimeError):
    """Local workers keep dying before they store anything; the message says so."""


class LocalPool:
    """``size`` local worker processes, kept at that size, that train the trials of the
    experiment given to ``serve`` and then wait for the next; ``stop`` ends them and
    returns their trials to pending."""

    def __init__(self, engine: Engine, settings: Settings, size: int) -> None:
        self._engine = engine
        self._settings = settings
        self._context = mp.get_context("spawn")
        # The experiment the workers claim from (0: none yet), and a count of the times
        # it was served. Lock-free shared words, polled: a worker killed while it waits
        # on a lock or a condition would leave it held, or its notify waiting, forever.
        self._served = self._context.RawValue(ctypes.c_int64, 0)
        self._generation = self._context.RawValue(ctypes.c_int64, 0)
        self._experiments: set[int] = set()
        self._prefix = f"{LOCAL_PREFIX}{os.getpid()}:"
        self._started = 0
        self._deaths = 0
        self._workers: dict[str, BaseProcess] = {}
        for _ in range(size):
            self._start()

    @property
    def started(self) -> int:
        """Worker processes started so far, replacements included."""
        return self._started

    def serve(self, experiment_id: int) -> None:
        """Have the workers claim the pending trials of ``experiment_id`` from now on
        (again after it grew): idle ones start at once."""
        self._experiments.add(experiment_id)
        self._served.value = experiment_id
        self._generation.value += 1

    def _start(self) -> None:
        name = f"{self._prefix}{self._started}"
        self._started += 1
        process = self._context.Process(
            target=_worker_main,
            args=(self._settings, self._served, self._generation, name, os.getpid()),
            daemon=True,
        )
        with _sigint_ignored():
            process.start()
        self._workers[name] = process

    def replace_dead(self, stored: int) -> list[str]:
        """Replace every worker that ended, returning the trial of one that died under it
        at once; the names of those that died.

        ``stored``: trials stored so far, to tell workers that die under trials (each
        death then counts as one of its lost claims) from workers that cannot start at all.
        """
        died = []
        for name, process in list(self._workers.items()):
            if process.is_alive():
                continue
            del self._workers[name]
            if process.exitcode != 0:
                died.append(name)
                self._deaths += 1
                served = self._served.value
                if served:
                    reaper.release_running(
                        self._engine,
                        served,
                        name,
                        exact=True,
                        died=f"local worker {name} died (exit code {process.exitcode}) under it",
                        max_lost=self._settings.max_lost,
                    )
                if self._deaths > 2 * stored + 3 * max(1, len(self._workers)) + 3:
                    raise WorkerDeaths(
                        f"local workers keep dying ({self._deaths} so far, the last with exit "
                        f"code {process.exitcode}); see the messages above"
                    )
            # Exit 0: someone told it to stop (SIGTERM) and it handed its trial back.
            self._start()
        return died

    def stop(self, *, now: bool, signum: int = signal.SIGTERM) -> None:
        """End the workers and return their trials to pending. ``now``: mid-trial, by
        ``signum`` (the signal that stopped the command), each saving its trial's state
        and handing it back within the grace period; else once idle."""
        for process in self._workers.values():
            if process.pid is not None and process.is_alive():
                try:
                    os.kill(process.pid, signum if now else signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for process in self._workers.values():
            process.join(timeout=self._settings.stop_grace_seconds + 5)
            if process.is_alive():
                process.kill()
                process.join()
        for experiment_id in sorted(self._experiments):
            reaper.release_running(
                self._engine, experiment_id, self._prefix, max_lost=self._settings.max_lost
            )
