"""The embedded run's loop: train experiments here with local workers, one after another.

``memtail run``, ``memtail removal --run`` and ``memtail probe --run`` each open one
``LocalSession``. It starts the local worker pool once (``memtail.work.pool``), because
starting a worker (interpreter, torch, dataset) costs seconds that every batch of a
stopping run and every removal arm would otherwise pay again. For each experiment given
to ``run`` it serves the experiment to the workers and shows a progress bar whose rate
is over the last minute while trials run and the batch's average once they have ended
(the bar's last line stays on the screen), replaces a worker that dies, reaps dead
leases and estimates every ``settings.estimate_interval`` seconds; once every trial has
ended it estimates, and trains the batch that the experiment's stopping rules add, if
they do. Ctrl-C or SIGTERM stops the workers at once (each handing its trial back, told
by the signal that stopped the command) and propagates.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from tqdm import tqdm

from memtail.config import Settings
from memtail.records import Experiment
from memtail.status import ExperimentStatus, TrialStatus
from memtail.store import artifacts, reaper, trials
from memtail.store.engine import Engine
from memtail.store.experiments import get_experiment
from memtail.store.progress import progress
from memtail.work import preemption
from memtail.work.estimator import estimate_experiment
from memtail.work.pool import LOCAL_PREFIX, LocalPool

#: The live rate counts the trials that ended over this many seconds.
RATE_WINDOW_SECONDS = 60.0
_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


class TrialsFailed(RuntimeError):
    """Every trial of a run failed; the message says why and what to fix."""


@dataclass(frozen=True)
class Finished:
    """How ``LocalSession.run`` left an experiment."""

    experiment: Experiment  # as stored now: with stopping rules, its last batch's target
    counts: dict[TrialStatus, int]
    paused: bool  # someone paused it meanwhile; its remaining trials wait


class LocalSession:
    """One command's local workers, and the loop that trains experiments with them."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        workers: int,
        say: Callable[[str], None] = print,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._size = workers
        self._say = say
        self._pool: LocalPool | None = None
        self._stored = 0  # trials this session stored: the pool's bound on deaths
        self._seen: set[int] = set()

    def __enter__(self) -> LocalSession:
        self._pool = LocalPool(self._engine, self._settings, self._size)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._pool is None:
            return
        # A Ctrl-C reaches only this process (the workers have their own process group):
        # pass on the signal that stopped the command, so each worker names it.
        ctrl_c = isinstance(error, KeyboardInterrupt) and not preemption.requested()
        self._pool.stop(now=error is not None, signum=signal.SIGINT if ctrl_c else signal.SIGTERM)
        self._pool = None

    def run(
        self,
        experiment: Experiment,
        on_grow: Callable[[int, int], None] | None = None,
    ) -> Finished:
        """Train ``experiment`` until every trial has ended and estimate it; while its
        stopping rules add a batch (``on_grow(old, new target)`` is told), train that too.
        Raises TrialsFailed, with the first trial's own error, when every trial failed."""
        while True:
            counts = self.train(experiment)
            current = get_experiment(self._engine, experiment.id)
            if current.status == ExperimentStatus.PAUSED:
                return Finished(current, counts, paused=True)
            check_any_succeeded(self._engine, experiment.id, counts)
            estimate_experiment(self._engine, experiment.id, device=self._settings.estimator_device)
            grown = get_experiment(self._engine, experiment.id)
            if grown.target_trials == experiment.target_trials:
                return Finished(grown, counts, paused=False)
            if on_grow is not None:
                on_grow(experiment.target_trials, grown.target_trials)
            experiment = grown

    def train(self, experiment: Experiment) -> dict[TrialStatus, int]:
        """Train the experiment's pending trials; the trial counts once every trial has
        ended (or it was paused and none of its trials still runs).

        The bar counts ``experiment.target_trials``; its rate and ETA count this run's
        trials only. Trials left running by a stopped local run go back to pending at
        once (Celery workers' trials are left alone).
        """
        if self._pool is None:
            raise RuntimeError("LocalSession.train outside its `with` block")
        engine, settings, pool = self._engine, self._settings, self._pool
        if experiment.id not in self._seen:
            # Only before our own workers first take it: after that, ours may be running.
            reaper.release_running(engine, experiment.id, LOCAL_PREFIX, max_lost=settings.max_lost)
            artifacts.sweep(engine, artifacts.ABANDONED_SECONDS, folder=settings.artifact_folder)
            self._seen.add(experiment.id)
        pool.serve(experiment.id)
        counts = trials.status_counts(engine, experiment.id)
        ended = _ended(counts)
        stored_before = counts[TrialStatus.SUCCEEDED]
        rate = _Rate()
        last_estimate = time.monotonic()
        with tqdm(
            total=experiment.target_trials,
            initial=ended,
            unit="trial",
            desc="trials",
            bar_format=_BAR,
            mininterval=1,
        ) as bar:
            while True:
                if preemption.requested():
                    # SIGTERM whose exception was lost (raised inside a finalizer): send
                    # it again, now that plain code runs, so the command ends as it should.
                    os.kill(os.getpid(), signal.SIGTERM)
                counts = trials.status_counts(engine, experiment.id)
                rate.add(_ended(counts) - ended)
                bar.update(_ended(counts) - bar.n)
                pool.replace_dead(self._stored + counts[TrialStatus.SUCCEEDED] - stored_before)
                if _settled(engine, experiment.id, counts):
                    # The bar's last line stays on the screen: the batch's average, as
                    # the last minute's rate would pass for the whole run's.
                    bar.set_postfix_str(_final_postfix(rate, counts), refresh=True)
                    break
                bar.set_postfix_str(
                    _postfix(rate, experiment.target_trials - _ended(counts), counts),
                    refresh=False,
                )
                reaper.reap(engine, settings.max_lost)
                if time.monotonic() - last_estimate > settings.estimate_interval:
                    estimate_experiment(engine, experiment.id, device=settings.estimator_device)
                    last_estimate = time.monotonic()
                time.sleep(0.5)
        self._stored += counts[TrialStatus.SUCCEEDED] - stored_before
        trained, seconds = _ended(counts) - ended, rate.elapsed()
        if trained:
            # The same average the bar ended on, so the two lines agree.
            self._say(
                f"{experiment.name}: {trained} trials in {_duration(seconds)}, "
                f"{rate.average() or 0.0:.1f}/min on average"
            )
        return counts


def check_any_succeeded(engine: Engine, experiment_id: int, counts: dict[TrialStatus, int]) -> None:
    """Raise TrialsFailed with the first trial's own error when every trial failed."""
    if counts[TrialStatus.SUCCEEDED] > 0 or counts[TrialStatus.FAILED] == 0:
        return
    report = progress(engine, get_experiment(engine, experiment_id))
    name, failed = report.experiment.name, report.counts[TrialStatus.FAILED]
    index, error = report.failures[0]
    first = (error.strip().splitlines() or ["?"])[-1][:300]
    raise TrialsFailed(
        f"all {failed} trials of {name!r} failed (trial {index}: {first}); fix the spec, then "
        f"`memtail experiment delete {name} --yes` and run again"
    )


def _ended(counts: dict[TrialStatus, int]) -> int:
    return counts[TrialStatus.SUCCEEDED] + counts[TrialStatus.FAILED]


def _settled(engine: Engine, experiment_id: int, counts: dict[TrialStatus, int]) -> bool:
    """No trial of ours runs and none is left to claim (all ended, or it is paused)."""
    if counts[TrialStatus.RUNNING]:
        return False
    if not counts[TrialStatus.PENDING]:
        return True
    return get_experiment(engine, experiment_id).status != ExperimentStatus.ACTIVE


class _Rate:
    """Trials per minute over the last RATE_WINDOW_SECONDS (from the start, before that)."""

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._samples: deque[tuple[float, int]] = deque([(self._start, 0)])

    def add(self, done: int) -> None:
        now = time.monotonic()
        self._samples.append((now, done))
        while len(self._samples) > 2 and self._samples[1][0] <= now - RATE_WINDOW_SECONDS:
            self._samples.popleft()

    def per_minute(self) -> float | None:
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return 60.0 * (n1 - n0) / (t1 - t0) if t1 - t0 >= 1.0 and n1 > 0 else None

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def average(self) -> float | None:
        """Trials per minute from the start to the latest count (None before a trial
        ended)."""
        t1, n1 = self._samples[-1]
        return 60.0 * n1 / max(t1 - self._start, 1e-9) if n1 > 0 else None


def _postfix(rate: _Rate, remaining: int, counts: dict[TrialStatus, int]) -> str:
    per_minute = rate.per_minute()
    if per_minute is None:
        speed = "rate ?"
    else:
        eta = _duration(60.0 * remaining / per_minute) if per_minute > 0 else "?"
        speed = f"{per_minute:.1f}/min, ETA {eta}"
    return f"{speed}, running={counts[TrialStatus.RUNNING]}, failed={counts[TrialStatus.FAILED]}"


def _final_postfix(rate: _Rate, counts: dict[TrialStatus, int]) -> str:
    per_minute = rate.average()
    speed = "rate ?" if per_minute is None else f"{per_minute:.1f}/min on average"
    return f"{speed}, running={counts[TrialStatus.RUNNING]}, failed={counts[TrialStatus.FAILED]}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
