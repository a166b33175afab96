"""A batch of trials trains each trial as it trains alone: same parameters, same outcomes,
to floating-point summation order; and one member's end leaves the others going."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memtail.specification import DatasetSpec, ModelSpec, TrainingSpec
from memtail.stats.outcomes import TrialOutcome
from memtail.training.batch import BatchMember, BatchStopped, can_batch, train_batch
from memtail.training.datasets import Dataset, load_dataset
from memtail.training.trainer import Trainer, TrainingError

MLP = ModelSpec("mlp", width=64)
RECIPE = TrainingSpec(epochs=4, batch_size=64, margins=True)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset(DatasetSpec("digits"), ".")


def subset(n: int, m: int, seed: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[:m]] = True
    return mask


def alone(trainer: Trainer, model: ModelSpec, training: TrainingSpec, member: BatchMember):
    return trainer.fit(model, training, member.subset, member.seed)


def assert_same_trial(batched: TrialOutcome, model: torch.nn.Module, single: TrialOutcome) -> None:
    # Margins: float16, and summation order differs; the correctness bits follow them,
    # so an example within rounding of the decision boundary may flip.
    # float16 keeps 11 bits: relative to the margin's size, plus a small absolute part.
    theirs = single.train_margin.astype(float)
    margins = np.abs(batched.train_margin.astype(float) - theirs) / (0.5 + np.abs(theirs))
    assert np.quantile(margins, 0.99) < 0.02, margins.max()  # measured: up to 0.011
    assert np.mean(batched.train_correct != single.train_correct) < 0.01
    assert np.mean(batched.test_correct != single.test_correct) < 0.01
    assert abs(batched.train_accuracy - single.train_accuracy) < 0.01


@pytest.mark.parametrize("optimizer", ["sgd", "adamw", "adam"])
def test_each_member_trains_as_it_would_alone(digits: Dataset, optimizer: str) -> None:
    training = (
        RECIPE
        if optimizer == "sgd"
        else TrainingSpec(
            epochs=4, batch_size=64, optimizer=optimizer, lr=3e-3, weight_decay=1e-2, margins=True
        )
    )
    trainer = Trainer(digits, device="cpu", threads=1)
    n = digits.n_train
    members = [BatchMember(subset(n, int(0.7 * n), seed), seed) for seed in (3, 11, 29, 40)]
    results = train_batch(trainer, MLP, training, members)
    for member, result in zip(members, results, strict=True):
        assert isinstance(result, TrialOutcome)
        model, single = alone(trainer, MLP, training, member)
        assert_same_trial(result, model, single)
    # Seeds differ, so the models do: a batch is not one model copied.
    assert (results[0].train_margin != results[1].train_margin).mean() > 0.5


def test_parameters_equal_those_trained_alone(digits: Dataset) -> None:
    from memtail.training import batch

    trainer = Trainer(digits, device="cpu", threads=1)
    n = digits.n_train
    members = [BatchMember(subset(n, 900, seed), seed) for seed in (5, 6)]
    captured = {}
    original = batch._grade

    def capture(trainer, stacked, *args):
        captured["models"] = stacked.modules()
        return original(trainer, stacked, *args)

    batch._grade = capture
    try:
        train_batch(trainer, MLP, RECIPE, members)
    finally:
        batch._grade = original
    for member, stacked_model in zip(members, captured["models"], strict=True):
        model, _ = alone(trainer, MLP, RECIPE, member)
        for mine, theirs in zip(stacked_model.parameters(), model.parameters(), strict=True):
            assert torch.allclose(mine, theirs, atol=5e-4, rtol=0), (mine - theirs).abs().max()


def test_mixed_subset_sizes_share_a_batch(digits: Dataset) -> None:
    """Removal arms: subsets of different sizes, so different step counts and schedules."""
    trainer = Trainer(digits, device="cpu", threads=1)
    n = digits.n_train
    members = [
        BatchMember(subset(n, 1000, 1), 1),
        BatchMember(subset(n, 600, 2), 2),
        BatchMember(subset(n, 63, 3), 3),
    ]
    results = train_batch(trainer, MLP, RECIPE, members)
    for member, result in zip(members, results, strict=True):
        model, single = alone(trainer, MLP, RECIPE, member)
        assert_same_trial(result, model, single)


def test_augmentation_draws_are_each_members_own(digits: Dataset) -> None:
    training = TrainingSpec(epochs=3, batch_size=64, flip=True, crop=1, margins=True)
    trainer = Trainer(digits, device="cpu", threads=1)
    n = digits.n_train
    members = [BatchMember(subset(n, 800, seed), seed) for seed in (7, 8)]
    for member, result in zip(members, train_batch(trainer, MLP, training, members), strict=True):
        model, single = alone(trainer, MLP, training, member)
        assert_same_trial(result, model, single)


def test_one_member_ending_leaves_the_others(digits: Dataset) -> None:
    trainer = Trainer(digits, device="cpu", threads=1)
    n = digits.n_train
    members = [BatchMember(subset(n, 900, seed), seed) for seed in (1, 2, 3)]
    epochs: dict[int, list[int]] = {0: [], 1: [], 2: []}

    def on_epoch(member: int, epoch: int, loss: float) -> None:
        epochs[member].append(epoch)
        if member == 1 and epoch == 2:
            raise RuntimeError("lease lost")

    results = train_batch(trainer, MLP, RECIPE, members, on_epoch=on_epoch)
    assert isinstance(results[1], RuntimeError) and "lease lost" in str(results[1])
    assert epochs == {0: [1, 2, 3, 4], 1: [1, 2], 2: [1, 2, 3, 4]}
    for b in (0, 2):
        _, single = alone(trainer, MLP, RECIPE, members[b])
        assert_same_trial(results[b], None, single)


def test_a_diverging_member_fails_alone(digits: Dataset) -> None:
    trainer = Trainer(digits, device="cpu", threads=1)
    n = digits.n_train
    members = [BatchMember(subset(n, 900, seed), seed) for seed in (1, 2)]
    poisoned = trainer.x_train.clone()
    rows = np.flatnonzero(members[1].subset & ~members[0].subset)
    poisoned[torch.from_numpy(rows)] = float("nan")
    original, trainer.x_train = trainer.x_train, poisoned
    try:
        results = train_batch(trainer, MLP, RECIPE, members)
    finally:
        trainer.x_train = original
    assert isinstance(results[1], TrainingError)
    assert isinstance(results[0], TrialOutcome)
    assert results[0].train_accuracy > 0.9


def test_stop_ends_every_member_still_training(digits: Dataset) -> None:
    trainer = Trainer(digits, device="cpu", threads=1)
    n = digits.n_train
    members = [BatchMember(subset(n, 900, seed), seed) for seed in (1, 2)]
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 5

    results = train_batch(trainer, MLP, RECIPE, members, stop=stop)
    assert all(isinstance(r, BatchStopped) for r in results)


def test_only_stackable_networks_batch() -> None:
    assert can_batch(ModelSpec("mlp"))
    assert not can_batch(ModelSpec("resnet18"))
