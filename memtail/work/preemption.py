"""A worker told to stop hands its trial back instead of losing it.

SLURM (at its time limit, or ``--signal``), Kubernetes and spot-instance notices send
SIGTERM and then, a grace period later, SIGKILL. ``install`` makes SIGTERM a request while
the process trains a trial (inside ``trial()``): the trial saves its training state at its
next step and goes back to pending without counting a failed attempt
(``memtail.work.runner``), and the worker then takes no further trial. Should that take
longer than ``grace_seconds`` (a step that never ends, a database that does not answer),
the worker exits anyway with 143, as SIGTERM would have; its trial's lease then expires
and the trial is retried from its last checkpoint. Outside a trial, SIGTERM ends the
process at once, as it would without memtail (through the handler it replaced, if any):
there is nothing to save.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

log = logging.getLogger(__name__)

_requested = threading.Event()
_training = threading.Event()


def requested() -> bool:
    """Whether this process was told to stop."""
    return _requested.is_set()


def request() -> None:
    """Record that this process was told to stop (a command's own SIGTERM handler does,
    so that loops can notice it even where the handler's exception was swallowed)."""
    _requested.set()


@contextlib.contextmanager
def trial() -> Iterator[None]:
    """While inside, SIGTERM is a request to save the trial and hand it back."""
    _training.set()
    try:
        yield
    finally:
        _training.clear()


def install(grace_seconds: float) -> None:
    """Make SIGTERM a stop request in this process (its main thread must run the trials)."""

    before = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: FrameType | None) -> None:
        if not _training.is_set():
            _requested.set()
            if callable(before):  # e.g. a process pool's own exit handler
                before(signum, frame)
                return
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if _requested.is_set():
            return
        _requested.set()
        log.warning(
            "SIGTERM: saving the trial in progress and handing it back (at most %.0f s)",
            grace_seconds,
        )
        deadline = threading.Timer(grace_seconds, os._exit, args=(128 + signal.SIGTERM,))
        deadline.daemon = True
        deadline.start()

    signal.signal(signal.SIGTERM, on_term)
