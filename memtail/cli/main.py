"""``memtail``: run a command, and turn every user mistake into one line.

User mistakes (bad spec fields, missing datasets or databases, unknown experiments, bad
settings) become ``memtail: error: ...`` with exit status 2 and nothing written. Ctrl-C
and SIGTERM end a command with one line saying what was kept, and exit status 130 (Ctrl-C)
or 143 (SIGTERM), as a shell reports a process those signals ended. The
grammar is ``memtail.cli.parser``; the commands are in ``commands`` (processes),
``lifecycle`` (experiments), ``results`` and ``analyses``.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import traceback
from collections.abc import Sequence
from types import FrameType

from memtail.cli.arguments import Interrupted, Terminated, TrialsFailed
from memtail.cli.parser import build_parser
from memtail.config import ConfigError


def _user_errors() -> tuple[type[BaseException], ...]:
    from memtail.analyses.comparison import ComparisonError
    from memtail.analyses.depth import DepthError
    from memtail.analyses.removal import RemovalError
    from memtail.cli.arguments import UsageError
    from memtail.spec import SpecError
    from memtail.store.database import DatabaseUnavailable
    from memtail.store.experiments import ExperimentNotFound
    from memtail.store.lifecycle import ConcurrentChange
    from memtail.training.datasets import DatasetError
    from memtail.training.networks import ModelError
    from memtail.views.export import ExportError
    from memtail.views.plots import NothingToPlot
    from memtail.work.broker import BrokerUnavailable
    from memtail.work.slurm import SlurmError

    return (
        ConfigError,
        SpecError,
        DatasetError,
        ModelError,
        ExperimentNotFound,
        ComparisonError,
        DepthError,
        RemovalError,
        DatabaseUnavailable,
        ConcurrentChange,
        UsageError,
        ExportError,
        NothingToPlot,
        BrokerUnavailable,
        SlurmError,
        FileNotFoundError,
    )


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
    """Runs that went wrong through no mistake in the command: exit status 1."""
    from memtail.store.engine import DatabaseError
    from memtail.work.pool import WorkerDeaths

    return (TrialsFailed, WorkerDeaths, DatabaseError)


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
    module, _, name = args.handler.partition(":")
    handler = getattr(importlib.import_module(f"memtail.cli.{module}"), name)
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
