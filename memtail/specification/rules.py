"""The rules a spec must keep before anything is written: finite numbers in sane ranges,
names that are data (never paths), values every database stores the same way."""

from __future__ import annotations

import math
import re
from typing import Any

from memtail.specification.fields import (
    OPTIMIZERS,
    SCHEDULES,
    ExperimentKind,
    ExperimentSpec,
    ProbeSpec,
    SpecError,
    StoppingSpec,
    checkpoint_interval,
)
from memtail.stats.fdr import METHODS as FDR_METHODS
from memtail.stats.spending import SPENDINGS

#: Experiment names are data, and also the stems of plot files: no separators or controls.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
#: The most trials an experiment may have: the paper used 2,000-4,000, and creating many
#: more at once holds the database for minutes (extend in steps beyond it).
MAX_TRIALS = 100_000
#: Seeds are stored as BIGINT and fed to numpy's SeedSequence (non-negative).
MAX_SEED = 2**63 - 1
#: The most trials one stacked computation trains: past this, a batch of even the
#: smallest mlp fills a GPU's memory and no longer gets faster per trial.
MAX_TRIALS_PER_BATCH = 1_024


def has_control_character(text: str) -> bool:
    """Whether ``text`` holds a control character (C0 or DEL): in a path or URL a newline
    is a pasting slip, and it would break every one-line message that names the text."""
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def shown(value: Any) -> str:
    """A value as an error line quotes it: its repr, cut to 20 characters and "..." when
    longer than 40 (a 400-digit number would otherwise fill the terminal)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}..."


def _check(field_name: str, value: float, low: float, high: float, hint: str = "") -> None:
    """``low <= value <= high``, and finite: NaN and infinities never pass a comparison.
    An int is compared as it is: math.isfinite(10**400) raises OverflowError, and :g
    would round a bound such as MAX_SEED."""
    finite = isinstance(value, int) or math.isfinite(value)
    if not (finite and low <= value <= high):
        raise SpecError(
            field_name, f"must be in [{_bound(low)}, {_bound(high)}] (got {shown(value)}){hint}"
        )


def _bound(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def validate(spec: ExperimentSpec) -> None:
    """Checks that need neither data nor torch; the training layer checks that the dataset
    and model exist and that their options hold (``memtail.training.registry``)."""
    if not isinstance(spec.name, str) or not NAME_PATTERN.fullmatch(spec.name):
        raise SpecError(
            "name",
            f"{spec.name!r} is not a valid name: use 1-200 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    if spec.kind not in tuple(ExperimentKind):
        raise SpecError(
            "kind", f"unknown kind {spec.kind!r}; choose one of {', '.join(ExperimentKind)}"
        )
    if spec.trials <= 0:
        raise SpecError("trials", f"must be > 0 (got {spec.trials}); the paper uses 2000-4000")
    if spec.trials > MAX_TRIALS:
        raise SpecError(
            "trials",
            f"must be at most {MAX_TRIALS:,} (got {spec.trials}); the paper uses 2000-4000 "
            "(grow further with `memtail experiment extend`)",
        )
    _check("seed", spec.seed, 0, MAX_SEED)
    if spec.subset_size < 0:
        raise SpecError("subset_size", f"must be > 0 (got {spec.subset_size})")
    if not spec.subset_size and not (
        math.isfinite(spec.subset_fraction) and 0 < spec.subset_fraction < 1
    ):
        raise SpecError(
            "subset_fraction", f"must be in (0, 1) (got {spec.subset_fraction}); paper: 0.7"
        )
    t = spec.training
    positive = {"epochs": t.epochs, "batch_size": t.batch_size, "lr": t.lr}
    for key, value in positive.items():
        if not value > 0:
            raise SpecError(f"training.{key}", f"must be > 0 (got {value})")
    _check("training.epochs", t.epochs, 1, 10_000)
    _check("training.batch_size", t.batch_size, 1, 1_000_000)
    _check("training.lr", t.lr, 1e-9, 100, "; a typical peak is 0.01-1")
    _check("training.momentum", t.momentum, 0, 0.999, "; SGD uses 0.9")
    _check("training.weight_decay", t.weight_decay, 0, 1, "; typical: 5e-4")
    _check("training.crop", t.crop, 0, 64)
    if not (math.isfinite(t.label_smoothing) and 0 <= t.label_smoothing < 1):
        raise SpecError("training.label_smoothing", f"must be in [0, 1) (got {t.label_smoothing})")
    if t.optimizer not in OPTIMIZERS:
        raise SpecError("training.optimizer", f"choose one of {', '.join(OPTIMIZERS)}")
    if t.schedule not in SCHEDULES:
        raise SpecError("training.schedule", f"choose one of {', '.join(SCHEDULES)}")
    checkpoint_interval(t.checkpoint_every)
    _check(
        "training.trials_per_batch",
        t.trials_per_batch,
        1,
        MAX_TRIALS_PER_BATCH,
        "; 1 trains one trial at a time",
    )
    if t.trials_per_batch > 1 and str(t.checkpoint_every).strip().lower() not in ("auto", "off"):
        raise SpecError(
            "training.checkpoint_every",
            'trials trained in batches save no checkpoints; leave it at "auto" or set '
            "training.trials_per_batch = 1",
        )
    e = spec.estimate
    if not (math.isfinite(e.confidence) and 0.5 <= e.confidence < 1):
        # Below 0.5 an interval is more often wrong than right: most likely an error rate.
        hint = "; as a confidence, an error rate of 0.05 is 0.95" if 0 < e.confidence < 0.5 else ""
        raise SpecError(
            "estimate.confidence",
            f"must be in (0, 1), at least 0.5, e.g. 0.95 (got {e.confidence}){hint}",
        )
    for key in ("mem_threshold", "infl_threshold"):
        _check(f"estimate.{key}", getattr(e, key), -1, 1)
    if not (math.isfinite(e.fdr) and 0 <= e.fdr < 1):
        raise SpecError("estimate.fdr", f"must be in [0, 1), e.g. 0.1; 0 is off (got {e.fdr})")
    if e.fdr_method not in FDR_METHODS:
        raise SpecError("estimate.fdr_method", f"choose one of {', '.join(FDR_METHODS)}")
    if spec.model.width < 0:
        raise SpecError("model.width", f"must be >= 0 (got {spec.model.width})")
    _check("model.width", spec.model.width, 0, 65_536, "; 0 is the model's default")
    probe = spec.probe
    if spec.kind != ExperimentKind.PROBE and probe != ProbeSpec():
        raise SpecError(
            "probe", 'a [probe] section belongs to kind = "probe" specs; remove it or set the kind'
        )
    _check("probe.epochs", probe.epochs, 1, 10_000)
    _check("probe.batch_size", probe.batch_size, 1, 1_000_000)
    _check("probe.lr", probe.lr, 1e-9, 100, "; Adam's usual: 0.001-0.1")
    _check("probe.weight_decay", probe.weight_decay, 0, 1)
    _check_stopping(spec)
    for section, options in (("dataset", spec.dataset.options), ("model", spec.model.options)):
        for key, value in options.items():
            _check_storable(f"{section}.{key}", value)


def _check_stopping(spec: ExperimentSpec) -> None:
    rules = spec.stopping
    if rules == StoppingSpec():
        return
    if not rules.active:
        raise SpecError(
            "stopping",
            "sets no rule; give stopping.decided, stopping.mem_half_width or "
            "stopping.pairs_stable, or remove the section",
        )
    if spec.kind != ExperimentKind.SUBSAMPLE:
        raise SpecError("stopping", f"rules apply to subsample experiments, not {spec.kind}")
    if not spec.trials <= rules.max_trials <= MAX_TRIALS:
        raise SpecError(
            "stopping.max_trials",
            f"must be between trials ({spec.trials}, the first batch) and {MAX_TRIALS:,} "
            f"(got {rules.max_trials}); it caps what the rules may add",
        )
    _check("stopping.mem_half_width", rules.mem_half_width, 0, 1, "; e.g. 0.1")
    _check("stopping.coverage", rules.coverage, 0.01, 1)
    _check("stopping.decided", rules.decided, 0, 1, "; e.g. 0.99")
    _check("stopping.pairs_stable", rules.pairs_stable, 0, 1, "; e.g. 0.8")
    _check("stopping.growth", rules.growth, 1.05, 4, "; each batch multiplies the trials")
    if rules.spending not in SPENDINGS:
        raise SpecError("stopping.spending", f"choose one of {', '.join(SPENDINGS)}")


def _check_storable(field_name: str, value: Any) -> None:
    """A free-form option the database can store as JSON, the same way on every backend:
    finite numbers, and text without control characters (PostgreSQL's JSON has no NUL)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(field_name, f"must be a finite number (got {value!r})")
    if isinstance(value, str) and any(ord(c) < 32 for c in value):
        raise SpecError(field_name, "must not contain control characters")
    if isinstance(value, list | tuple):
        for item in value:
            _check_storable(field_name, item)
    if isinstance(value, dict):
        for key, item in value.items():
            _check_storable(f"{field_name}.{key}", item)
