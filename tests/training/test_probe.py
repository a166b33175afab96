"""The linear probe trains on features, grades every example, and is seeded; the
trainer's features are the ones its model's last layer sees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memtail.specification import DatasetSpec, ModelSpec, ProbeSpec, TrainingSpec
from memtail.training.datasets import load_dataset
from memtail.training.probe import LinearProbe
from memtail.training.split import split
from memtail.training.trainer import Trainer


def _blobs(n: int, seed: int) -> tuple[np.ndarray, torch.Tensor]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 4.0, 0]])
    x = centers[y] + rng.normal(size=(n, 4))
    return x.astype(np.float16), torch.from_numpy(y)


def _probe() -> LinearProbe:
    x_train, y_train = _blobs(200, 0)
    x_test, y_test = _blobs(100, 1)
    return LinearProbe(x_train, y_train, x_test, y_test, num_classes=3, device="cpu")


def test_the_probe_learns_separable_features_and_grades_every_example() -> None:
    probe = _probe()
    subset = np.zeros(200, dtype=bool)
    subset[:140] = True
    outcome = probe.run(ProbeSpec(epochs=50, batch_size=32), subset, seed=5, margins=True)
    assert outcome.train_correct.shape == (200,) and outcome.test_correct.shape == (100,)
    assert outcome.test_accuracy > 0.9 and outcome.train_accuracy > 0.9
    assert outcome.train_margin is not None and outcome.train_margin.dtype == np.float16
    assert np.array_equal(outcome.train_margin > 0, outcome.train_correct)
    # Seeded: the same trial gives the same outcome; another seed a different model.
    again = probe.run(ProbeSpec(epochs=50, batch_size=32), subset, seed=5, margins=True)
    assert np.array_equal(again.train_margin, outcome.train_margin)
    other = probe.run(ProbeSpec(epochs=50, batch_size=32), subset, seed=6, margins=True)
    assert not np.array_equal(other.train_margin, outcome.train_margin)


def test_the_probe_refuses_empty_subsets_and_features_that_are_not_finite() -> None:
    probe = _probe()
    with pytest.raises(ValueError, match="subset is empty"):
        probe.run(ProbeSpec(), np.zeros(200, dtype=bool), seed=0)
    x, y = _blobs(10, 2)
    x[3, 1] = np.inf  # what a feature beyond float16's range becomes
    with pytest.raises(ValueError, match="not finite"):
        LinearProbe(x, y, x, y, num_classes=3, device="cpu")


def test_trainer_features_are_what_the_last_layer_sees(tmp_path: object) -> None:
    data = load_dataset(DatasetSpec("synthetic-longtail", {"n_train": 60, "n_test": 20}), tmp_path)
    trainer = Trainer(data, device="cpu")
    model, outcome = trainer.fit(
        ModelSpec(name="mlp", width=16),
        TrainingSpec(epochs=2, batch_size=16, lr=0.05),
        np.ones(60, dtype=bool),
        seed=1,
    )
    blocks = list(trainer.features(model))
    features = np.concatenate(blocks)
    assert features.dtype == np.float16 and features.shape == (80, 16)
    head = split(model).head
    with torch.no_grad():
        logits = head(torch.from_numpy(features[:60].astype(np.float32)))
    # float16 features: the head on them ranks classes as the model did.
    agree = (logits.argmax(1).numpy() == trainer.y_train.numpy()) == outcome.train_correct
    assert agree.mean() > 0.95
