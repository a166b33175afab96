"""From the command line to the library: settings, the engine and specs out of arguments.

Every command reads the configuration once (``MEMTAIL_*``) and lets flags override it;
a spec comes from a file or a bundled name plus flags, checked against the training
layer's registries before anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memtail.config import ConfigError, Settings

if TYPE_CHECKING:  # sqlalchemy and torch stay out of the CLI's import time
    from memtail.spec import ExperimentSpec
    from memtail.store.engine import Engine


def settings_from(args: argparse.Namespace) -> Settings:
    """``MEMTAIL_*`` settings, overridden by the global flags that were given."""
    settings = Settings.from_env()
    overrides = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    if getattr(args, "broker_url", None):
        overrides["broker_url"] = args.broker_url
    if getattr(args, "data_root", None):
        overrides["data_root"] = args.data_root
    return dataclasses.replace(settings, **overrides) if overrides else settings


class UsageError(ValueError):
    """A command used in a way that cannot work; the message says what to run instead."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped a command; the message says what was kept and how to go on.

    Raised ``from`` the KeyboardInterrupt (or Terminated) that stopped it.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so that both take the same way out."""


class TrialsFailed(RuntimeError):
    """Every trial of a run failed; the message says why and what to fix."""


def output_folder(path: str) -> Path:
    """``--out``: a folder, made if missing; a file there is a one-line error."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {path} is a file; give a folder for the outputs")
    return folder


def database(settings: Settings) -> Engine:
    """The existing memtail database of ``settings``; a missing database, schema or server
    is a one-line ``DatabaseUnavailable`` naming it and the fix, and nothing is created."""
    from memtail.store.database import open_database

    return open_database(settings.database_url)


def _parse_value(text: str) -> Any:
    """`--set training.epochs=5`: values parse as TOML scalars, else stay strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def spec_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Spec fields given as flags (``--trials``, ``--set FIELD=VALUE``, ...), dotted."""
    overrides: dict[str, Any] = {}
    flags = {
        "name": "name",
        "trials": "trials",
        "seed": "seed",
        "subset_fraction": "subset_fraction",
        "dataset": "dataset.name",
        "model": "model.name",
        "epochs": "training.epochs",
        "max_trials": "stopping.max_trials",
        "stop_decided": "stopping.decided",
        "stop_half_width": "stopping.mem_half_width",
        "stop_coverage": "stopping.coverage",
        "stop_pairs_stable": "stopping.pairs_stable",
        "fdr": "estimate.fdr",
    }
    for attr, dotted in flags.items():
        value = getattr(args, attr, None)
        if value is not None:
            overrides[dotted] = value
    for item in getattr(args, "set", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE, e.g. training.epochs=5")
        overrides[key.strip()] = _parse_value(value.strip())
    return overrides


def load_spec_arg(source: str | None, args: argparse.Namespace) -> ExperimentSpec:
    """The spec of a file or bundled name (or of flags alone, when ``source`` is None),
    with its dataset and model checked against what this installation can train."""
    from memtail.spec import load_spec, spec_from_dict
    from memtail.training.registry import check_names

    overrides = spec_overrides(args)
    spec = spec_from_dict({}, overrides) if source is None else load_spec(source, overrides)
    return check_names(spec)
