"""Image grids of training and test examples, as in Feldman & Zhang's figures: the most
memorized examples beside typical ones of their classes, and high-influence pairs.

Each tile names the example, its label and its estimate with the interval; a memorized
tile also says what models that never saw it took it for (the class they predicted most
often, and how often), which is usually why it had to be memorized.

Grids are at most ``figures.PAGE_WIDTH`` wide, so that a page shows them at their natural
size: a wider grid is scaled down to the page, and its captions with it (a 16-inch grid
had 6 px captions). More tiles wrap onto more lines instead.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from memtail.store.outcomes import HeldOutPredictions
from memtail.store.pairs import InfluencePair
from memtail.store.results import MemorizedExample
from memtail.views.figures import PAGE_WIDTH

RED, GREY = "#c0392b", "#555555"
#: Captions in points: 12 px at the figures' 110 dpi, shown at natural size.
CAPTION = 8.0


def is_image_data(x: object) -> bool:
    """Images are (n, channels, height, width); anything else gets tables instead."""
    return getattr(x, "ndim", 0) == 4


def _as_numpy(x: object) -> np.ndarray:
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)  # type: ignore[union-attr]


def _show(ax: Axes, image: np.ndarray) -> None:
    # Per-image min-max scaling undoes the dataset normalization for display.
    image = np.moveaxis(image, 0, -1).astype(np.float32)
    image = (image - image.min()) / max(float(image.max() - image.min()), 1e-8)
    ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
    ax.set_xticks([])
    ax.set_yticks([])


def _name(label: int, classes: list[str] | None) -> str:
    if classes and 0 <= label < len(classes):
        return f"{label} {classes[label]}"
    return str(label)


def memorized_grid(
    x_train: object,
    top: list[MemorizedExample],
    predictions: HeldOutPredictions | None,
    typical: list[MemorizedExample],
    title: str,
    classes: list[str] | None = None,
    cols: int = 6,
) -> Figure:
    """The most memorized examples, then (below a gap) typical examples of their classes."""
    x = _as_numpy(x_train)
    said = {} if predictions is None else predictions.by_index()
    top_lines = max(1, -(-len(top) // cols))
    typical_lines = -(-len(typical) // cols)
    lines = top_lines + typical_lines
    # Three caption lines of about 24 characters fit a tile 1.6 inches wide.
    fig = Figure(figsize=(min(cols * 1.6, PAGE_WIDTH), lines * 2.4 + 0.6))
    axes = fig.subplots(lines, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes[:top_lines].flat, top, strict=False):
        ax.axis("on")
        _show(ax, x[row.example_index])
        text = (
            f"#{row.example_index} y={_name(row.label, classes)}\n"
            f"mem {row.mem:.2f} [{row.ci_low:.2f}, {row.ci_high:.2f}]"
        )
        if row.example_index in said:
            p, share, n = said[row.example_index]
            # A class's name would widen the line past the tile: its share goes below.
            wrap = "\n" if classes else " "
            text += f"\nheld out: {_name(p, classes)}{wrap}({share:.0%} of {n})"
        ax.set_title(text, fontsize=CAPTION, color=RED if row.mem >= 0 else GREY)
    for ax, row in zip(axes[top_lines:].flat, typical, strict=False):
        ax.axis("on")
        _show(ax, x[row.example_index])
        ax.set_title(
            f"#{row.example_index} y={_name(row.label, classes)}\ntypical: mem {row.mem:.2f}",
            fontsize=CAPTION,
            color=GREY,
        )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def pairs_grid(
    x_train: object,
    x_test: object,
    pairs: list[InfluencePair],
    title: str,
    classes: list[str] | None = None,
    cols: int = 4,
) -> Figure:
    """High-influence pairs: each train image above the test image it influences, ``cols``
    pairs to a line."""
    a, b = _as_numpy(x_train), _as_numpy(x_test)
    cols = max(1, min(cols, len(pairs)))
    lines = max(1, -(-len(pairs) // cols))
    fig = Figure(figsize=(min(max(cols, 2) * 2.2, PAGE_WIDTH), lines * 5.0 + 0.5))
    axes = fig.subplots(2 * lines, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for n, row in enumerate(pairs):
        line, col = divmod(n, cols)
        top, bottom = axes[2 * line][col], axes[2 * line + 1][col]
        top.axis("on")
        bottom.axis("on")
        _show(top, a[row.train_index])
        top.set_title(
            f"train #{row.train_index}\ny={_name(row.train_label, classes)} mem {row.mem:.2f}",
            fontsize=CAPTION,
        )
        _show(bottom, b[row.test_index])
        bottom.set_title(
            f"test #{row.test_index} y={_name(row.test_label, classes)}\ninfl "
            f"{row.infl:.2f} [{row.infl_ci_low:.2f}, {row.infl_ci_high:.2f}]",
            fontsize=CAPTION,
        )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(h_pad=1.5)
    return fig
