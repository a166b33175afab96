"""Experiment specs: what to train, on what data, with which recipe, and how many trials.

A spec is a TOML file (the bundled ones are in ``memtail/specs/``) or the same fields as
CLI flags. It is validated once, at ``memtail experiment create``, so that every mistake
is reported as a one-line error naming the field and the fix before anything is written
(dataset and model names by ``memtail.training.registry``). The canonical
JSON of a spec is stored with its experiment; its hash decides whether re-creating an
experiment is a no-op or a name clash.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any


class SpecError(ValueError):
    """An invalid spec field; the message names the field and how to fix it."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"spec field '{field_name}': {problem}")
        self.field_name = field_name


# The package that holds the bundled specs (package data, so an installed wheel has them).
_BUNDLED = "memtail.specs"


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


@dataclass(frozen=True)
class EstimateSpec:
    confidence: float = 0.95
    #: The paper's thresholds for high-influence pairs.
    mem_threshold: float = 0.25
    infl_threshold: float = 0.15
    #: Keep only same-class pairs in the influence table (the paper's rule).
    same_class: bool = True


OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle", "step")


class ExperimentKind(StrEnum):
    """How an experiment's trials choose their training subsets."""

    #: Random m-subsets, estimated: Feldman & Zhang's estimator.
    SUBSAMPLE = "subsample"
    #: Every trial trains on one stored subset (made by `memtail removal`); never estimated.
    REMOVAL = "removal"


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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def spec_hash(self) -> str:
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


_SECTIONS = {
    "dataset": DatasetSpec,
    "model": ModelSpec,
    "training": TrainingSpec,
    "estimate": EstimateSpec,
}


def bundled_specs() -> list[str]:
    """Names of the specs that ship with memtail (``memtail/specs/NAME.toml``)."""
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in resources.files(_BUNDLED).iterdir()
        if entry.name.endswith(".toml")
    )


def load_spec(source: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentSpec:
    """Read and validate a TOML spec: a file's path, or the name of a bundled spec.

    ``overrides`` maps dotted fields to values. A path that exists wins over a bundled
    spec of the same name.
    """
    path = Path(source)
    bundled = resources.files(_BUNDLED) / f"{source}.toml"
    try:
        if not path.is_file() and str(source) in bundled_specs():
            text = bundled.read_text()
        else:
            text = path.read_text()
        raw = tomllib.loads(text)
    except (FileNotFoundError, IsADirectoryError):
        raise SpecError(
            "file",
            f"{path} does not exist; pass the path of a TOML spec or a bundled spec "
            f"({', '.join(bundled_specs())})",
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise SpecError("file", f"{path} is not valid TOML ({error}); fix the syntax") from None
    return spec_from_dict(raw, overrides)


def spec_from_dict(raw: dict[str, Any], overrides: dict[str, Any] | None = None) -> ExperimentSpec:
    """Build and validate a spec from parsed TOML (or JSON as stored in the database).

    ``overrides`` maps dotted fields to values. Overriding ``dataset.name`` or
    ``model.name`` with another dataset or model starts that section afresh, from the new
    one's own defaults: the old one's options (a digits ``test_fraction``, an MLP's
    ``width``) mean nothing to it. The experiment is then named DATASET-MODEL unless a
    name is given too, so it never takes the old experiment's name.
    """
    raw = {key: (dict(value) if isinstance(value, dict) else value) for key, value in raw.items()}
    overrides = overrides or {}
    retargeted = False
    for section, cls in (("dataset", DatasetSpec), ("model", ModelSpec)):
        new, before = overrides.get(f"{section}.name"), raw.get(section, {})
        old = before.get("name", cls.name) if isinstance(before, dict) else None
        if new is not None and new != old:
            raw[section] = {}
            retargeted = True
    for dotted, value in overrides.items():
        section, _, key = dotted.rpartition(".")
        target = raw.setdefault(section, {}) if section else raw
        target[key] = value
    named_by_flags = "name" not in raw and {"dataset.name", "model.name"} & set(overrides)
    if "name" not in overrides and (retargeted or named_by_flags):
        dataset, model = raw.get("dataset", {}), raw.get("model", {})
        raw["name"] = f"{dataset.get('name', DatasetSpec.name)}-{model.get('name', ModelSpec.name)}"
    if "name" not in raw:
        raise SpecError("name", "missing; give the experiment a unique name")
    top = {f.name: f for f in fields(ExperimentSpec)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in top:
            raise SpecError(key, f"unknown field; valid fields: {', '.join(sorted(top))}")
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise SpecError(key, f"must be a table [{key}], got {type(value).__name__}")
            kwargs[key] = _section(key, _SECTIONS[key], value)
        else:
            kwargs[key] = _coerce(key, top[key].type, value)
    spec = ExperimentSpec(**kwargs)
    validate(spec)
    return spec


def _section(prefix: str, cls: type, values: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in values.items():
        if key == "options" and isinstance(value, dict):
            continue  # merged below: stored specs keep options in their own table
        if key in known and key != "options":
            kwargs[key] = _coerce(f"{prefix}.{key}", known[key].type, value)
        elif "options" in known:
            # Free-form, dataset- or model-specific options (checked by their loaders).
            extra[key] = value
        else:
            raise SpecError(
                f"{prefix}.{key}", f"unknown field; valid fields: {', '.join(sorted(known))}"
            )
    if extra or "options" in values:
        extra.update(values.get("options", {}))
        kwargs["options"] = extra
    return cls(**kwargs)


def _coerce(name: str, annotation: Any, value: Any) -> Any:
    kind = str(annotation)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise SpecError(name, f"must be true or false, got {value!r}")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(name, f"must be an integer, got {value!r}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(name, f"must be a number, got {value!r}")
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise SpecError(name, f"must be a string, got {value!r}")
        return value
    return value


def validate(spec: ExperimentSpec) -> None:
    """Checks that need neither data nor torch; the training layer checks that the dataset
    and model exist (``memtail.training.registry``)."""
    if not spec.name or len(spec.name) > 200 or spec.name.strip() != spec.name:
        raise SpecError("name", "must be 1-200 characters without surrounding spaces")
    if spec.kind not in tuple(ExperimentKind):
        raise SpecError(
            "kind", f"unknown kind {spec.kind!r}; choose one of {', '.join(ExperimentKind)}"
        )
    if spec.trials <= 0:
        raise SpecError("trials", f"must be > 0 (got {spec.trials}); the paper uses 2000-4000")
    if spec.subset_size < 0:
        raise SpecError("subset_size", f"must be > 0 (got {spec.subset_size})")
    if not spec.subset_size and not 0 < spec.subset_fraction < 1:
        raise SpecError(
            "subset_fraction", f"must be in (0, 1) (got {spec.subset_fraction}); paper: 0.7"
        )
    t = spec.training
    positive = {"epochs": t.epochs, "batch_size": t.batch_size, "lr": t.lr}
    for key, value in positive.items():
        if value <= 0:
            raise SpecError(f"training.{key}", f"must be > 0 (got {value})")
    if t.weight_decay < 0 or t.momentum < 0 or t.crop < 0:
        raise SpecError("training", "weight_decay, momentum and crop must be >= 0")
    if not 0 <= t.label_smoothing < 1:
        raise SpecError("training.label_smoothing", f"must be in [0, 1) (got {t.label_smoothing})")
    if t.optimizer not in OPTIMIZERS:
        raise SpecError("training.optimizer", f"choose one of {', '.join(OPTIMIZERS)}")
    if t.schedule not in SCHEDULES:
        raise SpecError("training.schedule", f"choose one of {', '.join(SCHEDULES)}")
    e = spec.estimate
    if not 0 < e.confidence < 1:
        raise SpecError("estimate.confidence", f"must be in (0, 1) (got {e.confidence})")
    for key in ("mem_threshold", "infl_threshold"):
        if not -1 <= getattr(e, key) <= 1:
            raise SpecError(f"estimate.{key}", "must be in [-1, 1]")
    if spec.model.width < 0:
        raise SpecError("model.width", f"must be >= 0 (got {spec.model.width})")
