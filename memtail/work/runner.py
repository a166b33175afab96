"""Run claimed trials inside one worker process: claim, train with heartbeats, store.

Shared by the Celery task (``services/celery_app.py``) and the embedded local runner, so
both paths claim, train, fence and store with the same code; the training itself, with
each experiment's dataset resident on the device, is ``memtail.work.fitter``'s. Within a
chain (:meth:`TrialRunner.run_chain`) stores run on a writer thread, overlapping the
next trial's training. An experiment whose spec sets ``training.trials_per_batch`` is
claimed, trained and stored a batch at a time instead (:meth:`TrialRunner.run_batch`):
each trial still its own claim, fenced and reported on its own.
"""

from __future__ import annotations

import logging
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor

from memtail.config import Settings
from memtail.records import Claim
from memtail.stats.outcomes import TrialOutcome
from memtail.status import TrialStatus
from memtail.store import checkpoints, outcomes, trials
from memtail.store.artifacts import Staged, discard
from memtail.store.engine import DatabaseError, Engine, with_retries
from memtail.work import preemption
from memtail.work.fitter import TrialFitter
from memtail.work.handled import Handled, TrialReport
from memtail.work.heartbeat import BatchHeartbeat, Heartbeat

log = logging.getLogger(__name__)


class TrialRunner:
    """One per worker process; its fitter keeps each experiment's dataset on the device."""

    def __init__(self, engine: Engine, settings: Settings, worker: str) -> None:
        self._engine = engine
        self._settings = settings
        self._worker = worker
        self._fitter = TrialFitter(engine, settings, worker)
        self._executor: ThreadPoolExecutor | None = None

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

    def run_next(self, experiment_id: int) -> list[TrialReport]:
        """Claim and run the experiment's next trials: as many as its spec trains in one
        batch (``training.trials_per_batch``), or one. Empty if none was claimable."""
        limit = self._fitter.batch_limit(experiment_id)
        lease = self._settings.lease_seconds
        if limit == 1:
            claim = with_retries(
                lambda: trials.claim_next(self._engine, experiment_id, self._worker, lease)
            )
            return [] if claim is None else [self.run_claimed(claim)]
        claims = with_retries(
            lambda: trials.claim_batch(self._engine, experiment_id, self._worker, lease, limit)
        )
        return self.run_batch(claims) if claims else []

    def run_batch(self, claims: list[Claim]) -> list[TrialReport]:
        """Train claims of one experiment as one batch, then store them in one
        transaction, each fenced by its own claim. Each ends on its own: a lost lease,
        a diverging loss or a stop request touches only its trial; an error of the batch
        as a whole (the device out of memory, say) is each trial's failed attempt."""
        beat = BatchHeartbeat(self._engine, claims, self._settings).start()
        try:
            with preemption.trial():
                results = self._fitter.fit_batch(claims, beat)
            experiment = self._fitter.trainer(claims[0].experiment_id)[0]
        except Exception as error:  # noqa: BLE001 - the whole batch's attempt failed
            _release_device_memory()
            beat.stop()
            return [self._record_failure(claim, None, error) for claim in claims]
        from memtail.training.batch import BatchStopped

        reports: dict[int, TrialReport] = {}
        done: list[tuple[Claim, TrialOutcome]] = []
        for claim, result in zip(claims, results, strict=True):
            if isinstance(result, TrialOutcome):
                done.append((claim, result))
            elif isinstance(result, trials.LeaseLost):
                reports[claim.trial_id] = _report(claim, Handled.LOST, error=str(result))
            elif isinstance(result, BatchStopped):
                reports[claim.trial_id] = self._hand_back(claim, None, str(result))
            else:
                reports[claim.trial_id] = self._record_failure(claim, None, result)
        if done:
            reports.update(self._store_batch(done, experiment.n_train, experiment.n_test))
        beat.stop()
        return [reports[claim.trial_id] for claim in claims]

    def _store_batch(
        self, done: list[tuple[Claim, TrialOutcome]], n_train: int, n_test: int
    ) -> dict[int, TrialReport]:
        try:
            stale = with_retries(lambda: outcomes.store_many(self._engine, done, n_train, n_test))
        except Exception as error:  # noqa: BLE001 - e.g. the database stayed down
            return {c.trial_id: self._record_failure(c, None, error) for c, _ in done}
        lost = {c.trial_id for c in stale}
        reports = {}
        for claim, outcome in done:
            if claim.trial_id in lost:
                reports[claim.trial_id] = _report(
                    claim, Handled.LOST, error="no longer claimed; result discarded"
                )
            else:
                reports[claim.trial_id] = _report(
                    claim,
                    Handled.SUCCEEDED,
                    seconds=outcome.seconds,
                    train_accuracy=outcome.train_accuracy,
                    test_accuracy=outcome.test_accuracy,
                    batch_size=len(done),
                )
        return reports

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
        limit = self._fitter.batch_limit(experiment_id)
        if limit > 1:
            return self._batch_chain(claim, limit, start, budget_seconds)
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

    def _batch_chain(
        self, claim: Claim, limit: int, start: float, budget_seconds: float
    ) -> list[TrialReport]:
        """``run_chain`` for an experiment that trains in batches: the message's trial
        and up to ``limit - 1`` undispatched ones as the first batch, then whole batches
        of undispatched trials while the budget lasts (a budget of 0: the message's
        trial alone, as without batches)."""
        lease = self._settings.lease_seconds

        def more(n: int) -> list[Claim]:
            return with_retries(
                lambda: trials.claim_batch(
                    self._engine,
                    claim.experiment_id,
                    self._worker,
                    lease,
                    n,
                    undispatched_only=True,
                )
            )

        batch = [claim, *more(limit - 1)] if budget_seconds > 0 else [claim]
        reports: list[TrialReport] = []
        while batch:
            done = self.run_batch(batch)
            reports += done
            if any(r.status != Handled.SUCCEEDED for r in done):
                break  # as a chain of single trials: a broken worker stops early
            if time.monotonic() - start >= budget_seconds:
                break
            batch = more(limit)
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
        self._fitter.checkpoints = None
        try:
            with preemption.trial():
                outcome, features = self._fitter.fit(claim, beat)
            experiment = self._fitter.trainer(claim.experiment_id)[0]
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
            self._fitter.checkpoints is not None and self._fitter.checkpoints.exist,
        )
        return store, True

    def _hand_back(self, claim: Claim, beat: Heartbeat | None, why: str) -> TrialReport:
        """The worker was told to stop: its trial's state is saved; back to pending."""
        if beat is not None:
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
                with_retries(lambda: outcomes.store(self._engine, claim, outcome, n_train, n_test))
            else:
                with_retries(
                    lambda: outcomes.store_features(self._engine, claim, outcome, features)
                )
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

    def _record_failure(
        self, claim: Claim, beat: Heartbeat | None, error: BaseException
    ) -> TrialReport:
        if beat is not None:
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
