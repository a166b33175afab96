"""Run claimed trials inside one worker process: claim, train with heartbeats, store.

Shared by the Celery task (``services/celery_app.py``) and the embedded local runner, so
both paths claim, train, fence and store with the same code. The dataset of an experiment
is loaded once per process and kept on the device; each trial selects its subset by mask.
Within a chain (:meth:`TrialRunner.run_chain`) stores run on a writer thread, overlapping
the next trial's training.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

from memtail.config import Settings
from memtail.stats import bits
from memtail.stats.outcomes import TrialOutcome
from memtail.status import TrialStatus
from memtail.store import trials
from memtail.store.engine import DatabaseError, Engine, with_retries
from memtail.store.experiments import Experiment, get_experiment

log = logging.getLogger(__name__)


class Heartbeat:
    """Extends a claim's lease from a background thread while the trial trains.

    A thread, not the epoch callback, so that a single long epoch cannot let the lease
    lapse. The training loop calls :meth:`check` between epochs: once the lease is lost
    (reaped and re-claimed elsewhere) training stops instead of wasting the device.
    """

    def __init__(self, engine: Engine, claim: trials.Claim, settings: Settings) -> None:
        self._engine = engine
        self._claim = claim
        self._settings = settings
        self._stop = threading.Event()
        self._lost: trials.LeaseLost | None = None
        self._thread = threading.Thread(target=self._loop, name="memtail-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._settings.heartbeat_seconds):
            try:
                trials.heartbeat(self._engine, self._claim, self._settings.lease_seconds)
            except trials.LeaseLost as lost:
                self._lost = lost
                return
            except DatabaseError as error:
                # Database briefly unreachable (restart, failover): keep training and try
                # again next period; the lease tolerates missed heartbeats by design.
                log.warning("heartbeat for trial %s failed: %s", self._claim.trial_id, error)

    def check(self, epoch: int = 0, loss: float = 0.0) -> None:
        """Raise LeaseLost if another worker now owns this trial."""
        if self._lost is not None:
            raise self._lost


class Handled(StrEnum):
    """What became of one trial a worker was asked to run."""

    #: Trained and stored.
    SUCCEEDED = TrialStatus.SUCCEEDED
    #: The attempt failed; the trial waits for a retry.
    PENDING = TrialStatus.PENDING
    #: The attempt failed and was the last one.
    FAILED = TrialStatus.FAILED
    #: Not pending when claimed: a duplicate message, or the trial ended meanwhile.
    SKIPPED = "skipped"
    #: The claim went stale (reaped and claimed again elsewhere); nothing was written.
    LOST = "lost"


@dataclass(frozen=True)
class TrialReport:
    trial_id: int
    status: Handled
    seconds: float = 0.0
    error: str | None = None
    #: Known once the trial was claimed.
    experiment_id: int | None = None
    trial_index: int | None = None
    #: Of a trial that succeeded.
    train_accuracy: float | None = None
    test_accuracy: float | None = None

    def __str__(self) -> str:
        """One log line: "trial 17: succeeded in 0.51s (experiment 3, index 16; ...)"."""
        text = f"trial {self.trial_id}: {self.status} in {self.seconds:.2f}s"
        if self.experiment_id is not None:
            text += f" (experiment {self.experiment_id}, index {self.trial_index}"
            if self.test_accuracy is not None:
                text += (
                    f"; train accuracy {self.train_accuracy:.3f}, "
                    f"test accuracy {self.test_accuracy:.3f}"
                )
            text += ")"
        return f"{text}: {self.error}" if self.error else text


class TrialRunner:
    """One per worker process; keeps each experiment's dataset resident on the device."""

    def __init__(self, engine: Engine, settings: Settings, worker: str) -> None:
        self._engine = engine
        self._settings = settings
        self._worker = worker
        self._loaded: dict[int, tuple[Experiment, object]] = {}
        self._executor: ThreadPoolExecutor | None = None

    def _trainer(self, experiment_id: int) -> tuple[Experiment, object]:
        if experiment_id not in self._loaded:
            # Imported here: torch is heavy and the storage layer must not need it.
            from memtail.training.datasets import load_dataset
            from memtail.training.trainer import Trainer

            experiment = with_retries(lambda: get_experiment(self._engine, experiment_id))
            dataset = load_dataset(experiment.spec.dataset, self._settings.data_root)
            if (dataset.n_train, dataset.n_test) != (experiment.n_train, experiment.n_test):
                raise RuntimeError(
                    f"dataset {experiment.spec.dataset.name} on this worker has "
                    f"{dataset.n_train}/{dataset.n_test} examples but the experiment was "
                    f"created with {experiment.n_train}/{experiment.n_test}"
                )
            trainer = Trainer(
                dataset,
                device=self._settings.device,
                threads=self._settings.torch_threads,
                compile_mode=self._settings.compile_mode,
            )
            # One resident dataset at a time: GPU memory is for the current experiment.
            self._loaded = {experiment_id: (experiment, trainer)}
        return self._loaded[experiment_id]

    def _claim(self, trial_id: int) -> trials.Claim | None:
        return with_retries(
            lambda: trials.claim(self._engine, trial_id, self._worker, self._settings.lease_seconds)
        )

    def run(self, trial_id: int) -> TrialReport:
        """Run one message's trial and nothing more (a chain with no budget)."""
        return self.run_chain(trial_id, budget_seconds=0)[0]

    def run_claimed(self, claim: trials.Claim) -> TrialReport:
        """Train a claimed trial and store its outcome before returning."""
        return self._train(claim)[0].result()

    def run_chain(self, trial_id: int, budget_seconds: float) -> list[TrialReport]:
        """Run a message's trial, then claim further trials of its experiment directly.

        Each broker round trip (ack, next message, hand-off to the child) idles a worker
        for about 10 ms; for sub-second trials that is several percent of the hardware.
        After its own trial the worker keeps claiming undispatched pending trials of the
        same experiment from the database (they have no message, so nothing turns into a
        duplicate) until ``budget_seconds`` have passed since the task began, so a task
        never holds a worker much longer than one trial past the budget and other
        experiments' messages still get their turn.

        Within a chain, a trial's store runs on a writer thread while the next trial
        trains, so the device never waits for the database; at most one store is in
        flight, and every store has finished before this returns (the message is acked
        only then). The chain stops after the first trial that does not succeed: a
        broken worker must not burn through the experiment's attempts faster than its
        messages would.
        """
        start = time.monotonic()
        claim = self._claim(trial_id)
        if claim is None:
            # Duplicate delivery, or a trial finished/failed meanwhile: dropped on purpose,
            # the database already says it needs no work.
            return [TrialReport(trial_id, Handled.SKIPPED)]
        experiment_id = claim.experiment_id
        reports: list[TrialReport] = []
        in_flight: Future[TrialReport] | None = None
        while claim is not None:
            current, trained = self._train(claim)
            if in_flight is not None:
                reports.append(in_flight.result())
            in_flight = current
            stored = not reports or reports[-1].status == Handled.SUCCEEDED
            if not (trained and stored) or time.monotonic() - start >= budget_seconds:
                break
            claim = with_retries(
                lambda: trials.claim_next(
                    self._engine,
                    experiment_id,
                    self._worker,
                    self._settings.lease_seconds,
                    undispatched_only=True,
                )
            )
        if in_flight is not None:
            reports.append(in_flight.result())
        return reports

    def _train(self, claim: trials.Claim) -> tuple[Future[TrialReport], bool]:
        """Train on this thread; the store (or the failure record) runs on the writer.

        Returns the report to come and whether training itself succeeded.

        The lease is held from the claim until the result is stored: loading the dataset
        onto the device (a process's first trial: imports, CUDA init, a large dataset) and
        storing through a database restart (retries with backoff) can each take longer
        than a lease, and the trial must not be reaped meanwhile.
        """
        beat = Heartbeat(self._engine, claim, self._settings).start()
        try:
            experiment, trainer = self._trainer(claim.experiment_id)
            mask = bits.unpack(claim.subset, experiment.n_train, what="subset")
            spec = experiment.spec
            beat.check()
            outcome = trainer.run(  # type: ignore[attr-defined]
                spec.model, spec.training, mask, claim.seed, on_epoch=beat.check
            )
            beat.check()
        except trials.LeaseLost as lost:
            beat.stop()
            return _done(_report(claim, Handled.LOST, error=str(lost))), False
        except Exception as error:  # noqa: BLE001 - any training failure is this attempt's
            _release_device_memory()
            return self._writer().submit(self._record_failure, claim, beat, error), False
        store = self._writer().submit(
            self._store, claim, beat, outcome, experiment.n_train, experiment.n_test
        )
        return store, True

    def _store(
        self,
        claim: trials.Claim,
        beat: Heartbeat,
        outcome: TrialOutcome,
        n_train: int,
        n_test: int,
    ) -> TrialReport:
        try:
            # Retried through a database restart: the trained result is the expensive part.
            # If a commit landed but its acknowledgement was lost, the retry finds the trial
            # no longer running and reports "lost"; the outcome is stored once.
            with_retries(lambda: trials.store(self._engine, claim, outcome, n_train, n_test))
        except trials.LeaseLost as lost:
            beat.stop()
            return _report(claim, Handled.LOST, error=str(lost))
        except Exception as error:  # noqa: BLE001 - e.g. the database stayed down
            return self._record_failure(claim, beat, error)
        beat.stop()
        return _report(
            claim,
            Handled.SUCCEEDED,
            seconds=outcome.seconds,
            train_accuracy=outcome.train_accuracy,
            test_accuracy=outcome.test_accuracy,
        )

    def _record_failure(
        self, claim: trials.Claim, beat: Heartbeat, error: BaseException
    ) -> TrialReport:
        beat.stop()
        message = f"{type(error).__name__}: {error}"
        log.warning("trial %s attempt %s failed: %s", claim.trial_id, claim.attempt, message)
        log.debug("%s", "".join(traceback.format_exception(error)))
        status = with_retries(
            lambda: trials.fail(self._engine, claim, message, self._settings.max_attempts)
        )
        return _report(claim, Handled(status or Handled.LOST), error=message)

    def _writer(self) -> ThreadPoolExecutor:
        # One thread: stores keep their order, and at most one waits on the database
        # while the next trial trains. Created lazily, after any fork.
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="memtail-store")
        return self._executor


def _report(claim: trials.Claim, status: Handled, **fields: object) -> TrialReport:
    return TrialReport(
        claim.trial_id,
        status,
        experiment_id=claim.experiment_id,
        trial_index=claim.trial_index,
        **fields,  # type: ignore[arg-type]
    )


def _done(report: TrialReport) -> Future[TrialReport]:
    future: Future[TrialReport] = Future()
    future.set_result(report)
    return future


def _release_device_memory() -> None:
    """After CUDA OOM the cached blocks of the failed trial would starve the next one."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
