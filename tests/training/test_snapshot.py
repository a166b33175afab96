"""Checkpoints: a trial stopped at any step and resumed from its saved state (through bytes,
in a fresh Trainer) gives the uninterrupted trial's outcomes bit for bit, with
augmentation, for each network of its own."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from memtail.specification import ModelSpec, TrainingSpec
from memtail.training.datasets import Dataset
from memtail.training.snapshot import Checkpointing, Preempted, TrainingState, decode, encode
from memtail.training.trainer import Trainer

# Dropout-free networks still draw initialization, order and augmentation from the streams;
# momentum and a schedule make the optimizer's state and the step matter.
RECIPE = TrainingSpec(
    epochs=3, batch_size=32, lr=0.05, flip=True, crop=2, schedule="onecycle", margins=True
)
MODELS = [ModelSpec("mlp", width=32), ModelSpec("cnn", width=8), ModelSpec("fastnet", width=8)]


@pytest.fixture(scope="module")
def images() -> Dataset:
    """160 + 40 random 3 x 16 x 16 images of 4 classes, each class a brighter channel."""
    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = rng.integers(0, 4, n)
        x = rng.normal(size=(n, 3, 16, 16)).astype(np.float32)
        x[np.arange(n), y % 3] += 0.5 + 0.5 * (y // 3)[:, None, None]
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    (x_train, y_train), (x_test, y_test) = split(160), split(40)
    return Dataset("images", x_train, y_train, x_test, y_test, num_classes=4)


def keeping(out: list, convert: Callable) -> Callable[[TrainingState], None]:
    """A ``save`` that appends ``convert(state)`` to ``out``."""
    return lambda state: out.append(convert(state))


def _same(a, b) -> None:  # noqa: ANN001 - two TrialOutcomes
    for name in ("train_correct", "test_correct", "train_margin", "test_margin"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(a.train_wrong_class, b.train_wrong_class)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_stopped_at_any_step_and_resumed_gives_the_same_bits(
    images: Dataset, model: ModelSpec
) -> None:
    subset = np.random.default_rng(1).random(images.n_train) < 0.7
    steps_per_epoch = -(-int(subset.sum()) // RECIPE.batch_size)
    reference = Trainer(images, "cpu", 1).run(model, RECIPE, subset, seed=5)
    # Mid-epoch (steps 2 and 7) and at an epoch boundary (a stop before the next epoch's
    # first step).
    for stop_at in (2, steps_per_epoch + 3, 2 * steps_per_epoch):
        saved: list[bytes] = []
        steps = iter(range(10**6))
        with pytest.raises(Preempted) as stopped:
            Trainer(images, "cpu", 1).run(
                model,
                RECIPE,
                subset,
                seed=5,
                checkpointing=Checkpointing(
                    save=keeping(saved, encode),
                    stop=lambda: next(steps) == stop_at,  # noqa: B023
                ),
            )
        assert stopped.value.state.step == stop_at and len(saved) == 1
        state = decode(saved[0])
        assert (state.epoch, state.batch) == divmod(stop_at, steps_per_epoch)
        resumed = Trainer(images, "cpu", 1).run(
            model, RECIPE, subset, seed=5, checkpointing=Checkpointing(save=print, resume=state)
        )
        _same(resumed, reference)
        assert resumed.resumed_seconds == pytest.approx(state.seconds) and state.seconds > 0


def test_periodic_checkpoints_resume_to_the_same_bits(images: Dataset) -> None:
    subset = np.random.default_rng(2).random(images.n_train) < 0.7
    model = ModelSpec("cnn", width=8)
    states: list[TrainingState] = []
    reference = Trainer(images, "cpu", 1).run(
        model,
        RECIPE,
        subset,
        seed=9,
        checkpointing=Checkpointing(
            save=lambda s: states.append(decode(encode(s))), every_epochs=1
        ),
    )
    # After epochs 1 and 2 (none after the last: the trial is about to be stored).
    assert [s.epoch for s in states] == [1, 2] and all(s.order is None for s in states)
    for state in states:
        _same(
            Trainer(images, "cpu", 1).run(
                model, RECIPE, subset, seed=9, checkpointing=Checkpointing(save=print, resume=state)
            ),
            reference,
        )
    # Checkpointing itself changes nothing.
    _same(Trainer(images, "cpu", 1).run(model, RECIPE, subset, seed=9), reference)


def test_bytes_that_are_not_a_checkpoint_are_refused() -> None:
    for data in (b"", b"garbage", encode.__doc__.encode() if encode.__doc__ else b"x"):
        with pytest.raises(ValueError, match="not a training checkpoint"):
            decode(data)
    # A pickle that would run code is refused by torch.load(weights_only=True).
    import pickle

    with pytest.raises(ValueError, match="not a training checkpoint"):
        decode(pickle.dumps(print, protocol=2))


def test_a_state_from_another_device_type_starts_over(images: Dataset) -> None:
    subset = np.random.default_rng(4).random(images.n_train) < 0.7
    model = ModelSpec("mlp", width=32)
    reference = Trainer(images, "cpu", 1).run(model, RECIPE, subset, seed=2)
    states: list[TrainingState] = []
    Trainer(images, "cpu", 1).run(
        model,
        RECIPE,
        subset,
        seed=2,
        checkpointing=Checkpointing(save=states.append, every_epochs=1),
    )
    foreign = states[0]
    foreign.device = "cuda"  # its generator state would not fit a CPU generator
    resumed = Trainer(images, "cpu", 1).run(
        model, RECIPE, subset, seed=2, checkpointing=Checkpointing(save=print, resume=foreign)
    )
    _same(resumed, reference)
    assert resumed.resumed_seconds == 0.0
