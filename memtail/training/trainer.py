"""One trial: train a fresh model on a subset of the training set, then grade every example.

Follows airbench's recipe for speed: the whole dataset lives on the device as tensors, a
subset trial trains on ``x_train[subset]``, batches are slices of a random permutation and
augmentation (flip, translate) is batched tensor ops, so there is no DataLoader and no
host-device copy in the hot loop. The outcome per example is what the Feldman & Zhang
estimator needs: whether the trained model classifies it correctly (and, optionally, its
margin: the true-class logit minus the largest other logit).

Determinism: model initialization uses torch's global RNG seeded with the trial seed, and
shuffling and augmentation a local ``torch.Generator``; on CPU the same seed, data and
thread count give bit-identical results. CUDA adds bf16 autocast, channels-last and fused
optimizers, and is only reproducible up to cuDNN's nondeterministic kernels.
``compile_mode`` optionally wraps the model in ``torch.compile`` (MEMTAIL_COMPILE_MODE).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from memtail.config import COMPILE_MODES
from memtail.specification import ModelSpec, TrainingSpec
from memtail.stats.outcomes import TrialOutcome
from memtail.training.datasets import Dataset
from memtail.training.device import EVAL_BATCH, autocast, resolve_device, to_device
from memtail.training.networks import build_model
from memtail.training.recipe import augment, lr_factor, margin_of, optimizer_for
from memtail.training.snapshot import Checkpointing, Saver
from memtail.training.split import split

__all__ = ["Trainer", "TrainingError"]

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training diverged (non-finite loss); retrying with the same recipe will not help."""


class Trainer:
    """Holds one dataset on one device and trains subset models on it, one at a time.

    Create one per worker process (after forking, so CUDA is initialized in the child).
    """

    def __init__(
        self, dataset: Dataset, device: str = "auto", threads: int = 1, compile_mode: str = "none"
    ) -> None:
        if compile_mode not in COMPILE_MODES:
            raise ValueError(
                f"compile_mode must be one of {', '.join(COMPILE_MODES)}; got {compile_mode!r}"
            )
        self.dataset = dataset
        self.device = resolve_device(device)
        self.cuda = self.device.type == "cuda"
        self.compile = compile_mode
        if self.cuda:
            # Fixed input shapes: let cuDNN pick the fastest kernels once.
            torch.backends.cudnn.benchmark = True
        else:
            # One thread per process: several processes per machine scale better than
            # one process with many threads on models this small.
            torch.set_num_threads(threads)
        # The first optimizer ever built imports torch._dynamo (seconds); pay that here so
        # the first trial's time is representative.
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        self.x_train = to_device(dataset.x_train, self.device)
        self.y_train = dataset.y_train.to(self.device)
        self.x_test = to_device(dataset.x_test, self.device)
        self.y_test = dataset.y_test.to(self.device)

    def run(
        self,
        model_spec: ModelSpec,
        training: TrainingSpec,
        subset: np.ndarray,
        seed: int,
        *,
        on_epoch: Callable[[int, float], None] | None = None,
        checkpointing: Checkpointing | None = None,
    ) -> TrialOutcome:
        """Train on ``x_train[subset]`` and grade all train and test examples.

        ``on_epoch(epoch, mean_loss)`` is called after each epoch, counting from 1;
        exceptions it raises propagate (a worker uses that to abandon a lost lease).
        ``checkpointing``: save training states as it says, resume from its ``resume``,
        and raise ``Preempted`` once its ``stop`` asks (``memtail.training.snapshot``).
        """
        return self.fit(
            model_spec, training, subset, seed, on_epoch=on_epoch, checkpointing=checkpointing
        )[1]

    def fit(
        self,
        model_spec: ModelSpec,
        training: TrainingSpec,
        subset: np.ndarray,
        seed: int,
        *,
        on_epoch: Callable[[int, float], None] | None = None,
        checkpointing: Checkpointing | None = None,
    ) -> tuple[nn.Module, TrialOutcome]:
        """``run``, also returning the trained model (for its features)."""
        start = time.perf_counter()
        subset = np.asarray(subset)
        if subset.dtype != bool or subset.shape != (self.dataset.n_train,):
            raise ValueError(
                f"subset must be a bool array of shape ({self.dataset.n_train},), got "
                f"{subset.dtype} {subset.shape}"
            )
        index = torch.from_numpy(np.flatnonzero(subset)).to(self.device)
        if len(index) == 0:
            raise ValueError("subset is empty; a trial needs at least one training example")

        torch.manual_seed(seed)  # model initialization (and dropout)
        np.random.seed(seed % 2**32)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)

        model = build_model(model_spec, self.dataset.input_shape, self.dataset.num_classes)
        model = model.to(self.device)
        if self.cuda and self.x_train.ndim == 4:
            model = model.to(memory_format=torch.channels_last)
        if self.compile != "none":
            # Compiled once per process and network: a later trial's fresh model of the
            # same shapes reuses the code (parameters are graph inputs, not constants).
            model = torch.compile(model, mode=None if self.compile == "default" else self.compile)
        resumed = self._train(
            model,
            training,
            self.x_train[index],
            self.y_train[index],
            generator,
            on_epoch,
            checkpointing,
        )

        train_correct, train_margin, train_predicted = self._grade(
            model, self.x_train, self.y_train, training.margins
        )
        test_correct, test_margin, _ = self._grade(
            model, self.x_test, self.y_test, training.margins
        )
        return model, TrialOutcome(
            train_correct=train_correct,
            test_correct=test_correct,
            train_margin=train_margin,
            test_margin=test_margin,
            train_wrong_class=train_predicted[~train_correct],
            train_accuracy=float(train_correct[subset].mean()),
            test_accuracy=float(test_correct.mean()) if len(test_correct) else float("nan"),
            seconds=time.perf_counter() - start + resumed,
            resumed_seconds=resumed,
        )

    def _train(
        self,
        model: nn.Module,
        training: TrainingSpec,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        on_epoch: Callable[[int, float], None] | None,
        checkpointing: Checkpointing | None,
    ) -> float:
        """Train ``model`` in place; the training seconds a resumed state carried in."""
        optimizer = optimizer_for(model, training, fused=self.cuda)
        n = len(y)
        # Equal-sized batches instead of a short last one: a last batch of one example
        # would break batch norm and give that example an outsized step.
        steps_per_epoch = -(-n // training.batch_size)
        total = training.epochs * steps_per_epoch
        model.train()
        checkpoints = checkpointing or Checkpointing(save=lambda state: None)
        parts = (model, optimizer, generator, self.device)
        resume = checkpoints.restore(parts, (n, steps_per_epoch, training.epochs))
        saver = Saver(checkpoints, parts, resume.seconds if resume is not None else 0.0)
        step = resume.step if resume is not None else 0
        first = resume.epoch + 1 if resume is not None else 1
        for epoch in range(first, training.epochs + 1):
            if resume is not None and epoch == first and resume.order is not None:
                order = resume.order.to(self.device)
                done = resume.batch
                loss_sum = resume.loss_sum.to(self.device)  # type: ignore[union-attr]
            else:
                order = torch.randperm(n, generator=generator, device=self.device)
                done = 0
                # Summed on the device: reading the loss every step would synchronize CUDA.
                loss_sum = torch.zeros((), device=self.device)
            batches = torch.tensor_split(order, steps_per_epoch)
            for b in range(done, steps_per_epoch):
                saver.before_step(epoch, b, step, (order, loss_sum))
                self._step(
                    model,
                    optimizer,
                    training,
                    x[batches[b]],
                    y[batches[b]],
                    generator,
                    training.lr * lr_factor(training.schedule, step, total),
                    loss_sum,
                )
                step += 1
            mean_loss = float(loss_sum) / steps_per_epoch
            if not math.isfinite(mean_loss):
                raise TrainingError(
                    f"loss became NaN at epoch {epoch}; lower training.lr (now {training.lr})"
                )
            if on_epoch is not None:
                on_epoch(epoch, mean_loss)
            if epoch < training.epochs:  # after the last epoch: grading, then done
                saver.after_epoch(epoch, step)
        return saver.carried

    def _step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        training: TrainingSpec,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator,
        lr: float,
        loss_sum: torch.Tensor,
    ) -> None:
        """One optimizer step on one batch, its loss added to ``loss_sum`` in place."""
        if self.compile == "reduce-overhead":  # CUDA graphs: may overwrite the last outputs
            torch.compiler.cudagraph_mark_step_begin()
        for group in optimizer.param_groups:
            group["lr"] = lr
        if inputs.ndim == 4 and (training.flip or training.crop > 0):
            inputs = augment(inputs, training.flip, training.crop, generator)
            if self.cuda:  # gather returns NCHW; the model runs channels-last
                inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast(self.device):
            logits = model(inputs)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=training.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach()

    def features(self, model: nn.Module) -> Iterator[np.ndarray]:
        """The trained ``model``'s features (the input of its last linear layer) of every
        train example, then every test example, as float16 blocks of rows: bounded
        memory however large the dataset."""
        # The uncompiled module: its forward hooks and layers are the split's.
        features = split(getattr(model, "_orig_mod", model)).features
        features.eval()
        size = EVAL_BATCH["cuda" if self.cuda else "cpu"]
        for x in (self.x_train, self.x_test):
            for lo in range(0, len(x), size):
                with torch.no_grad(), autocast(self.device):
                    block = features(x[lo : lo + size])
                rows = block.float().cpu().numpy().astype(np.float16)
                if not np.isfinite(rows).all():
                    raise TrainingError(
                        "features beyond float16's range (or NaN): the network's "
                        "penultimate activations are too large to store for a probe"
                    )
                yield rows

    @torch.no_grad()
    def _grade(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, margins: bool
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Per example: correct or not, the margin (if asked), the predicted class."""
        model.eval()
        size = EVAL_BATCH["cuda" if self.cuda else "cpu"]
        correct, margin, predicted = [], [], []
        for lo in range(0, len(y), size):
            if self.compile == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            with autocast(self.device):
                logits = model(x[lo : lo + size]).float()
            target = y[lo : lo + size]
            predicted.append(logits.argmax(dim=1))
            correct.append(predicted[-1] == target)
            if margins:
                margin.append(margin_of(logits, target))
        result = torch.cat(correct).cpu().numpy() if correct else np.zeros(0, dtype=bool)
        classes = torch.cat(predicted).cpu().numpy() if predicted else np.zeros(0, np.int64)
        if not margins:
            return result, None, classes
        values = torch.cat(margin).cpu().numpy() if margin else np.zeros(0)
        return result, values.astype(np.float16), classes
