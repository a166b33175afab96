"""Where a claimed trial's training starts, and where its checkpoints go.

The runner asks ``checkpointing`` for each trial it trains: the latest checkpoint that
reads back whole (the artifact store checks its sha256; a damaged or unreadable one is
logged and the one before it, or epoch 0, is used) and, should it not fit the network
(``Checkpointing.restore`` judges), the one before it, read only then; the spec's
interval (``training.checkpoint_every``), a save that stores each state fenced by the
claim, and the stop request of ``memtail.work.preemption``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from memtail.records import Claim, Experiment
from memtail.specification import checkpoint_interval
from memtail.store import checkpoints
from memtail.store.engine import Engine, with_retries
from memtail.store.retrieval import ArtifactCorrupt, ArtifactMissing, read_artifact
from memtail.training.snapshot import Checkpointing, TrainingState, decode, encode
from memtail.work import preemption

log = logging.getLogger(__name__)


def latest_state(
    engine: Engine, claim: Claim, *, folder: Path | None
) -> tuple[TrainingState | None, bool]:
    """The newest readable checkpoint of the claimed trial (None: start at epoch 0), and
    whether any checkpoint, readable or not, was there."""
    stored = StoredStates(engine, claim, folder)
    return next(iter(stored), None), stored.found


class StoredStates:
    """The claimed trial's checkpoints that read back whole, newest first, each read only
    when the iteration reaches it; ``found``: whether any was met, readable or not."""

    def __init__(self, engine: Engine, claim: Claim, folder: Path | None) -> None:
        self._engine, self._claim, self._folder = engine, claim, folder
        self.found = False

    def __iter__(self) -> Iterator[TrainingState]:
        claim = self._claim
        for name in checkpoints.names(claim.trial_index):
            try:
                data = with_retries(lambda name=name: b"".join(self._read(name)))
                self.found = True
                yield decode(data)
            except ArtifactMissing:
                continue
            except (ArtifactCorrupt, ValueError) as error:
                self.found = True
                log.warning("trial %s: checkpoint %r ignored: %s", claim.trial_id, name, error)

    def _read(self, name: str) -> Iterator[bytes]:
        return read_artifact(self._engine, self._claim.experiment_id, name, folder=self._folder)


@dataclass
class TrialCheckpoints:
    """A claimed trial's ``keep`` (for the trainer), and whether it has checkpoints in the
    store (found on claim, or saved since): they go once the trial succeeds."""

    keep: Checkpointing
    exist: bool


def checkpointing(
    engine: Engine, experiment: Experiment, claim: Claim, *, folder: Path | None
) -> TrialCheckpoints:
    """How the claimed trial saves, stops and resumes."""
    every_epochs, every_seconds = checkpoint_interval(experiment.spec.training.checkpoint_every)
    stored = StoredStates(engine, claim, folder)
    states = iter(stored)
    # The newest is read now, so that whether the trial has checkpoints is known before
    # it trains; the one before it only if the trainer finds the newest does not fit.
    state = next(states, None)

    def save(state: TrainingState) -> None:
        data = encode(state)
        with_retries(lambda: checkpoints.save(engine, claim, [data], folder=folder))
        result.exist = True

    result = TrialCheckpoints(
        Checkpointing(
            save=save,
            every_epochs=every_epochs,
            every_seconds=every_seconds,
            stop=preemption.requested,
            resume=state,
            earlier=states,
            owner=f"trial {claim.trial_id} (index {claim.trial_index})",
        ),
        stored.found,
    )
    return result
