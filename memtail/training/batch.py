"""A batch of trials trained as one computation: B subset models side by side on one device.

Each trial keeps everything it has alone (``Trainer.run``): its model is built after
``torch.manual_seed(seed)``, its epoch orders and augmentation draws come from its own
generator seeded with its seed, in the same order, and its learning rate follows its own
schedule over its own number of steps. Subsets of different sizes share a batch: each
step pads the models' minibatches to the longest and masks the padded rows out of the
loss, and a model that has taken all its steps gets learning rate 0 until the others
finish. So a trial's result does not depend on the batch it trained in, beyond
floating-point summation order (``tests/training/test_batch.py`` measures how far).

A trial also ends alone: a loss that turns NaN, or an exception from its ``on_epoch``
(a lost lease), ends that trial with the error as its result, and the rest train on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from memtail.specification import ModelSpec, TrainingSpec
from memtail.stats.outcomes import TrialOutcome
from memtail.training.device import EVAL_BATCH, autocast
from memtail.training.networks import build_model
from memtail.training.recipe import augment, lr_factor, margin_of
from memtail.training.stacked import StackedMLP, stackable
from memtail.training.trainer import Trainer, TrainingError
from memtail.training.updates import StackedOptimizer

__all__ = ["BatchMember", "BatchStopped", "can_batch", "train_batch"]

#: A member's result: its outcome, or the exception that ended it.
Result = TrialOutcome | BaseException


class BatchStopped(RuntimeError):
    """The batch was told to stop (``stop()`` returned true) before this trial finished."""


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class BatchMember:
    """One trial of a batch: its training subset (a bool mask over the train set) and seed."""

    subset: np.ndarray
    seed: int


def can_batch(model_spec: ModelSpec) -> bool:
    """Whether trials of this network can train as one stacked computation."""
    return model_spec.name == "mlp"


class _Schedule:
    """One member's walk through its epochs: which rows each of its steps trains on."""

    def __init__(self, index: torch.Tensor, training: TrainingSpec, generator: torch.Generator):
        self.index = index
        self.n = len(index)
        self.steps_per_epoch = -(-self.n // training.batch_size)
        self.total = training.epochs * self.steps_per_epoch
        self.rows = -(-self.n // self.steps_per_epoch)  # the longest of its minibatches
        self.generator = generator
        self.batches: tuple[torch.Tensor, ...] = ()
        self.loss_sum = torch.zeros((), device=index.device)

    def rows_at(self, step: int) -> torch.Tensor:
        """The example indices of this member's ``step``-th step (drawing its epoch order
        from its generator at each epoch's first step, as a trial alone does)."""
        batch = step % self.steps_per_epoch
        if batch == 0:
            order = torch.randperm(self.n, generator=self.generator, device=self.index.device)
            self.batches = torch.tensor_split(self.index[order], self.steps_per_epoch)
        return self.batches[batch]


def train_batch(
    trainer: Trainer,
    model_spec: ModelSpec,
    training: TrainingSpec,
    members: Sequence[BatchMember],
    *,
    on_epoch: Callable[[int, int, float], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[Result]:
    """Train every member together and grade each; one result per member, in order.

    ``on_epoch(member, epoch, mean_loss)`` runs after each of a member's epochs; what it
    raises ends that member. ``stop()`` is asked at each step: once it is true, every
    member still training ends with ``BatchStopped``.
    """
    if not can_batch(model_spec):
        raise ValueError(f"model {model_spec.name!r} cannot train in batches; use mlp")
    start = time.perf_counter()
    device = trainer.device
    results: list[Result | None] = [None] * len(members)
    schedules: list[_Schedule] = []
    models = []
    for member in members:
        subset = np.asarray(member.subset)
        if subset.dtype != bool or subset.shape != (trainer.dataset.n_train,):
            raise ValueError(
                f"subset must be a bool array of shape ({trainer.dataset.n_train},), got "
                f"{subset.dtype} {subset.shape}"
            )
        index = torch.from_numpy(np.flatnonzero(subset)).to(device)
        if len(index) == 0:
            raise ValueError("subset is empty; a trial needs at least one training example")
        # Seeded exactly as Trainer.fit seeds a trial alone, in the same order.
        torch.manual_seed(member.seed)
        np.random.seed(member.seed % 2**32)
        generator = torch.Generator(device=device)
        generator.manual_seed(member.seed)
        model = build_model(model_spec, trainer.dataset.input_shape, trainer.dataset.num_classes)
        if not stackable(model):
            raise ValueError(f"model {model_spec.name!r} as built cannot be stacked")
        models.append(model)
        schedules.append(_Schedule(index, training, generator))
    stacked = StackedMLP(models, device)
    optimizer = StackedOptimizer(stacked.parameters(), training)
    _train(trainer, stacked, optimizer, training, schedules, results, on_epoch, stop)
    seconds = (time.perf_counter() - start) / len(members)
    return _grade(trainer, stacked, training, members, results, seconds)


def _train(
    trainer: Trainer,
    stacked: StackedMLP,
    optimizer: StackedOptimizer,
    training: TrainingSpec,
    schedules: list[_Schedule],
    results: list[Result | None],
    on_epoch: Callable[[int, int, float], None] | None,
    stop: Callable[[], bool] | None,
) -> None:
    device = trainer.device
    size = len(schedules)
    rows = max(s.rows for s in schedules)
    images = trainer.x_train.ndim == 4 and (training.flip or training.crop > 0)
    for step in range(max(s.total for s in schedules)):
        if stop is not None and stop():
            for b in range(size):
                if results[b] is None:
                    results[b] = BatchStopped("the worker was told to stop")
            return
        training_now = [results[b] is None and step < schedules[b].total for b in range(size)]
        if not any(training_now):
            return
        index = torch.zeros((size, rows), dtype=torch.long, device=device)
        mask = torch.zeros((size, rows), dtype=torch.bool, device=device)
        lr = torch.zeros(size, device=device)
        parts: list[torch.Tensor | None] = [None] * size
        for b, schedule in enumerate(schedules):
            if not training_now[b]:
                continue
            picked = schedule.rows_at(step)
            index[b, : len(picked)] = picked
            mask[b, : len(picked)] = True
            lr[b] = training.lr * lr_factor(training.schedule, step, schedule.total)
            if images:
                parts[b] = augment(
                    trainer.x_train[picked], training.flip, training.crop, schedule.generator
                )
        x = trainer.x_train[index]
        if images:
            for b, part in enumerate(parts):
                if part is not None:
                    x[b, : len(part)] = part
        y = trainer.y_train[index]
        with autocast(device):
            logits = stacked(x)
        losses = F.cross_entropy(
            logits.float().flatten(0, 1),
            y.flatten(),
            reduction="none",
            label_smoothing=training.label_smoothing,
        ).view(size, rows)
        counts = mask.sum(dim=1)
        per_model = torch.where(mask, losses, 0.0).sum(dim=1) / counts.clamp(min=1)
        # A model that diverged (or has ended) adds nothing: torch.where, not a product,
        # so its NaN cannot reach the others' gradients.
        live = counts > 0
        optimizer.zero_grad()
        torch.where(live, per_model, 0.0).sum().backward()
        optimizer.step(lr)
        detached = per_model.detach()
        for b, schedule in enumerate(schedules):
            if not training_now[b]:
                continue
            schedule.loss_sum += detached[b]
            if (step + 1) % schedule.steps_per_epoch == 0:
                _end_epoch(
                    b, (step + 1) // schedule.steps_per_epoch, schedule, training, results, on_epoch
                )


def _end_epoch(
    member: int,
    epoch: int,
    schedule: _Schedule,
    training: TrainingSpec,
    results: list[Result | None],
    on_epoch: Callable[[int, int, float], None] | None,
) -> None:
    mean_loss = float(schedule.loss_sum) / schedule.steps_per_epoch
    schedule.loss_sum = torch.zeros((), device=schedule.loss_sum.device)
    if not math.isfinite(mean_loss):
        results[member] = TrainingError(
            f"loss became NaN at epoch {epoch}; lower training.lr (now {training.lr})"
        )
        return
    if on_epoch is not None:
        try:
            on_epoch(member, epoch, mean_loss)
        except Exception as error:  # noqa: BLE001 - it ends this member alone
            results[member] = error


@torch.no_grad()
def _grade(
    trainer: Trainer,
    stacked: StackedMLP,
    training: TrainingSpec,
    members: Sequence[BatchMember],
    results: list[Result | None],
    seconds: float,
) -> list[Result]:
    """Each model's outcomes on every train and test example (the rows are shared)."""
    graded = {}
    for part, x, y in (
        ("train", trainer.x_train, trainer.y_train),
        ("test", trainer.x_test, trainer.y_test),
    ):
        graded[part] = _grade_rows(trainer, stacked, x, y)
    final: list[Result] = []
    for b, member in enumerate(members):
        if results[b] is not None:
            final.append(results[b])  # type: ignore[arg-type]
            continue
        train_correct, train_margin, predicted = (a[b] for a in graded["train"])
        test_correct, test_margin, _ = (a[b] for a in graded["test"])
        final.append(
            TrialOutcome(
                train_correct=train_correct,
                test_correct=test_correct,
                train_margin=train_margin.astype(np.float16) if training.margins else None,
                test_margin=test_margin.astype(np.float16) if training.margins else None,
                train_wrong_class=predicted[~train_correct],
                train_accuracy=float(train_correct[member.subset].mean()),
                test_accuracy=float(test_correct.mean()) if len(test_correct) else float("nan"),
                seconds=seconds,
            )
        )
    return final


def _grade_rows(
    trainer: Trainer, stacked: StackedMLP, x: torch.Tensor, y: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, n) correct, margin and predicted class of every model on rows ``x``."""
    size = EVAL_BATCH["cuda" if trainer.cuda else "cpu"]
    correct, margin, predicted = [], [], []
    for lo in range(0, len(y), size):
        with autocast(trainer.device):
            logits = stacked(x[lo : lo + size], shared=True).float()
        target = y[lo : lo + size]
        classes = logits.argmax(dim=2)
        predicted.append(classes)
        correct.append(classes == target)
        flat = logits.flatten(0, 1)
        margin.append(margin_of(flat, target.repeat(stacked.size)).view(stacked.size, -1))
    if not correct:
        empty = np.zeros((stacked.size, 0))
        return empty.astype(bool), empty, empty.astype(np.int64)
    return (
        torch.cat(correct, dim=1).cpu().numpy(),
        torch.cat(margin, dim=1).cpu().numpy(),
        torch.cat(predicted, dim=1).cpu().numpy(),
    )
