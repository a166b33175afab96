"""A trial's checkpoints in the store: the latest two, fenced by the claim, read back
checked, and a damaged one skipped for the one before it (SQLite and PostgreSQL)."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
import torch
from sqlalchemy.engine import Engine

from memtail.store import checkpoints, trials
from memtail.store.tables import artifact_chunks, artifacts
from memtail.store.tables import trials as trials_table
from memtail.training.checkpoint import TrainingState, encode
from memtail.work.resume import latest_state
from tests.helpers import make_experiment


def _state(step: int) -> TrainingState:
    return TrainingState(
        epoch=step // 10,
        batch=step % 10,
        step=step,
        model={"w": torch.full((3,), float(step))},
        optimizer={"state": {}, "param_groups": []},
        torch_rng=torch.get_rng_state(),
        numpy_rng={
            "name": "MT19937",
            "keys": torch.zeros(624, dtype=torch.int64),
            "pos": 0,
            "has_gauss": 0,
            "cached": 0.0,
        },  # fmt: skip
        generator=torch.Generator().get_state(),
        seconds=float(step),
    )


def _names(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(artifacts.c.name, artifacts.c.status).order_by(artifacts.c.id)
        )
        return {name: status for name, status in rows}


def _claim(engine: Engine, experiment_id: int) -> trials.Claim:
    claim = trials.claim_next(engine, experiment_id, "w", 60)
    assert claim is not None
    return claim


def test_the_latest_two_are_kept_and_a_zombie_cannot_write(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=1).experiment
    first = _claim(engine, exp.id)
    for step in (3, 7, 12):
        checkpoints.save(engine, first, [encode(_state(step))])
    assert _names(engine) == {"checkpoint-0": "complete", "checkpoint-0-previous": "complete"}
    state, found = latest_state(engine, first, folder=None)
    assert found and state is not None and state.step == 12
    # The lease expires and another worker claims the trial: the first is a zombie now.
    with engine.begin() as conn:
        conn.execute(sa.update(trials_table).values(lease_expires_at=sa.func.current_timestamp()))
    trials.reap(engine, max_attempts=3)
    second = _claim(engine, exp.id)
    assert second.attempt == first.attempt + 1
    checkpoints.save(engine, second, [encode(_state(20))])
    with pytest.raises(trials.LeaseLost, match="checkpoint discarded"):
        checkpoints.save(engine, first, [encode(_state(99))])
    # The zombie's bytes are gone and the new attempt's checkpoint stands.
    assert _names(engine) == {"checkpoint-0-previous": "complete", "checkpoint-0": "complete"}
    assert latest_state(engine, second, folder=None)[0].step == 20  # type: ignore[union-attr]
    checkpoints.delete(engine, exp.id, 0, folder=None)
    assert _names(engine) == {} and latest_state(engine, second, folder=None) == (None, False)


def test_a_damaged_checkpoint_falls_back_to_the_one_before(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=1).experiment
    claim = _claim(engine, exp.id)
    for step in (5, 9):
        checkpoints.save(engine, claim, [encode(_state(step))])

    def damage(name: str) -> None:
        with engine.begin() as conn:
            artifact_id = conn.execute(
                sa.select(artifacts.c.id).where(artifacts.c.name == name)
            ).scalar_one()
            data = conn.execute(
                sa.select(artifact_chunks.c.data).where(
                    artifact_chunks.c.artifact_id == artifact_id
                )
            ).scalar_one()
            flipped = bytes(data[:100]) + bytes([data[100] ^ 1]) + bytes(data[101:])
            conn.execute(
                sa.update(artifact_chunks)
                .where(artifact_chunks.c.artifact_id == artifact_id)
                .values(data=flipped)
            )

    damage("checkpoint-0")
    state, found = latest_state(engine, claim, folder=None)
    assert found and state is not None and state.step == 5  # the one before it
    assert np.array_equal(state.model["w"].numpy(), np.full(3, 5.0, dtype=np.float32))
    damage("checkpoint-0-previous")
    assert latest_state(engine, claim, folder=None) == (None, True)  # epoch 0
