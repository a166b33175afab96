"""PNG files of an experiment's results, for ``memtail plot``, ``compare``, ``stability``,
``utility`` and ``depth``: the figures of ``memtail.views.figures`` and
``memtail.views.gallery`` (the report's and the dashboard's too), saved to a folder.

* ``<name>-memorization.png``: the distribution of mem, and every example ranked by mem
  with its interval;
* ``<name>-top.png`` (image datasets): the most memorized training images with label,
  mem, interval and what held-out models predict, above typical images of their classes;
* ``<name>-pairs.png`` (image datasets): the strongest high-influence pairs, train image
  above the test image it influences, with labels, infl and its interval.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from memtail.analyses.depth import Depth
from memtail.analyses.removal import ArmReport
from memtail.records import Experiment
from memtail.stats.consistency import Agreement
from memtail.store.engine import Engine
from memtail.store.outcomes import held_out_predictions
from memtail.store.pairs import high_influence_pairs
from memtail.store.results import (
    latest_run,
    memorization_values,
    top_memorized,
    typical_examples,
)
from memtail.views import figures, gallery
from memtail.views.figures import NothingToPlot

__all__ = [
    "NothingToPlot",
    "file_stem",
    "plot_agreement",
    "plot_depth",
    "plot_experiment",
    "plot_utility",
]


def file_stem(name: str) -> str:
    """A file name made of an experiment's name that stays inside its folder: names are
    validated at create, but a database may hold older ones with any character."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "experiment"


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=figures.DPI)
    return path


def plot_experiment(
    engine: Engine, experiment: Experiment, out: str | Path, images: object | None = None
) -> list[Path]:
    """Write the plots to ``out``; ``images`` is a loaded Dataset for the image grids.

    An experiment without estimates raises NothingToPlot: an empty figure says nothing.
    """
    values = memorization_values(engine, experiment.id)
    run = latest_run(engine, experiment.id)
    if values.mem.size == 0 or run is None:
        raise NothingToPlot(
            f"{experiment.name!r} has no memorization estimates yet (no trial succeeded, or "
            f"none was estimated): `memtail status {experiment.name}` says which"
        )
    out, stem, k = Path(out), file_stem(experiment.name), run.trials_used
    rule = experiment.spec.estimate
    fig = figures.memorization_figure(
        values, rule.mem_threshold, k, rule.confidence, experiment.name
    )
    written = [_save(fig, out / f"{stem}-memorization.png")]
    x_train = getattr(images, "x_train", None)
    if not gallery.is_image_data(x_train):
        return written
    top = top_memorized(engine, experiment.id, 24)
    said = held_out_predictions(
        engine, experiment, np.array([r.example_index for r in top], dtype=np.int64)
    )
    typical = typical_examples(engine, experiment.id, sorted({r.label for r in top}))
    title = f"{experiment.name}: most memorized (top), typical of their classes; {k} trials"
    fig = gallery.memorized_grid(x_train, top, said, typical, title)
    written.append(_save(fig, out / f"{stem}-top.png"))
    pairs = high_influence_pairs(engine, experiment.id, 8)
    if pairs:
        title = f"{experiment.name}: high-influence pairs (train above, test below); {k} trials"
        fig = gallery.pairs_grid(x_train, getattr(images, "x_test", None), pairs, title)
        written.append(_save(fig, out / f"{stem}-pairs.png"))
    return written


def plot_agreement(
    mem_a: np.ndarray,
    mem_b: np.ndarray,
    agreement: Agreement,
    names: tuple[str, str],
    path: Path,
    trials: tuple[int, int] = (0, 0),
) -> Path:
    """``memtail compare`` / ``stability``: mem of A against mem of B, one dot per example."""
    return _save(figures.agreement_figure(mem_a, mem_b, agreement, names, trials), path)


def plot_utility(reports: list[ArmReport], n_influenced: int, title: str, path: Path) -> Path:
    """``memtail utility``: test accuracy per removal arm, overall and on influenced examples."""
    return _save(figures.utility_figure(reports, n_influenced, title), path)


def plot_depth(depth: Depth, path: Path) -> Path:
    """``memtail depth``: memorization of the network and of its probe, overlaid."""
    return _save(figures.depth_figure(depth), path)
