"""Experiment specs: what to train, on what data, with which recipe, and how many trials.

A spec is a TOML file (the bundled ones are in ``memtail/specification/bundled/``) or the
same fields as CLI flags (``reading``). It is validated once, at ``memtail experiment
create``, so that every mistake is reported as a one-line error naming the field and the
fix before anything is written (``rules``; dataset and model names and options by
``memtail.training.registry``). The canonical JSON of a spec (``fields``) is stored with
its experiment; its hash decides whether re-creating an experiment is a no-op or a name
clash.
"""

from memtail.specification.fields import (
    AUTO_CHECKPOINT_SECONDS,
    OPTIMIZERS,
    SCHEDULES,
    DatasetSpec,
    EstimateSpec,
    ExperimentKind,
    ExperimentSpec,
    ModelSpec,
    ProbeSpec,
    SpecError,
    StoppingSpec,
    TrainingSpec,
    checkpoint_interval,
)
from memtail.specification.reading import bundled_specs, load_spec, spec_from_dict, stored_spec
from memtail.specification.rules import MAX_SEED, MAX_TRIALS, NAME_PATTERN, shown, validate

__all__ = [
    "AUTO_CHECKPOINT_SECONDS",
    "MAX_SEED",
    "MAX_TRIALS",
    "NAME_PATTERN",
    "OPTIMIZERS",
    "SCHEDULES",
    "DatasetSpec",
    "EstimateSpec",
    "ExperimentKind",
    "ExperimentSpec",
    "ModelSpec",
    "ProbeSpec",
    "SpecError",
    "StoppingSpec",
    "TrainingSpec",
    "bundled_specs",
    "checkpoint_interval",
    "load_spec",
    "shown",
    "spec_from_dict",
    "stored_spec",
    "validate",
]
