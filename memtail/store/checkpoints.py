"""A trial's checkpoints in the artifact store: the latest two, written only by the
trial's current claim.

A checkpoint is the artifact ``checkpoint-<trial index>``; saving a new one renames it to
``checkpoint-<trial index>-previous`` (dropping the one before), so that a latest one
found damaged on resume still leaves an earlier state to continue from. The bytes are
staged first (nothing reads them), then one transaction checks that the saving claim
still holds the trial (status running, the claimed attempt: the fence of every other
write of a trial) and swaps them in; a zombie whose lease expired and whose trial was
claimed again cannot replace the new attempt's checkpoints. Deleted when the trial
succeeds (best effort: ``delete``) and with their experiment.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.records import Claim
from memtail.store import statements
from memtail.store.artifacts import (
    Artifact,
    complete,
    delete_named,
    discard,
    rename,
    stage_artifact,
)
from memtail.store.engine import transaction
from memtail.store.tables import trials
from memtail.store.trials import LeaseLost

__all__ = ["delete", "names", "save"]


def names(trial_index: int) -> tuple[str, str]:
    """(latest, previous): the artifact names of a trial's checkpoints, newest first."""
    latest = f"checkpoint-{trial_index}"
    return latest, f"{latest}-previous"


def save(
    engine: Engine,
    claim: Claim,
    parts: Iterable[bytes],
    *,
    folder: Path | None = None,
) -> Artifact:
    """Store a checkpoint of the claimed trial; LeaseLost (and nothing stored) if the
    claim no longer holds it."""
    latest, previous = names(claim.trial_index)
    staged = stage_artifact(
        engine, claim.experiment_id, latest, parts, folder=folder, writer=claim.worker
    )
    try:
        with transaction(engine) as conn:
            held = conn.execute(
                sa.select(trials.c.id)
                .where(statements.FENCED)
                .with_for_update(),  # a claim of the trial waits for this swap
                {"trial_id": claim.trial_id, "attempt": claim.attempt},
            ).one_or_none()
            if held is None:
                raise LeaseLost(
                    f"trial {claim.trial_id} attempt {claim.attempt} is no longer claimed; "
                    "checkpoint discarded"
                )
            dropped = delete_named(conn, claim.experiment_id, [previous])
            rename(conn, claim.experiment_id, latest, previous)
            artifact = complete(conn, staged)
    except BaseException:
        discard(engine, staged, folder=folder)
        raise
    _unlink(folder, dropped)
    return artifact


def delete(engine: Engine, experiment_id: int, trial_index: int, *, folder: Path | None) -> None:
    """Remove every checkpoint of a trial (it succeeded: nothing will resume it)."""
    with transaction(engine) as conn:
        dropped = delete_named(conn, experiment_id, names(trial_index))
    _unlink(folder, dropped)


def _unlink(folder: Path | None, files: list[str]) -> None:
    for location in files:
        if folder is not None:
            (folder / location).unlink(missing_ok=True)
