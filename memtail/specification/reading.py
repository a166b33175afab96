"""Reading specs: TOML files, bundled spec names, flags as dotted overrides, stored JSON."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Any

from memtail.specification.fields import (
    DatasetSpec,
    EstimateSpec,
    ExperimentSpec,
    ModelSpec,
    ProbeSpec,
    SpecError,
    StoppingSpec,
    TrainingSpec,
)
from memtail.specification.rules import has_control_character, validate

# The package that holds the bundled specs (package data, so an installed wheel has them).
_BUNDLED = "memtail.specification.bundled"

_SECTIONS = {
    "dataset": DatasetSpec,
    "model": ModelSpec,
    "training": TrainingSpec,
    "estimate": EstimateSpec,
    "probe": ProbeSpec,
    "stopping": StoppingSpec,
}


def bundled_specs() -> list[str]:
    """Names of the specs that ship with memtail (``memtail/specification/bundled/NAME.toml``)."""
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
    if has_control_character(str(source)):
        # A newline would also cut the one-line error that names the path in two.
        raise SpecError(
            "file", f"{str(source)!r} contains a control character; give the spec's path"
        )
    path = Path(source)
    bundled = resources.files(_BUNDLED) / f"{source}.toml"
    try:
        if not path.is_file() and str(source) in bundled_specs():
            text = bundled.read_text()
        else:
            # TOML is UTF-8; utf-8-sig also reads the byte-order mark some editors put first.
            text = path.read_text(encoding="utf-8-sig")
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise SpecError(
            "file",
            f"{path} does not exist; pass the path of a TOML spec or a bundled spec "
            f"({', '.join(bundled_specs())})",
        ) from None
    except IsADirectoryError:
        raise SpecError("file", f"{path} is a folder; pass the path of a TOML spec") from None
    except UnicodeDecodeError:
        raise SpecError(
            "file", f"{path} is not a text file; pass the path of a TOML spec"
        ) from None
    except PermissionError:
        raise SpecError("file", f"{path} cannot be read (permission denied)") from None
    except tomllib.TOMLDecodeError as error:
        raise SpecError("file", f"{path} is not valid TOML ({error}); fix the syntax") from None
    except OSError as error:  # e.g. a device that cannot be read (EIO), a name too long
        reason = error.strerror or type(error).__name__
        raise SpecError("file", f"{path} cannot be read ({reason}); pass a TOML spec") from None
    return spec_from_dict(raw, overrides)


def stored_spec(raw: dict[str, Any]) -> ExperimentSpec:
    """The spec of a stored experiment, from its JSON: unchecked (see ``spec_from_dict``),
    and where the JSON leaves a field out because it was the default when the experiment
    was created (so its hash stayed the same), that old default, not today's."""
    stopping = raw.get("stopping")
    if isinstance(stopping, dict) and "spending" not in stopping:
        # Stopping specs from before the spending could be chosen used the Bonferroni
        # split; ``ExperimentSpec.to_json`` still leaves it out of their JSON.
        raw = {**raw, "stopping": {**stopping, "spending": "bonferroni"}}
    return spec_from_dict(raw, check=False)


def spec_from_dict(
    raw: dict[str, Any], overrides: dict[str, Any] | None = None, *, check: bool = True
) -> ExperimentSpec:
    """Build and validate a spec from parsed TOML (or JSON as stored in the database).

    ``check=False`` skips the rules (``memtail.specification.rules``): a spec read back from the
    database was checked when its experiment was created, and must stay readable when the
    rules have tightened since (an older name, a grown number of trials).

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
        if "." in section:
            # Sections hold fields, not further tables: dataset.options.x is dataset.x.
            raise SpecError(
                dotted, f"spec fields are FIELD or SECTION.FIELD; e.g. {dotted.split('.')[0]}.{key}"
            )
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
    if check:
        validate(spec)
    return spec


def _section(prefix: str, cls: type, values: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in values.items():
        if key == "options" and "options" in known and not isinstance(value, dict):
            raise SpecError(
                f"{prefix}.options", f"must be a table of options, got {type(value).__name__}"
            )
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


# Text fields that also take a plain number (`checkpoint_every = 5`: every 5 epochs).
_NUMBER_AS_TEXT = {"training.checkpoint_every"}


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
        if name in _NUMBER_AS_TEXT and isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise SpecError(name, f"must be a string, got {value!r}")
        return value
    return value
