"""A worker told to stop hands its trial back instead of losing it.

SLURM (at its time limit, or ``--signal``), Kubernetes and spot-instance notices send
SIGTERM and then, a grace period later, SIGKILL. ``install`` makes SIGTERM (and a local
worker's SIGINT, the Ctrl-C its parent passes on) a request while
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


def install(grace_seconds: float, signals: tuple[int, ...] = (signal.SIGTERM,)) -> None:
    """Make each of ``signals`` (SIGTERM; a local worker also takes the SIGINT its parent
    passes on after a Ctrl-C) a stop request in this process (its main thread must run
    the trials). The warning names the signal that arrived."""
    for signum in signals:
        _install_one(signum, grace_seconds)


def _install_one(signum: int, grace_seconds: float) -> None:
    before = signal.getsignal(signum)
    if before is signal.default_int_handler:
        # Its KeyboardInterrupt would be a traceback in a worker: end as the signal would.
        before = signal.SIG_DFL
    name = signal.Signals(signum).name

    def on_signal(received: int, frame: FrameType | None) -> None:
        if not _training.is_set():
            _requested.set()
            if callable(before):  # e.g. a process pool's own exit handler
                before(received, frame)
                return
            signal.signal(received, signal.SIG_DFL)
            os.kill(os.getpid(), received)
            return
        if _requested.is_set():
            return
        _requested.set()
        log.warning(
            "%s: saving the trial in progress and handing it back (at most %.0f s)",
            name,
            grace_seconds,
        )
        deadline = threading.Timer(grace_seconds, os._exit, args=(128 + received,))
        deadline.daemon = True
        deadline.start()

    signal.signal(signum, on_signal)
