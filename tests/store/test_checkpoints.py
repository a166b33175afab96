"""A trial's checkpoints in the store: the latest two, fenced by the claim, read back
checked, and a damaged one, or one that reads back whole but does not fit the trial,
skipped for the one before it (SQLite and PostgreSQL)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import torch
from sqlalchemy.engine import Engine

from memtail.records import Claim, Experiment
from memtail.stats.outcomes import TrialOutcome
from memtail.store import checkpoints, reaper, trials
from memtail.store.tables import artifact_chunks, artifacts, trial_outcomes
from memtail.store.tables import trials as trials_table
from memtail.training.snapshot import Checkpointing, TrainingState, decode, encode
from memtail.work.resume import latest_state
from tests.helpers import make_experiment, trained_experiment


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


def _claim(engine: Engine, experiment_id: int) -> Claim:
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
    reaper.reap(engine, max_lost=3)
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


# A checkpoint that reads back whole but does not fit the trial: planted as the latest,
# over a real state of the same trial as the one before it. Each is named by how it is
# made from a real state (or its stored bytes).
def _wrong_shape(state: TrainingState) -> None:
    name = next(iter(state.model))
    state.model[name] = torch.zeros(state.model[name].shape[0] + 1, *state.model[name].shape[1:])


def _missing_parameter(state: TrainingState) -> None:
    del state.model[next(iter(state.model))]


def _foreign_optimizer(state: TrainingState) -> None:
    (buffers, *_) = state.optimizer["state"].values()
    buffers["momentum_buffer"] = torch.zeros(7, 3)


def _another_batch_size(state: TrainingState) -> None:
    state.step += 1


def _foreign_numpy_stream(state: TrainingState) -> None:
    # Passes every check before loading; numpy refuses it once the model and optimizer
    # are loaded, which are then put back as they were.
    state.numpy_rng["name"] = "PCG64"


def _wrong_types(state: TrainingState) -> None:
    state.epoch = "2"  # type: ignore[assignment]


MISFITS = {
    "wrong types": _wrong_types,
    "wrong shape": _wrong_shape,
    "missing parameter": _missing_parameter,
    "foreign optimizer": _foreign_optimizer,
    "another batch size": _another_batch_size,
    "foreign numpy stream": _foreign_numpy_stream,
}
WHY = {
    "wrong types": "not a training checkpoint: epoch is a str",
    "wrong shape": "is torch.float32 (",
    "missing parameter": "the model's parameters differ (missing",
    "foreign optimizer": "'momentum_buffer' of parameter",
    "another batch size": "does not match",
    "foreign numpy stream": "restoring it failed",
    "text chunk": "is stored as text, not bytes",
}


def _trained_states(
    engine: Engine, tmp_path: Path
) -> tuple[Experiment, Claim, list[TrainingState], TrialOutcome]:
    """A one-trial experiment claimed once, and its trial trained here as a worker trains
    it: the state after each epoch, and the outcome."""
    from memtail.stats import bits
    from memtail.training.datasets import load_dataset
    from memtail.training.trainer import Trainer

    experiment = trained_experiment(engine, tmp_path, "fit", 1)
    claim = _claim(engine, experiment.id)
    data = load_dataset(experiment.spec.dataset, tmp_path)
    states: list[TrainingState] = []
    threads = torch.get_num_threads()
    try:
        outcome = Trainer(data, "cpu", 1).run(
            experiment.spec.model,
            experiment.spec.training,
            bits.unpack(claim.subset, experiment.n_train),
            claim.seed,
            # Through bytes at once, as a worker stores it: a state's tensors are the
            # live model's, which train on.
            checkpointing=Checkpointing(
                save=lambda state: states.append(decode(encode(state))), every_epochs=1
            ),
        )
    finally:
        torch.set_num_threads(threads)
    return experiment, claim, states, outcome


def _as_text(engine: Engine, name: str) -> None:
    """The artifact's chunks rewritten as SQLite TEXT values (their bytes unchanged)."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE artifact_chunks SET data = CAST(data AS TEXT) WHERE artifact_id = "
                "(SELECT id FROM artifacts WHERE name = :name)"
            ),
            {"name": name},
        )
        kinds = conn.execute(sa.text("SELECT DISTINCT typeof(data) FROM artifact_chunks"))
        assert "text" in {kind for (kind,) in kinds}


def _run_trial(
    engine: Engine, tmp_path: Path, claim: Claim, caplog: pytest.LogCaptureFixture
) -> sa.Row:
    """Hand the planting claim back (no failed attempt), let a worker's runner take the
    trial, and read its row."""
    from memtail.config import Settings
    from memtail.work.handled import Handled
    from memtail.work.runner import TrialRunner

    assert trials.hand_back(engine, claim, max_preemptions=5) == "pending"
    settings = Settings(data_root=str(tmp_path))
    threads = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO, logger="memtail"):
            report = TrialRunner(engine, settings, "worker-2").run(claim.trial_id)
    finally:
        torch.set_num_threads(threads)
    assert report.status == Handled.SUCCEEDED, report
    with engine.connect() as conn:
        return conn.execute(
            sa.select(
                trials_table.c.status, trials_table.c.attempts, trials_table.c.error,
                trials_table.c.resumed_seconds, trial_outcomes.c.train_correct,
                trial_outcomes.c.test_correct,
            ).join(trial_outcomes, trial_outcomes.c.trial_id == trials_table.c.id)
        ).one()  # fmt: skip


def _same_outcome(row: sa.Row, outcome: TrialOutcome, experiment: Experiment) -> None:
    from memtail.stats import bits

    assert np.array_equal(bits.unpack(row.train_correct, experiment.n_train),
                          outcome.train_correct)  # fmt: skip
    assert np.array_equal(bits.unpack(row.test_correct, experiment.n_test), outcome.test_correct)


@pytest.mark.parametrize("misfit", [*MISFITS, "text chunk"])
def test_a_checkpoint_that_does_not_fit_falls_back_to_the_one_before(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture, misfit: str
) -> None:
    if misfit == "text chunk" and engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's bytea holds bytes only")
    experiment, claim, states, outcome = _trained_states(engine, tmp_path)
    fallback, latest = states[1], copy.deepcopy(states[2])
    checkpoints.save(engine, claim, [encode(fallback)])
    if misfit in MISFITS:
        MISFITS[misfit](latest)
    checkpoints.save(engine, claim, [encode(latest)])
    if misfit == "text chunk":
        _as_text(engine, "checkpoint-0")
    row = _run_trial(engine, tmp_path, claim, caplog)
    # It trained on from the checkpoint before (its seconds carried in) to the same
    # outcome as without a pause, in the one attempt after the planting claim.
    assert (row.status, row.attempts, row.error) == ("succeeded", 2, None)
    assert row.resumed_seconds == pytest.approx(fallback.seconds)
    _same_outcome(row, outcome, experiment)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"trial {claim.trial_id}" in warning and WHY[misfit] in warning
    assert _names(engine) == {}  # a trial that succeeded keeps no checkpoint


def test_when_no_checkpoint_fits_the_trial_starts_at_epoch_0(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    experiment, claim, states, outcome = _trained_states(engine, tmp_path)
    # The latest fails half way through restoring: epoch 1's bits show that what it had
    # loaded was undone.
    for state, spoil in ((states[1], _missing_parameter), (states[2], _foreign_numpy_stream)):
        spoil(state)
        checkpoints.save(engine, claim, [encode(state)])
    row = _run_trial(engine, tmp_path, claim, caplog)
    assert (row.status, row.attempts, row.error) == ("succeeded", 2, None)
    assert not row.resumed_seconds  # nothing carried in: trained from epoch 1
    _same_outcome(row, outcome, experiment)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all(f"trial {claim.trial_id}" in w for w in warnings)
