"""A claim's lease, kept alive from a background thread while its trial trains."""

from __future__ import annotations

import logging
import threading

from memtail.config import Settings
from memtail.records import Claim
from memtail.store import trials
from memtail.store.engine import DatabaseError, Engine

log = logging.getLogger(__name__)


class Heartbeat:
    """Extends a claim's lease from a background thread while the trial trains.

    A thread, not the epoch callback, so that a single long epoch cannot let the lease
    lapse. The training loop calls :meth:`check` between epochs: once the lease is lost
    (reaped and re-claimed elsewhere) training stops instead of wasting the device.
    """

    def __init__(self, engine: Engine, claim: Claim, settings: Settings) -> None:
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
