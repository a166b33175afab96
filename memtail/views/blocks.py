"""The blocks a page is made of: sections with numbers, tables and inline images.

The report and the dashboard render the same ``Section``s (``memtail/views/templates``).
A section holds the trials behind it, a one-line "what this shows", figures as PNG data
URIs (inline, so a report file opens offline), tables and named numbers. A number's
``metric`` is written on the page as ``data-metric``, so a reader (or a test) can find
it and check it against SQL.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from matplotlib.figure import Figure

from memtail.views.figures import png_bytes


@dataclass(frozen=True)
class Number:
    label: str
    value: str
    metric: str = ""


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    alt: str
    uri: str  # data:image/png;base64,...


@dataclass
class Section:
    key: str
    title: str
    what: str  # one line: what this shows
    trials: int | None  # trials behind it (None: not a count of trials)
    numbers: list[Number] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    note: str = ""  # what the error bars mean, caveats


def inline(fig: Figure, alt: str) -> Image:
    """A figure as an inline PNG."""
    return Image(alt, "data:image/png;base64," + base64.b64encode(png_bytes(fig)).decode())


def share_text(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}%}"
