"""The parts of the ``memtail`` command line's parser: one-line usage errors, help that
shows defaults, adding a command, and the values its flags take.

Flag values are checked as the command line is parsed: numbers in ASCII digits, within
their bounds, so a mistake is a one-line usage error before anything runs. The commands
themselves are ``memtail.cli.grammar``'s.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import NoReturn

# The spec's own bounds, not copies: memtail.specification loads neither torch nor
# SQLAlchemy, so --help stays light.
from memtail.specification import MAX_SEED, MAX_TRIALS

#: A command's handler: its parsed arguments in, the exit status out.
Handler = Callable[[argparse.Namespace], int]

FORMATS = ("table", "json", "csv")


class Parser(argparse.ArgumentParser):
    """Usage mistakes in one line, like every other memtail error, with where to look."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"memtail: error: {message}; see `{self.prog} --help`\n")


#: Numbers in ASCII only: int() and float() also take "٥" or "１", which no one types meaning 5.
_WHOLE = re.compile(r"[+-]?[0-9]{1,30}", re.ASCII)
_REAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(nan|inf)", re.ASCII)
#: More local worker processes than this only thrash (each holds a model and a dataset).
MAX_WORKERS = 1024
DAY = 86_400.0
#: Rows a table command shows at most; the files of `memtail export` hold them all.
LIMIT = 10_000_000


def whole(text: str) -> int:
    """A whole number in ASCII digits; its range is the spec's to check (naming the field)."""
    if not _WHOLE.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number (digits 0-9)")
    return int(text)


def real(text: str) -> float:
    """A number in ASCII; its range is the spec's to check (naming the field)."""
    if not _REAL.fullmatch(text.strip().lower()):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number, e.g. 0.25")
    return float(text)


def at_least(low: int, high: int = MAX_SEED, hint: str = "") -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = whole(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, got {value}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:,}, got {value:,}{hint}")
        return value

    return parse


def port(text: str) -> int:
    port = at_least(1)(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port, 1-65535, got {port}")
    return port


def seconds(high: float, low: float = 0.0) -> Callable[[str], float]:
    """Seconds in ``(0, high]``, and at least ``low`` where a shorter wait would only spin."""

    def parse(text: str) -> float:
        if not _REAL.fullmatch(text.strip().lower()):
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number of seconds")
        value = float(text)
        if not (0 < value <= high and value >= low):  # NaN fails too
            least = f"at least {low:g} and " if low else ""
            raise argparse.ArgumentTypeError(
                f"must be a positive number of seconds, {least}at most {high:,.0f}, got {text}"
            )
        return value

    return parse


#: Between refreshes (`status --watch`, the dashboard's pages): 1e-9 would poll the
#: database in a loop, and the pages' timer rounds anything under 1 ms to none at all.
refresh_seconds = seconds(DAY, low=0.1)
ROWS = at_least(1, LIMIT, " (`memtail export` writes them all)")
ARM_TRIALS = at_least(1, MAX_TRIALS, " (the bound of a spec's trials)")
WORKERS = at_least(0, MAX_WORKERS)


def threshold(text: str) -> float:
    value = real(text)
    if not (math.isfinite(value) and -1 <= value <= 1):
        raise argparse.ArgumentTypeError(
            f"must be in [-1, 1], as memorization is, got {text}; e.g. 0.25 (the paper's)"
        )
    return value


def host(text: str) -> str:
    from memtail.config import HOST_NAME

    if not HOST_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text[:60]!r} is not a host name or address; give one such as 127.0.0.1, "
            "0.0.0.0, ::1 or dashboard.example.org"
        )
    return text


class Help(argparse.HelpFormatter):
    """Shows a default wherever there is one worth showing (not None, False or a list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        hidden = default is None or default is False or default is argparse.SUPPRESS
        if not hidden and "%(default)" not in text and not isinstance(default, list):
            text += " (default: %(default)s)"
        return text


def command(
    sub: argparse._SubParsersAction, name: str, handler: Handler, text: str
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=text, description=text, formatter_class=Help)
    parser.set_defaults(handler=handler)
    return parser
