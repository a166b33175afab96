"""Run claimed trials inside one worker process: claim, train with heartbeats, store.

Shared by the Celery task (``services/celery_app.py``) and the embedded local runner, so
both paths claim, train, fence and store with the same code. The dataset of an experiment
is loaded once per process and kept on the device; each trial selects its subset by mask.
Within a chain (:meth:`TrialRunner.run_chain`) stores run on a writer thread, overlapping
the next trial's training. A probe experiment's feature trial trains the network and
stages its features as an artifact that its store completes; its probe trials train a
linear classifier on those features, read once per process.
"""

from __future__ import annotations

import logging
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from memtail.config import Settings
from memtail.records import FEATURE_TRIAL, Claim, Experiment
from memtail.specification import ExperimentKind
from memtail.stats import bits
from memtail.stats.outcomes import TrialOutcome
from memtail.status import TrialStatus
from memtail.store import checkpoints, trials
from memtail.store.artifacts import Staged, discard
from memtail.store.engine import DatabaseError, Engine, with_retries
from memtail.store.experiments import get_experiment
from memtail.work import preemption
from memtail.work.features import load_features, stage_features
from memtail.work.handled import Handled, TrialReport
from memtail.work.heartbeat import Heartbeat

if TYPE_CHECKING:  # imported lazily at run time: it needs torch
    from memtail.work.resume import TrialCheckpoints

log = logging.getLogger(__name__)


class TrialRunner:
    """One per worker process; keeps each experiment's dataset resident on the device."""

    def __init__(self, engine: Engine, settings: Settings, worker: str) -> None:
        self._engine = engine
        self._settings = settings
        self._worker = worker
        self._loaded: dict[int, tuple[Experiment, object]] = {}
        self._probe: tuple[int, object] | None = None
        self._executor: ThreadPoolExecutor | None = None
        # The checkpoints of the trial being trained.
        self._checkpoints: TrialCheckpoints | None = None

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
            self._probe = None
        return self._loaded[experiment_id]

    def _linear_probe(self, experiment: Experiment, trainer: object) -> object:
        """The experiment's features on the device, read once per process."""
        if self._probe is None or self._probe[0] != experiment.id:
            from memtail.training.probe import LinearProbe

            train, test = with_retries(
                lambda: load_features(
                    self._engine, experiment, folder=self._settings.artifact_folder
                )
            )
            probe = LinearProbe(
                train,
                trainer.y_train,  # type: ignore[attr-defined]
                test,
                trainer.y_test,  # type: ignore[attr-defined]
                trainer.dataset.num_classes,  # type: ignore[attr-defined]
                device=self._settings.device,
            )
            self._probe = (experiment.id, probe)
        return self._probe[1]

    def _fit(self, claim: Claim, beat: Heartbeat) -> tuple[TrialOutcome, Staged | None]:
        """Train the claimed trial; a probe's feature trial also stages its features.

        A network's training resumes from the trial's latest checkpoint and saves new
        ones as the spec says (``memtail.work.resume``); a stop request ends it with
        ``Preempted`` once its state is saved.
        """
        experiment, trainer = self._trainer(claim.experiment_id)
        mask = bits.unpack(claim.subset, experiment.n_train, what="subset")
        spec = experiment.spec
        beat.check()
        features = experiment.kind == ExperimentKind.PROBE and claim.trial_index == FEATURE_TRIAL
        keep = None
        if experiment.kind != ExperimentKind.PROBE or features:
            from memtail.work.resume import checkpointing

            self._checkpoints = checkpointing(
                self._engine, experiment, claim, folder=self._settings.artifact_folder
            )
            keep = self._checkpoints.keep
        network = (spec.model, spec.training, mask, claim.seed)
        if experiment.kind != ExperimentKind.PROBE:
            outcome = trainer.run(  # type: ignore[attr-defined]
                *network, on_epoch=beat.check, checkpointing=keep
            )
        elif not features:
            probe = self._linear_probe(experiment, trainer)
            outcome = probe.run(  # type: ignore[attr-defined]
                spec.probe, mask, claim.seed, margins=spec.training.margins, on_epoch=beat.check
            )
        else:
            model, outcome = trainer.fit(  # type: ignore[attr-defined]
                *network, on_epoch=beat.check, checkpointing=keep
            )
        beat.check()
        if not features:
            return outcome, None
        staged = stage_features(
            self._engine,
            experiment,
            trainer.features(model),  # type: ignore[attr-defined]
            folder=self._settings.artifact_folder,
            writer=self._worker,
        )
        return outcome, staged

    def _claim(self, trial_id: int) -> Claim | None:
        return with_retries(
            lambda: trials.claim(self._engine, trial_id, self._worker, self._settings.lease_seconds)
        )

    def run(self, trial_id: int) -> TrialReport:
        """Run one message's trial and nothing more (a chain with no budget)."""
        return self.run_chain(trial_id, budget_seconds=0)[0]

    def run_claimed(self, claim: Claim) -> TrialReport:
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

    def _train(self, claim: Claim) -> tuple[Future[TrialReport], bool]:
        """Train on this thread; the store (or the failure record) runs on the writer.

        Returns the report to come and whether training itself succeeded.

        The lease is held from the claim until the result is stored: loading the dataset
        onto the device (a process's first trial: imports, CUDA init, a large dataset) and
        storing through a database restart (retries with backoff) can each take longer
        than a lease, and the trial must not be reaped meanwhile.
        """
        beat = Heartbeat(self._engine, claim, self._settings).start()
        self._checkpoints = None
        try:
            with preemption.trial():
                outcome, features = self._fit(claim, beat)
            experiment = self._loaded[claim.experiment_id][0]
        except trials.LeaseLost as lost:
            beat.stop()
            return _done(_report(claim, Handled.LOST, error=str(lost))), False
        except Exception as error:  # noqa: BLE001 - any training failure is this attempt's
            # Imported here, as the trainer is: by now training has imported torch.
            from memtail.training.snapshot import Preempted

            if isinstance(error, Preempted):
                return _done(self._hand_back(claim, beat, str(error))), False
            _release_device_memory()
            return self._writer().submit(self._record_failure, claim, beat, error), False
        store = self._writer().submit(
            self._store,
            claim,
            beat,
            outcome,
            experiment.n_train,
            experiment.n_test,
            features,
            self._checkpoints is not None and self._checkpoints.exist,
        )
        return store, True

    def _hand_back(self, claim: Claim, beat: Heartbeat, why: str) -> TrialReport:
        """The worker was told to stop: its trial's state is saved; back to pending."""
        beat.stop()
        status = with_retries(
            lambda: trials.hand_back(self._engine, claim, self._settings.max_preemptions)
        )
        log.warning("trial %s attempt %s handed back: %s", claim.trial_id, claim.attempt, why)
        if status is None:
            return _report(claim, Handled.LOST, error=why)
        return _report(
            claim, Handled.PREEMPTED if status == TrialStatus.PENDING else Handled.FAILED, error=why
        )

    def _store(
        self,
        claim: Claim,
        beat: Heartbeat,
        outcome: TrialOutcome,
        n_train: int,
        n_test: int,
        features: Staged | None = None,
        checkpointed: bool = False,
    ) -> TrialReport:
        try:
            # Retried through a database restart: the trained result is the expensive part.
            # If a commit landed but its acknowledgement was lost, the retry finds the trial
            # no longer running and reports "lost"; the outcome is stored once.
            if features is None:
                with_retries(lambda: trials.store(self._engine, claim, outcome, n_train, n_test))
            else:
                with_retries(lambda: trials.store_features(self._engine, claim, outcome, features))
        except trials.LeaseLost as lost:
            beat.stop()
            self._discard(features)
            return _report(claim, Handled.LOST, error=str(lost))
        except Exception as error:  # noqa: BLE001 - e.g. the database stayed down
            self._discard(features)
            return self._record_failure(claim, beat, error)
        beat.stop()
        if checkpointed:
            self._drop_checkpoints(claim)
        return _report(
            claim,
            Handled.SUCCEEDED,
            seconds=outcome.seconds,
            train_accuracy=outcome.train_accuracy,
            test_accuracy=outcome.test_accuracy,
        )

    def _drop_checkpoints(self, claim: Claim) -> None:
        # Best effort: the trial succeeded, so nothing will resume from them; what a
        # failed delete leaves goes with the experiment.
        try:
            checkpoints.delete(
                self._engine,
                claim.experiment_id,
                claim.trial_index,
                folder=self._settings.artifact_folder,
            )
        except DatabaseError as error:
            log.warning("could not delete the checkpoints of trial %s: %s", claim.trial_id, error)

    def _discard(self, features: Staged | None) -> None:
        if features is not None:
            # Best effort: what remains of a discard that fails is swept later.
            try:
                discard(self._engine, features, folder=self._settings.artifact_folder)
            except DatabaseError as error:
                log.warning("could not discard features artifact %s: %s", features.id, error)

    def _record_failure(self, claim: Claim, beat: Heartbeat, error: BaseException) -> TrialReport:
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


def _report(claim: Claim, status: Handled, **fields: object) -> TrialReport:
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
