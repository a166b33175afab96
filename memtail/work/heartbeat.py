"""A claim's lease, kept alive from a background thread while its trial trains."""

from __future__ import annotations

import logging
import threading
from typing import Self

from memtail.config import Settings
from memtail.records import Claim
from memtail.store import trials
from memtail.store.engine import DatabaseError, Engine

log = logging.getLogger(__name__)


class _Beating:
    """A daemon thread that runs ``_loop`` until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _loop(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Heartbeat(_Beating):
    """Extends a claim's lease from a background thread while the trial trains.

    A thread, not the epoch callback, so that a single long epoch cannot let the lease
    lapse. The training loop calls :meth:`check` between epochs: once the lease is lost
    (reaped and re-claimed elsewhere) training stops instead of wasting the device.
    """

    def __init__(self, engine: Engine, claim: Claim, settings: Settings) -> None:
        super().__init__("memtail-heartbeat")
        self._engine = engine
        self._claim = claim
        self._settings = settings
        self._lost: trials.LeaseLost | None = None

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


class BatchHeartbeat(_Beating):
    """The leases of a batch's claims, all extended by one statement from one thread.

    :meth:`check` (the batch's epoch callback) raises LeaseLost for a member whose claim
    is no longer current, which ends that member alone; the others keep their leases.
    """

    def __init__(self, engine: Engine, claims: list[Claim], settings: Settings) -> None:
        super().__init__("memtail-batch-heartbeat")
        self._engine = engine
        self._claims = claims
        self._settings = settings
        self._lost: set[int] = set()

    def _loop(self) -> None:
        while not self._stop.wait(self._settings.heartbeat_seconds):
            live = [c for c in self._claims if c.trial_id not in self._lost]
            try:
                lost = trials.heartbeat_many(self._engine, live, self._settings.lease_seconds)
            except DatabaseError as error:
                log.warning("heartbeat for a batch of %d trials failed: %s", len(live), error)
                continue
            self._lost.update(c.trial_id for c in lost)

    def check(self, member: int, epoch: int = 0, loss: float = 0.0) -> None:
        """Raise LeaseLost if another worker now owns member ``member``'s trial."""
        claim = self._claims[member]
        if claim.trial_id in self._lost:
            raise trials.LeaseLost(f"trial {claim.trial_id} attempt {claim.attempt} lost its lease")
