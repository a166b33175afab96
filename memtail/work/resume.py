"""Where a claimed trial's training starts, and where its checkpoints go.

The runner asks ``checkpointing`` for each trial it trains: the latest checkpoint that
reads back whole (the artifact store checks its sha256; a damaged or unreadable one is
logged and the one before it, or epoch 0, is used), the spec's interval
(``training.checkpoint_every``), a save that stores each state fenced by the claim, and
the stop request of ``memtail.work.preemption``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from memtail.spec import checkpoint_interval
from memtail.store import checkpoints
from memtail.store.artifacts import ArtifactCorrupt, ArtifactMissing, read_artifact
from memtail.store.engine import Engine, with_retries
from memtail.store.experiments import Experiment
from memtail.store.trials import Claim
from memtail.training.checkpoint import Checkpointing, TrainingState, decode, encode
from memtail.work import preemption

log = logging.getLogger(__name__)


def latest_state(
    engine: Engine, claim: Claim, *, folder: Path | None
) -> tuple[TrainingState | None, bool]:
    """The newest readable checkpoint of the claimed trial (None: start at epoch 0), and
    whether any checkpoint, readable or not, was there."""
    found = False
    for name in checkpoints.names(claim.trial_index):
        try:
            data = with_retries(
                lambda name=name: b"".join(
                    read_artifact(engine, claim.experiment_id, name, folder=folder)
                )
            )
            return decode(data), True
        except ArtifactMissing:
            continue
        except (ArtifactCorrupt, ValueError) as error:
            found = True
            log.warning("trial %s: checkpoint %r ignored: %s", claim.trial_id, name, error)
    return None, found


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
    state, found = latest_state(engine, claim, folder=folder)
    if state is not None:
        log.info(
            "trial %s: resuming at epoch %d, step %d (%.1f s of training saved)",
            claim.trial_id,
            state.epoch + 1,
            state.step,
            state.seconds,
        )

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
        ),
        found,
    )
    return result
