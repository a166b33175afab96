"""A probe trial: a linear classifier trained on fixed features, on a subset of examples.

Feldman & Zhang ask whether a network memorizes in its representation or only in its
last layer by estimating memorization for a multinomial logistic regression on the
features of a network trained on the whole training set. A probe trial is that
regression on one random m-subset: the features are fixed, so a trial is one small
linear layer trained for a few epochs (milliseconds on digits), and it is graded like
any trial so the estimator treats its outcomes the same way.

Features are standardized once, with the mean and spread of every training example's
features: the features already come from a model that saw every example, and a fixed
transform keeps one learning rate right for networks whose feature scales differ.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from memtail.specification import ProbeSpec
from memtail.stats.outcomes import TrialOutcome
from memtail.training.device import resolve_device
from memtail.training.recipe import margin_of
from memtail.training.trainer import TrainingError


class LinearProbe:
    """Holds one experiment's features and labels on a device; trains probes on subsets."""

    def __init__(
        self,
        train_features: np.ndarray,
        y_train: torch.Tensor,
        test_features: np.ndarray,
        y_test: torch.Tensor,
        num_classes: int,
        device: str = "auto",
    ) -> None:
        self.device = resolve_device(device)
        for name, values in (("train", train_features), ("test", test_features)):
            if not np.isfinite(values).all():
                raise ValueError(
                    f"the {name} features are not finite (beyond float16's range?); the "
                    "feature trial's network diverged or needs smaller activations"
                )
        x_train = torch.from_numpy(np.asarray(train_features, dtype=np.float32))
        mean = x_train.mean(dim=0)
        # Constant features (dead ReLUs) would divide by zero; they stay zero instead.
        std = x_train.std(dim=0).clamp_min(1e-6)
        self.x_train = ((x_train - mean) / std).to(self.device)
        x_test = torch.from_numpy(np.asarray(test_features, dtype=np.float32))
        self.x_test = ((x_test - mean) / std).to(self.device)
        self.y_train = y_train.to(self.device)
        self.y_test = y_test.to(self.device)
        self.num_classes = num_classes
        if len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test):
            raise ValueError(
                f"features of {len(self.x_train)}/{len(self.x_test)} examples for "
                f"{len(self.y_train)}/{len(self.y_test)} labels"
            )

    def run(
        self,
        probe: ProbeSpec,
        subset: np.ndarray,
        seed: int,
        *,
        margins: bool = False,
        on_epoch: Callable[[int, float], None] | None = None,
    ) -> TrialOutcome:
        """Train the probe on ``subset`` of the training features, grade every example
        (with ``margins``, also each example's margin, as the network's trials do)."""
        start = time.perf_counter()
        index = torch.from_numpy(np.flatnonzero(np.asarray(subset, dtype=bool))).to(self.device)
        if len(index) == 0:
            raise ValueError("subset is empty; a trial needs at least one training example")
        torch.manual_seed(seed)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        layer = nn.Linear(self.x_train.shape[1], self.num_classes).to(self.device)
        optimizer = torch.optim.Adam(
            layer.parameters(), lr=probe.lr, weight_decay=probe.weight_decay
        )
        x, y = self.x_train[index], self.y_train[index]
        steps = -(-len(y) // probe.batch_size)
        for epoch in range(1, probe.epochs + 1):
            order = torch.randperm(len(y), generator=generator, device=self.device)
            loss_sum = torch.zeros((), device=self.device)
            for batch in torch.tensor_split(order, steps):
                loss = F.cross_entropy(layer(x[batch]), y[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach()
            mean_loss = float(loss_sum) / steps
            if not math.isfinite(mean_loss):
                raise TrainingError(
                    f"the probe's loss became NaN at epoch {epoch}; lower probe.lr (now {probe.lr})"
                )
            if on_epoch is not None:
                on_epoch(epoch, mean_loss)
        with torch.no_grad():
            train_logits = layer(self.x_train)
            test_logits = layer(self.x_test)
        train_predicted = train_logits.argmax(1)
        train_correct = (train_predicted == self.y_train).cpu().numpy()
        test_correct = (test_logits.argmax(1) == self.y_test).cpu().numpy()
        subset = np.asarray(subset, dtype=bool)
        return TrialOutcome(
            train_correct=train_correct,
            test_correct=test_correct,
            train_margin=_margins(train_logits, self.y_train) if margins else None,
            test_margin=_margins(test_logits, self.y_test) if margins else None,
            train_wrong_class=train_predicted.cpu().numpy()[~train_correct],
            train_accuracy=float(train_correct[subset].mean()),
            test_accuracy=float(test_correct.mean()) if len(test_correct) else float("nan"),
            seconds=time.perf_counter() - start,
        )


def _margins(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return margin_of(logits, y).cpu().numpy().astype(np.float16)
