"""Figures read at the size a page shows them: image-grid captions of at least 10 px that
never overlap, and histogram count axes labelled in plain numbers."""

from __future__ import annotations

import re
from itertools import combinations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from memtail.store.outcomes import HeldOutPredictions
from memtail.store.pairs import InfluencePair
from memtail.store.results import MemorizedExample
from memtail.views import figures, gallery

#: The smallest caption, in pixels on the page, that reads without zooming.
LEGIBLE_PX = 10.0

RNG = np.random.default_rng(0)
X_TRAIN = RNG.normal(size=(200, 1, 8, 8)).astype(np.float32)
X_TEST = RNG.normal(size=(50, 1, 8, 8)).astype(np.float32)


def _example(i: int, mem: float) -> MemorizedExample:
    return MemorizedExample(i, i % 10, None, mem, mem - 0.31, min(mem + 0.27, 1.0), 12, 11)


def _pair(i: int) -> InfluencePair:
    return InfluencePair(100 + i, i, 3, 3, 0.75, 0.62, 0.14, 0.81, 0.01)


def _memorized() -> Figure:
    top = [_example(1000 + i, 0.9 - i / 50) for i in range(24)]
    typical = [_example(i, 0.0) for i in range(10)]
    said = HeldOutPredictions(
        np.array([r.example_index for r in top]),
        np.full(24, 5),
        np.full(24, 0.833),
        np.full(24, 120),
    )
    # Indices past the arrays' ends would fail: the grid only indexes what it is given.
    x = np.concatenate([X_TRAIN] * 6)
    classes = ["automobile"] * 10  # CIFAR-10's longest class name
    return gallery.memorized_grid(x, top, said, typical, "title; 24 trials", classes)


def _pairs() -> Figure:
    pairs = [_pair(i) for i in range(8)]
    return gallery.pairs_grid(X_TRAIN, X_TEST, pairs, "title; 24 trials", ["automobile"] * 10)


@pytest.mark.parametrize("draw", [_memorized, _pairs], ids=["memorized", "pairs"])
def test_grid_captions_are_legible_on_the_page(draw: object) -> None:
    fig = draw()  # type: ignore[operator]
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    # A page shows a figure at its natural size up to PAGE_WIDTH, and scales wider ones down.
    shown = min(1.0, figures.PAGE_WIDTH / fig.get_figwidth())
    captions = [ax.title for ax in fig.axes if ax.title.get_text()]
    assert len(captions) >= 16
    for caption in captions:
        px = caption.get_fontsize() * figures.DPI / 72 * shown
        assert px >= LEGIBLE_PX, (caption.get_text(), px)
    boxes = [c.get_window_extent(renderer) for c in captions]
    for (a, ta), (b, tb) in combinations(zip(boxes, captions, strict=True), 2):
        assert not a.overlaps(b), (ta.get_text(), tb.get_text())


def _labels(fig: Figure) -> list[str]:
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    texts = ax.get_yticklabels() + ax.get_yticklabels(minor=True)
    return [t.get_text() for t in texts if t.get_text() and t.get_visible()]


def test_a_narrow_influence_histogram_has_plain_count_labels() -> None:
    # Bars of 1 to 4 pairs: a log axis would label its minor ticks 2x10^0 ... 4x10^0.
    fig = figures.influence_figure(RNG.uniform(0.15, 0.9, 60), 0.15, 24, 3.2, "digits")
    labels = _labels(fig)
    assert fig.axes[0].get_yscale() == "linear"
    assert labels and all(re.fullmatch(r"\d+", t) for t in labels), labels


def test_a_long_tailed_histogram_keeps_a_log_axis_with_plain_labels() -> None:
    infl = np.concatenate([RNG.exponential(0.05, 20_000) + 0.15, [0.85, 0.88]])
    fig = figures.influence_figure(infl, 0.15, 24, None, "digits")
    labels = _labels(fig)
    assert fig.axes[0].get_yscale() == "log"
    assert {"1", "10", "100", "1,000"} <= set(labels), labels
    assert all(re.fullmatch(r"[\d,.]+", t) for t in labels), labels
    assert "log scale" in fig.axes[0].get_ylabel()
