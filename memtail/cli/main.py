"""``memtail``: run a command, and turn every user mistake into one line.

User mistakes (bad spec fields, missing datasets or databases, unknown experiments, bad
settings) become ``memtail: error: ...`` with exit status 2 and nothing written. Ctrl-C
and SIGTERM end a command with one line saying what was kept, and exit status 130 (Ctrl-C)
or 143 (SIGTERM), as a shell reports a process those signals ended. The
grammar is ``memtail.cli.grammar``; the commands are in ``commands`` (processes),
``lifecycle`` (experiments), ``results`` and ``analyses``.
"""

from __future__ import annotations

import logging
import signal
import sys
import traceback
from collections.abc import Sequence
from types import FrameType

from memtail.cli.arguments import Interrupted, Terminated
from memtail.cli.grammar import build_parser

# Where each kind of user mistake is defined. An error can only have been raised by a
# module that is loaded, so the handler looks only at loaded modules: importing them all
# to catch a mistake would load torch, matplotlib and Celery (seconds and hundreds of MB)
# just to print one line.
_USER_ERRORS = (
    ("memtail.config", "ConfigError"),
    ("memtail.specification", "SpecError"),
    ("memtail.training.datasets", "DatasetError"),
    ("memtail.training.networks", "ModelError"),
    ("memtail.store.experiments", "ExperimentNotFound"),
    ("memtail.analyses.comparison", "ComparisonError"),
    ("memtail.analyses.depth", "DepthError"),
    ("memtail.analyses.removal", "RemovalError"),
    ("memtail.store.database", "DatabaseUnavailable"),
    ("memtail.store.lifecycle", "ConcurrentChange"),
    ("memtail.cli.arguments", "UsageError"),
    ("memtail.views.export", "ExportError"),
    ("memtail.views.figures", "NothingToPlot"),
    ("memtail.work.broker", "BrokerUnavailable"),
    ("memtail.work.slurm", "SlurmError"),
)
# Runs that went wrong through no mistake in the command: exit status 1.
_FAILURES = (
    ("memtail.work.session", "TrialsFailed"),
    ("memtail.work.pool", "WorkerDeaths"),
    ("memtail.store.engine", "DatabaseError"),
)


def _loaded(names: tuple[tuple[str, str], ...]) -> tuple[type[BaseException], ...]:
    """The named exception classes whose modules are loaded (nothing is imported); a
    module still being imported may not define its class yet."""
    found = (getattr(sys.modules.get(m), n, None) for m, n in names)
    return tuple(c for c in found if c is not None)


def _user_errors() -> tuple[type[BaseException], ...]:
    return (*_loaded(_USER_ERRORS), FileNotFoundError)


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    # SIGTERM ends a command the way Ctrl-C does: cleanly, with one line. Recorded too:
    # an exception raised while the interpreter runs a finalizer is swallowed, and a
    # long loop then notices the record instead (memtail.work.embedded).
    from memtail.work import preemption

    preemption.request()
    raise Terminated


def _signal_status(stop: BaseException | None) -> int:
    """128 + the signal's number, as a shell reports a process it ended."""
    return 128 + (signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)


def _failures() -> tuple[type[BaseException], ...]:
    return _loaded(_FAILURES)


def _one_line(error: BaseException) -> str:
    cause = getattr(error, "orig", None) or error  # a driver's own message, not SQLAlchemy's
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "coordinator" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Alembic's start-up notes are for its own command line, not for every memtail command.
    logging.getLogger("alembic").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    if args.command != "coordinator":  # the coordinator stops gracefully on SIGTERM itself
        signal.signal(signal.SIGTERM, _terminate)
    handler = args.handler
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt as stop:
        print("\nmemtail: interrupted", file=sys.stderr)
        return _signal_status(stop)
    except Interrupted as stop:
        print(f"\nmemtail: interrupted: {stop}", file=sys.stderr)
        return _signal_status(stop.__cause__)
    except _user_errors() as error:
        _explain(error, args.verbose)
        return 2
    except _failures() as error:
        _explain(error, args.verbose)
        return 1


def _explain(error: BaseException, verbose: bool) -> None:
    """One line on standard error; with -v the traceback above it, for those who want it."""
    if verbose:
        traceback.print_exception(error, file=sys.stderr)
    print(f"memtail: error: {_one_line(error)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
