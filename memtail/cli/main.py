"""``memtail``: run a command, and turn every user mistake into one line.

User mistakes (bad spec fields, missing datasets or databases, unknown experiments, bad
settings) become ``memtail: error: ...`` with exit status 2 and nothing written. Ctrl-C
and SIGTERM end a command with one line saying what was kept and exit status 130. The
grammar is ``memtail.cli.parser``; the commands are in ``commands`` (processes),
``lifecycle`` (experiments), ``results`` and ``analyses``.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from memtail.cli.arguments import Interrupted
from memtail.cli.parser import build_parser
from memtail.config import ConfigError


def _user_errors() -> tuple[type[BaseException], ...]:
    from memtail.analyses.comparison import ComparisonError
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

    return (
        ConfigError,
        SpecError,
        DatasetError,
        ModelError,
        ExperimentNotFound,
        ComparisonError,
        RemovalError,
        DatabaseUnavailable,
        ConcurrentChange,
        UsageError,
        ExportError,
        NothingToPlot,
        FileNotFoundError,
    )


def _database_error() -> type[BaseException]:
    from memtail.store.engine import DatabaseError

    return DatabaseError


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    # SIGTERM ends a command the way Ctrl-C does: cleanly, with one line.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "coordinator" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command != "coordinator":  # the coordinator stops gracefully on SIGTERM itself
        signal.signal(signal.SIGTERM, _terminate)
    module, _, name = args.handler.partition(":")
    handler = getattr(importlib.import_module(f"memtail.cli.{module}"), name)
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("\nmemtail: interrupted", file=sys.stderr)
        return 130
    except Interrupted as stop:
        print(f"\nmemtail: interrupted: {stop}", file=sys.stderr)
        return 130
    except _user_errors() as error:
        print(f"memtail: error: {error}", file=sys.stderr)
        return 2
    except _database_error() as error:
        # A server that went away mid-command: not the user's mistake, but no traceback.
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        print(f"memtail: error: the database failed ({cause}); try again", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
