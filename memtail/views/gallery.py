"""Image grids of training and test examples, as in Feldman & Zhang's figures: the most
memorized examples beside typical ones of their classes, and high-influence pairs.

Each tile names the example, its label and its estimate with the interval; a memorized
tile also says what models that never saw it took it for (the class they predicted most
often, and how often), which is usually why it had to be memorized.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from memtail.store.outcomes import HeldOutPredictions
from memtail.store.results import InfluencePair, MemorizedExample

RED, GREY = "#c0392b", "#555555"


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
    cols: int = 8,
) -> Figure:
    """The most memorized examples, then (below a gap) typical examples of their classes."""
    x = _as_numpy(x_train)
    said = {} if predictions is None else predictions.by_index()
    top_lines = max(1, -(-len(top) // cols))
    typical_lines = -(-len(typical) // cols)
    lines = top_lines + typical_lines
    fig = Figure(figsize=(cols * 1.9, lines * 2.5 + 0.6))
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
            text += f"\nheld out: {_name(p, classes)} ({share:.0%} of {n})"
        ax.set_title(text, fontsize=8, color=RED if row.mem >= 0 else GREY)
    for ax, row in zip(axes[top_lines:].flat, typical, strict=False):
        ax.axis("on")
        _show(ax, x[row.example_index])
        ax.set_title(
            f"#{row.example_index} y={_name(row.label, classes)}\ntypical: mem {row.mem:.2f}",
            fontsize=8,
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
) -> Figure:
    """High-influence pairs: each train image above the test image it influences."""
    a, b = _as_numpy(x_train), _as_numpy(x_test)
    fig = Figure(figsize=(max(len(pairs), 2) * 2.0, 5.4))
    axes = fig.subplots(2, max(len(pairs), 1), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for col, row in enumerate(pairs):
        top, bottom = axes[0][col], axes[1][col]
        top.axis("on")
        bottom.axis("on")
        _show(top, a[row.train_index])
        top.set_title(
            f"train #{row.train_index}\ny={_name(row.train_label, classes)} mem {row.mem:.2f}",
            fontsize=8,
        )
        _show(bottom, b[row.test_index])
        bottom.set_title(
            f"test #{row.test_index} y={_name(row.test_label, classes)}\ninfl "
            f"{row.infl:.2f} [{row.infl_ci_low:.2f}, {row.infl_ci_high:.2f}]",
            fontsize=8,
        )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(h_pad=2.0)
    return fig
