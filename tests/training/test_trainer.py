"""Trainer: determinism, subsets, accuracy on real digits, divergence, schedules, augmentation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from memtail.specification import DatasetSpec, ModelSpec, TrainingSpec
from memtail.training.datasets import Dataset, load_dataset
from memtail.training.device import resolve_device
from memtail.training.recipe import augment, lr_factor
from memtail.training.trainer import Trainer, TrainingError

# One intra-op thread, as workers use: robust when other processes share the cores.
THREADS = 1
FAST = TrainingSpec(epochs=5, batch_size=64, margins=True)


@pytest.fixture(scope="module")
def longtail() -> Dataset:
    return load_dataset(DatasetSpec("synthetic-longtail", {"n_train": 300, "n_test": 100}), ".")


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset(DatasetSpec("digits"), ".")


def half(n: int, seed: int = 0) -> np.ndarray:
    subset = np.zeros(n, dtype=bool)
    subset[np.random.default_rng(seed).permutation(n)[: n // 2]] = True
    return subset


def test_same_seed_same_outcomes(longtail: Dataset) -> None:
    trainer = Trainer(longtail, "cpu", THREADS)
    subset = half(longtail.n_train)
    a = trainer.run(ModelSpec("mlp"), FAST, subset, seed=3)
    b = trainer.run(ModelSpec("mlp"), FAST, subset, seed=3)
    assert np.array_equal(a.train_correct, b.train_correct)
    assert np.array_equal(a.test_correct, b.test_correct)
    assert np.array_equal(a.train_margin, b.train_margin)
    assert a.train_correct.dtype == bool and a.train_correct.shape == (longtail.n_train,)
    assert a.test_margin.dtype == np.float16 and a.test_margin.shape == (longtail.n_test,)
    # The margin is positive exactly where the prediction is right (up to float16 ties).
    clear = np.abs(a.train_margin.astype(np.float32)) > 1e-2
    assert np.array_equal((a.train_margin > 0)[clear], a.train_correct[clear])
    c = trainer.run(ModelSpec("mlp"), FAST, subset, seed=4)
    assert not np.array_equal(a.train_margin, c.train_margin)
    # One predicted class per misclassified train example, never the true label.
    wrong = np.flatnonzero(~a.train_correct)
    assert a.train_wrong_class.shape == wrong.shape
    assert np.array_equal(a.train_wrong_class, b.train_wrong_class)
    assert not np.any(a.train_wrong_class == longtail.y_train.numpy()[wrong])


def test_only_the_subset_is_used(longtail: Dataset) -> None:
    subset = half(longtail.n_train, seed=1)
    # Relabel every excluded example: if training touched them the model would change.
    y = longtail.y_train.clone()
    y[~torch.from_numpy(subset)] = (y[~torch.from_numpy(subset)] + 1) % longtail.num_classes
    relabelled = dataclasses.replace(longtail, y_train=y)
    a = Trainer(longtail, "cpu", THREADS).run(ModelSpec("mlp"), FAST, subset, seed=0)
    b = Trainer(relabelled, "cpu", THREADS).run(ModelSpec("mlp"), FAST, subset, seed=0)
    assert np.array_equal(a.train_margin[subset], b.train_margin[subset])
    assert np.array_equal(a.test_correct, b.test_correct)
    assert a.train_accuracy == b.train_accuracy
    assert not np.array_equal(a.train_correct[~subset], b.train_correct[~subset])


def test_mlp_memorizes_the_long_tail(longtail: Dataset) -> None:
    full = load_dataset(DatasetSpec("synthetic-longtail"), ".")
    trainer = Trainer(full, "cpu", THREADS)
    subset = np.random.default_rng(0).random(full.n_train) < 0.7
    result = trainer.run(ModelSpec("mlp"), TrainingSpec(epochs=30), subset, seed=0)
    print(
        f"synthetic-longtail mlp: {result.seconds:.2f} s/trial, train "
        f"{result.train_accuracy:.3f}, test {result.test_accuracy:.3f}"
    )
    # Fits its training subset, singletons included, but cannot do better than chance on
    # tail clusters it never saw, so test accuracy is decent but far from perfect.
    assert result.train_accuracy >= 0.98
    assert 0.55 <= result.test_accuracy <= 0.9
    singleton = np.array([a["singleton"] for a in full.train_attributes])
    assert result.train_correct[singleton & subset].mean() >= 0.95
    assert result.train_correct[singleton & ~subset].mean() <= 0.4


@pytest.mark.slow
def test_digits_cnn_accuracy(digits: Dataset) -> None:
    trainer = Trainer(digits, "cpu", THREADS)
    training = TrainingSpec(epochs=15, batch_size=64, lr=0.05, flip=False, crop=1)
    result = trainer.run(ModelSpec("cnn", width=16), training, np.ones(digits.n_train, bool), 0)
    print(f"digits cnn: test accuracy {result.test_accuracy:.3f} in {result.seconds:.1f} s")
    assert result.test_accuracy >= 0.9
    assert result.train_margin is None


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle", "step"])
def test_recipes_learn(digits: Dataset, optimizer: str, schedule: str) -> None:
    lr = 0.05 if optimizer == "sgd" else 2e-3
    training = TrainingSpec(
        epochs=4,
        batch_size=32,
        optimizer=optimizer,
        lr=lr,
        schedule=schedule,
        label_smoothing=0.1,
        flip=True,
        crop=1,
    )
    losses: list[float] = []
    result = Trainer(digits, "cpu", THREADS).run(
        ModelSpec("mlp", width=64),
        training,
        half(digits.n_train),
        seed=0,
        on_epoch=lambda epoch, loss: losses.append(loss),
    )
    assert losses[-1] < losses[0]
    assert result.test_accuracy > 0.3  # chance is 0.1


def test_nan_loss_raises(longtail: Dataset) -> None:
    training = TrainingSpec(epochs=3, lr=1e30, schedule="constant")
    with pytest.raises(TrainingError, match="loss became NaN at epoch 1"):
        Trainer(longtail, "cpu", THREADS).run(ModelSpec("mlp"), training, half(300), seed=0)


def test_on_epoch_reports_and_can_abort(longtail: Dataset) -> None:
    seen: list[tuple[int, float]] = []
    trainer = Trainer(longtail, "cpu", THREADS)
    trainer.run(
        ModelSpec("mlp"), FAST, half(300), 0, on_epoch=lambda e, loss: seen.append((e, loss))
    )
    assert [e for e, _ in seen] == [1, 2, 3, 4, 5]
    assert seen[-1][1] < seen[0][1]

    def lost_lease(epoch: int, loss: float) -> None:
        raise KeyboardInterrupt("lease lost")

    with pytest.raises(KeyboardInterrupt, match="lease lost"):
        trainer.run(ModelSpec("mlp"), FAST, half(300), 0, on_epoch=lost_lease)


def test_bad_subsets(longtail: Dataset) -> None:
    trainer = Trainer(longtail, "cpu", THREADS)
    with pytest.raises(ValueError, match="bool array of shape"):
        trainer.run(ModelSpec("mlp"), FAST, np.ones(10, bool), 0)
    with pytest.raises(ValueError, match="bool array"):
        trainer.run(ModelSpec("mlp"), FAST, np.ones(300, int), 0)
    with pytest.raises(ValueError, match="empty"):
        trainer.run(ModelSpec("mlp"), FAST, np.zeros(300, bool), 0)


def test_lr_schedules() -> None:
    total = 100
    onecycle = [lr_factor("onecycle", s, total) for s in range(total)]
    assert onecycle[19] == 1.0 and onecycle[0] == pytest.approx(0.05)
    assert 0 < onecycle[-1] < 0.02 and onecycle.index(max(onecycle)) == 19
    assert all(a >= b for a, b in zip(onecycle[19:], onecycle[20:], strict=False))
    assert lr_factor("cosine", 0, total) == 1.0 and lr_factor("cosine", 50, total) == 0.5
    steps = [lr_factor("step", s, total) for s in (0, 49, 50, 74, 75, 99)]
    assert steps == [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    assert lr_factor("constant", 77, total) == 1.0


def test_augment_translates_and_flips() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    assert torch.equal(augment(x, False, 0, generator), x)
    shifted = augment(x, False, 2, generator)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(2):
        windows = [padded[i, :, r : r + 6, c : c + 6] for r in range(5) for c in range(5)]
        assert any(torch.equal(shifted[i], w) for w in windows)
    flipped = [augment(x, True, 0, generator) for _ in range(8)]
    for i in range(2):
        variants = {torch.equal(f[i], x[i].flip(2)) for f in flipped}
        assert all(torch.equal(f[i], x[i]) or torch.equal(f[i], x[i].flip(2)) for f in flipped)
        assert variants == {True, False}  # both outcomes occur over 8 draws (p = 1 - 2^-7)


def test_resolve_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_trial(digits: Dataset) -> None:
    trainer = Trainer(digits, "cuda")
    training = TrainingSpec(epochs=10, flip=False, crop=1, margins=True)
    result = trainer.run(ModelSpec("cnn"), training, half(digits.n_train), seed=0)
    assert result.test_accuracy >= 0.85 and result.train_margin.dtype == np.float16


@pytest.mark.slow
def test_compiled_training_compiles_each_network_once(digits: Dataset) -> None:
    from torch._dynamo.utils import counters

    with pytest.raises(ValueError, match="compile_mode must be one of none, default"):
        Trainer(digits, "cpu", THREADS, compile_mode="fast")
    training = TrainingSpec(epochs=4, batch_size=64, lr=0.05, flip=False, crop=0)
    spec = ModelSpec("mlp", width=64)
    compiled = Trainer(digits, "cpu", THREADS, compile_mode="default")
    first = compiled.run(spec, training, half(digits.n_train), seed=0)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0  # it did compile
    second = compiled.run(spec, training, half(digits.n_train, seed=1), seed=1)
    # A fresh model of the same network reuses the compiled code: no new graph.
    assert counters["stats"]["unique_graphs"] == graphs
    eager = Trainer(digits, "cpu", THREADS).run(spec, training, half(digits.n_train), seed=0)
    assert min(first.test_accuracy, second.test_accuracy) >= 0.85
    assert abs(first.test_accuracy - eager.test_accuracy) <= 0.03
