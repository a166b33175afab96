"""What a spec says: the experiment, its dataset, model, recipe and estimate, as frozen
dataclasses; their canonical JSON is stored with the experiment, and its hash decides
whether re-creating an experiment is a no-op or a name clash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from memtail.stats.pair_rule import PairRule


class SpecError(ValueError):
    """An invalid spec field; the message names the field and how to fix it."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"spec field '{field_name}': {problem}")
        self.field_name = field_name


@dataclass(frozen=True)
class DatasetSpec:
    #: Registered dataset: synthetic-longtail, digits, mnist, fashion-mnist, cifar10,
    #: cifar100, imagefolder, npz.
    name: str = "digits"
    #: Dataset-specific options (e.g. ``path`` for npz, ``test_fraction`` for digits).
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    #: mlp, cnn, fastnet, resnet18, resnet50, or any torchvision classification model.
    name: str = "mlp"
    #: Hidden units (mlp) or base channels (cnn, fastnet); 0 means the model's default.
    width: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingSpec:
    epochs: int = 20
    batch_size: int = 128
    #: sgd (Nesterov momentum), adam or adamw.
    optimizer: str = "sgd"
    #: Peak learning rate.
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    #: constant, cosine, onecycle (linear warm-up then linear decay) or step.
    schedule: str = "onecycle"
    label_smoothing: float = 0.0
    #: Random horizontal flips (images only).
    flip: bool = False
    #: Random translation by up to this many pixels (images only; 0 = off).
    crop: int = 0
    #: Store per-example margins (float16) with the outcomes.
    margins: bool = False
    #: Save the training state so that a trial stopped midway resumes instead of starting
    #: again: "auto" (every 10 minutes of training; shorter trials never save), "off",
    #: "N" (every N epochs) or "Nm" (every N minutes).
    checkpoint_every: str = "auto"
    #: Trials a worker claims and trains together as one stacked computation (mlp
    #: only; other networks train one at a time). 1: one trial at a time.
    trials_per_batch: int = 1


@dataclass(frozen=True)
class EstimateSpec:
    confidence: float = 0.95
    #: The paper's thresholds for high-influence pairs.
    mem_threshold: float = 0.25
    infl_threshold: float = 0.15
    #: Keep only same-class pairs in the influence table (the paper's rule).
    same_class: bool = True
    #: Report only pairs whose q-value is at most this, on top of the paper's rule
    #: (``memtail.stats.fdr``; 0: no level, every pair of the rule).
    fdr: float = 0.0
    #: "bh" (Benjamini-Hochberg) or "by" (Benjamini-Yekutieli: any dependence, ~ln N
    #: times stricter).
    fdr_method: str = "bh"

    def pair_rule(
        self, confidence: float | None = None, q_values: bool = True, interval: str = "newcombe"
    ) -> PairRule:
        """The influence scan's rule for these settings (``confidence`` and ``interval``: a
        stopping rule's spent level and its interval method instead of the plain ones)."""
        return PairRule(
            threshold=self.infl_threshold,
            same_class=self.same_class,
            confidence=self.confidence if confidence is None else confidence,
            fdr=self.fdr,
            fdr_method=self.fdr_method,  # type: ignore[arg-type]  # checked by the rules
            q_values=q_values,
            interval=interval,
        )


@dataclass(frozen=True)
class ProbeSpec:
    """The linear classifier a probe experiment trains on fixed features in each trial:
    multinomial logistic regression, by Adam on mini-batches."""

    epochs: int = 30
    batch_size: int = 128
    #: Adam's learning rate.
    lr: float = 0.01
    weight_decay: float = 0.0


@dataclass(frozen=True)
class StoppingSpec:
    """Stop adding trials once the answer is decided (``memtail.stats.stopping``): the
    spec's ``trials`` are the first batch, each later batch grows the total by ``growth``,
    never past ``max_trials``. A rule of 0 is off; with every rule off, ``trials`` is all."""

    #: The cap: never more trials than this (0: no rules, run ``trials``).
    max_trials: int = 0
    #: Stop when a share ``coverage`` of examples have a mem interval within +-this.
    mem_half_width: float = 0.0
    coverage: float = 0.95
    #: Stop when this share of examples is decided: its interval wholly above or below
    #: the memorization threshold.
    decided: float = 0.0
    #: Stop when the split-half Jaccard of the high-influence pairs reaches this.
    pairs_stable: float = 0.0
    #: The planned looks: each multiplies the total number of trials by this. With a
    #: joint-law spending a batch may end several looks on, where the rules project.
    growth: float = 1.2
    #: How the looks share the error rate (``memtail.stats.spending``): "obrien_fleming"
    #: or "pocock" (repeated confidence intervals from the looks' joint normal law), or
    #: "bonferroni" (in proportion to their trials, by the union bound; the default of
    #: experiments created before the others existed, at growth 1.5).
    spending: str = "obrien_fleming"

    @property
    def active(self) -> bool:
        return bool(self.mem_half_width or self.decided or self.pairs_stable)


#: "auto" checkpoints every this many seconds of training: a trial that trains for less
#: never pays for a checkpoint, a long one loses at most this much to a preemption.
AUTO_CHECKPOINT_SECONDS = 600.0


def checkpoint_interval(text: str) -> tuple[int, float]:
    """``training.checkpoint_every`` as (every so many epochs, every so many seconds); 0 is
    "not by that measure". Raises SpecError naming the field."""
    value = str(text).strip().lower()
    if value == "auto":
        return 0, AUTO_CHECKPOINT_SECONDS
    if value in ("off", "0", "0m"):
        return 0, 0.0
    number, minutes = (value[:-1], True) if value.endswith("m") else (value, False)
    # ASCII only: str.isdigit() also takes "²" (which int() refuses) and "٥" (which it reads
    # as 5), and a stored spec should say what it means in digits every reader knows.
    if number.isascii() and number.isdigit() and 0 < int(number) <= 100_000:
        return (0, 60.0 * int(number)) if minutes else (int(number), 0.0)
    raise SpecError(
        "training.checkpoint_every",
        f'must be "auto", "off", a number of epochs such as "5", or minutes such as "20m" '
        f"(got {text!r}{'' if value.isascii() else '; use the digits 0-9'})",
    )


OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle", "step")


class ExperimentKind(StrEnum):
    """How an experiment's trials choose their training subsets."""

    #: Random m-subsets, estimated: Feldman & Zhang's estimator.
    SUBSAMPLE = "subsample"
    #: Every trial trains on one stored subset (made by `memtail removal`); never estimated.
    REMOVAL = "removal"
    #: Trial 0 trains the network on the full training set and stores its features; every
    #: other trial trains a linear classifier on them, on a random m-subset: estimated
    #: like a subsample experiment (made by `memtail probe`).
    PROBE = "probe"

    @property
    def estimated(self) -> bool:
        """Whether its trials' subsets vary, so that memorization can be estimated."""
        return self != ExperimentKind.REMOVAL


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    estimate: EstimateSpec = field(default_factory=EstimateSpec)
    #: k: number of subset models.
    trials: int = 100
    #: m as a fraction of n_train (the paper uses 0.7); ignored if subset_size is set.
    subset_fraction: float = 0.7
    #: m as an absolute count (0: use subset_fraction).
    subset_size: int = 0
    seed: int = 0
    kind: str = ExperimentKind.SUBSAMPLE
    #: kind "probe" only: the linear classifier of its probe trials.
    probe: ProbeSpec = field(default_factory=ProbeSpec)
    #: When to stop adding trials (off unless a rule is set).
    stopping: StoppingSpec = field(default_factory=StoppingSpec)

    def resolve_subset_size(self, n_train: int) -> int:
        """m for a dataset of ``n_train`` examples; raises SpecError if 0 < m < n fails."""
        m = self.subset_size or int(round(self.subset_fraction * n_train))
        if self.kind == ExperimentKind.REMOVAL and 0 < m <= n_train:
            return m  # a fixed subset; the full training set is one of its arms
        if not 0 < m < n_train:
            where = "subset_size" if self.subset_size else "subset_fraction"
            raise SpecError(
                where,
                f"gives m={m} for n_train={n_train}; need 0 < m < n_train so every "
                "example is both in and out of some subsets",
            )
        return m

    @property
    def total_trials(self) -> int:
        """Trials in the experiment: ``trials``, plus a probe's feature trial (trial 0)."""
        return self.trials + (1 if self.kind == ExperimentKind.PROBE else 0)

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        if self.kind != ExperimentKind.PROBE:
            # Only probes have a [probe] section: other specs keep the JSON, and so the
            # hash, they had before probes existed.
            del values["probe"]
        if self.stopping == StoppingSpec():
            # Likewise: specs without stopping rules keep their JSON and hash.
            del values["stopping"]
        elif values["stopping"]["spending"] == "bonferroni":
            # And stopping specs from before the spending could be chosen.
            del values["stopping"]["spending"]
        if values["training"]["checkpoint_every"] == "auto":
            # And specs that leave checkpoints to the default.
            del values["training"]["checkpoint_every"]
        if values["training"]["trials_per_batch"] == 1:
            # And specs that train one trial at a time (a batch does not change results).
            del values["training"]["trials_per_batch"]
        for key, default in (("fdr", 0.0), ("fdr_method", "bh")):
            # And specs without false-discovery control.
            if values["estimate"][key] == default:
                del values["estimate"][key]
        return values

    def spec_hash(self) -> str:
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()
