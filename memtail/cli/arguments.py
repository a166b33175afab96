"""From the command line to the library: settings, the engine and specs out of arguments.

Every command reads the configuration once (``MEMTAIL_*``) and lets flags override it;
a spec comes from a file or a bundled name plus flags, checked against the training
layer's registries before anything is written.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memtail.config import ConfigError, Settings
from memtail.specification.rules import has_control_character

if TYPE_CHECKING:  # sqlalchemy and torch stay out of the CLI's import time
    from memtail.specification import ExperimentSpec
    from memtail.store.engine import Engine


def settings_from(args: argparse.Namespace) -> Settings:
    """``MEMTAIL_*`` settings, overridden by the global flags that were given."""
    settings = Settings.from_env()
    overrides = {}
    for attr in ("database_url", "broker_url", "data_root"):
        value = getattr(args, attr, None)
        if value is not None and not value.strip():
            # `--database-url "$URL"` with URL unset: the default would be used instead,
            # and results land in a database no one meant.
            flag = "--" + attr.replace("_", "-")
            raise UsageError(
                f"{flag} is empty; give a value, or leave the flag out to use "
                f"MEMTAIL_{attr.upper()} or the default"
            )
        if value:
            overrides[attr] = value
    return dataclasses.replace(settings, **overrides) if overrides else settings


class UsageError(ValueError):
    """A command used in a way that cannot work; the message says what to run instead."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped a command; the message says what was kept and how to go on.

    Raised ``from`` the KeyboardInterrupt (or Terminated) that stopped it.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so that both take the same way out."""


def checked_path(path: str, flag: str) -> Path:
    """A path given on the command line, refused when it cannot be what was meant: empty
    (``Path("")`` is the current folder: `--out "$DIR"` with DIR unset would write there)
    or with a control character (a newline is most likely a pasting slip, and would break
    every one-line message that names the path)."""
    if not path.strip():
        raise UsageError(f"{flag} is empty; give a path (. for the current folder)")
    if has_control_character(path):
        raise UsageError(
            f"{flag} {path!r} contains a control character (e.g. a newline); give the path "
            "without it"
        )
    return Path(path)


def output_folder(path: str, flag: str = "--out") -> Path:
    """``--out``: a folder the command can write in, checked before any work starts; the
    writers make it when they write (a file there is a one-line error)."""
    folder = checked_path(path, flag)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{flag} {path} is a file; give a folder for the outputs")
    _check_writable(folder, flag, path)
    return folder


def output_file(path: str, example: str, flag: str = "--out") -> Path:
    """``--out``: a file the command can write, checked before any work starts (a folder
    there is a one-line error naming ``example``, a file name to give inside it)."""
    file = checked_path(path, flag)
    if file.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file name, e.g. {file / example}")
    _check_writable(file.parent, flag, path)
    return file


def _check_writable(folder: Path, flag: str, given: str) -> None:
    """Make ``folder`` and a file in it for real, then remove what the check made: only
    trying says whether a path can be written (root ignores permission bits, not a
    read-only filesystem), and a command refused later must leave no folder behind."""
    made: list[Path] = []
    try:
        missing, existing = [], folder
        while not existing.exists():
            missing.append(existing)
            existing = existing.parent
        if not existing.is_dir():
            raise UsageError(
                f"{flag} {given}: {existing} is a file, not a folder; give a path in a folder"
            )
        for step in reversed(missing):
            step.mkdir()
            made.append(step)
        fd, probe = tempfile.mkstemp(prefix=".memtail-", suffix=".check", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise UsageError(
            f"{flag} {given}: cannot write there ({reason}); give a folder you can write to"
        ) from None
    finally:
        for step in reversed(made):
            with contextlib.suppress(OSError):
                step.rmdir()


@contextlib.contextmanager
def undone_if_refused(folder: Path, files: tuple[str, ...]) -> Iterator[None]:
    """Inside: work that may still refuse the command (the spec checked against its data,
    the model's size). If it raises, ``files`` in ``folder`` that did not exist before
    (a database it created, with SQLite's side files) and the folders it made are
    removed again, so a refused command leaves nothing behind; existing ones are kept."""
    missing, existing = [], folder
    while not existing.exists():
        missing.append(existing)
        existing = existing.parent
    new = [folder / name for name in files if not (folder / name).exists()]
    try:
        yield
    except BaseException:
        for file in new:
            for path in (file, *(file.with_name(file.name + s) for s in _SIDE_FILES)):
                with contextlib.suppress(OSError):
                    path.unlink()
        for step in missing:
            with contextlib.suppress(OSError):
                step.rmdir()  # only if empty: something else written there stays
        raise


#: SQLite's files beside a database (rollback journal, write-ahead log, shared memory).
_SIDE_FILES = ("-journal", "-wal", "-shm")


def open_engine(settings: Settings) -> Engine:
    """The existing memtail database of ``settings``; a missing database, schema or server
    is a one-line ``DatabaseUnavailable`` naming it and the fix, and nothing is created."""
    from memtail.store.database import open_database

    return open_database(settings.database_url)


#: A spec field's dotted name, e.g. ``training.epochs``: ASCII parts, none empty.
_FIELD = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", re.ASCII)


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
        key = key.strip()
        if not _FIELD.fullmatch(key):
            raise ConfigError(
                f"--set {item!r}: {key!r} is not a spec field; give its dotted name, "
                "e.g. training.epochs (letters, digits and _, parts joined by single dots)"
            )
        overrides[key] = _parse_value(value.strip())
    return overrides


def load_spec_arg(source: str | None, args: argparse.Namespace) -> ExperimentSpec:
    """The spec of a file or bundled name (or of flags alone, when ``source`` is None),
    with its dataset and model checked against what this installation can train."""
    from memtail.specification import load_spec, spec_from_dict

    overrides = spec_overrides(args)
    spec = spec_from_dict({}, overrides) if source is None else load_spec(source, overrides)
    # The registry loads torch: imported once the spec's own fields are good.
    from memtail.training.registry import check_names

    return check_names(spec)
