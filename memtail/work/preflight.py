"""Whether this process's surroundings can run any trial at all, asked once as a worker
or an embedded run starts, before it claims anything.

A setting that no trial can get past (a GPU asked for on a host without one, an
artifact folder nothing can be written to) would otherwise surface inside every trial,
each claimed and failed up to MEMTAIL_MAX_ATTEMPTS times, leaving an experiment full of
failed trials for an environment's mistake. ``check`` refuses the process instead, with
one ``ConfigError`` naming the variable and the fix. What can be judged from the text
alone (a device's spelling, the database URL's scheme) is ``Settings.validate``'s; what
needs torch or the file system is here, in the layer that may import them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from memtail.config import ConfigError, Settings

__all__ = ["check"]


def check(settings: Settings, *, trains: bool = True, estimates: bool = True) -> None:
    """Raise ConfigError if no trial (``trains``) or no estimate (``estimates``) could run
    here with ``settings``. A process checks only the devices of the work it takes: a
    trial worker on a CPU host shares its environment with a GPU estimator."""
    # A flag such as --database-url replaces a field after from_env validated it.
    settings.validate()
    if trains:
        _device("MEMTAIL_DEVICE", settings.device)
    if estimates:
        _device("MEMTAIL_ESTIMATOR_DEVICE", settings.estimator_device)
    if settings.artifact_folder is not None:
        _writable(settings.artifact_folder)


def _device(variable: str, name: str) -> None:
    # "auto" falls back to the CPU, and the CPU is always there: torch (seconds to import)
    # is loaded only when a device that may be missing is named.
    if name in ("auto", "cpu"):
        return
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"{variable}={name!r} is not a torch device; use auto, cpu or cuda:N"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                f"{variable}={name}: torch sees no CUDA GPU on this host; set {variable}=cpu "
                "(or auto), or run on a host with a GPU and a CUDA build of torch"
            )
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"{variable}={name}: this host has {count} CUDA GPU(s), cuda:0 to "
                f"cuda:{count - 1}; set {variable} to one of them (or auto)"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"{variable}={name}: Apple's GPU (mps) is not available here; set {variable}=cpu "
            "(or auto)"
        )


def _writable(folder: Path) -> None:
    """Create ``folder`` if missing and write and remove a file in it: as root, permission
    bits say nothing, so only a real write tells (a read-only mount, a path under a file)."""
    probe = folder / f".memtail-write-test-{uuid.uuid4().hex}"
    existed = folder.is_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with probe.open("xb") as file:
            file.write(b"memtail")
            os.fsync(file.fileno())
        probe.unlink()
    except OSError as error:
        if not existed:  # a refused process leaves nothing behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise ConfigError(
            f"MEMTAIL_ARTIFACTS={folder}: cannot write there ({error.strerror or error}); "
            "set it to a folder every worker can write, or unset it to keep artifacts in "
            "the database"
        ) from None
