"""``memtail report``: one self-contained HTML file of one or more experiments' findings.

Every figure is an inline PNG and the styles are inline, so the file opens offline and
can be mailed or attached to a paper's supplement. It is built from the stored tables
only (plus the dataset's images, when they are on this machine) and written atomically:
a reader never sees half a report.

The images come through an ``ImageLoader`` that the caller passes in: loading a dataset
needs torch, and drawing stored results must not (an import contract keeps torch out of
``memtail.views``), so the command line, which may load anything, provides the loader.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import jinja2

import memtail
from memtail.analyses.findings import gather_all
from memtail.records import Experiment
from memtail.store.engine import Engine
from memtail.views import studies
from memtail.views.pages import experiment_page

TEMPLATES = Path(__file__).with_name("templates")

#: An experiment's dataset for its image grids (anything with ``x_train`` and ``x_test``
#: of shape (n, channels, height, width)), or None where its files are not on this machine:
#: the pages then show tables only, and datasets are never downloaded for a page.
ImageLoader = Callable[[Experiment], object | None]


def no_images(_experiment: Experiment) -> None:
    """The loader of a page drawn without images."""
    return None


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )


def render_report(
    engine: Engine,
    experiments: list[Experiment],
    database: str,
    *,
    images: ImageLoader = no_images,
    stability: bool = True,
    step: Callable[[str], None] | None = None,
) -> str:
    """The report's HTML; ``images`` loads each dataset once, ``step`` is told what is
    being done, for progress."""
    say = step or (lambda _: None)
    say("reading the estimates")
    gathered = gather_all(engine, experiments, stability=stability)
    pages = []
    loaded: dict[str, object | None] = {}
    for findings in gathered.findings:
        say(f"drawing {findings.experiment.name}")
        key = repr(findings.experiment.spec.dataset)
        if key not in loaded:
            loaded[key] = images(findings.experiment)
        pages.append(experiment_page(findings, loaded[key]))
    confidence = experiments[0].spec.estimate.confidence if experiments else 0.95
    return (
        environment()
        .get_template("report.html")
        .render(
            title="memtail report: " + ", ".join(e.name for e in experiments),
            heading="memtail report",
            pages=pages,
            comparisons=[studies.comparison(c) for c in gathered.comparisons],
            database=database,
            confidence=f"{confidence:.0%}",
            version=memtail.__version__,
            generated=datetime.now(UTC).strftime("generated %Y-%m-%d %H:%M UTC"),
        )
    )


def write_report(html: str, out: str | Path) -> Path:
    """Write ``html`` to ``out`` atomically (a temporary file beside it, then a rename)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
