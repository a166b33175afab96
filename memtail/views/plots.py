"""PNG plots of an experiment's results: what people look at instead of tables.

* ``<name>-memorization.png``: the distribution of mem with its intervals' widths, and mem
  against how often the example was correct when held out (acc_out), the paper's view of
  "memorized = right when trained on, wrong otherwise";
* ``<name>-top.png`` (image datasets): the most memorized training images with label,
  mem and 95% interval;
* ``<name>-pairs.png`` (image datasets): the strongest high-influence pairs, train image
  above the test image it influences, as in Feldman & Zhang's figures.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from memtail.analyses.depth import Depth  # noqa: E402
from memtail.analyses.removal import ArmReport  # noqa: E402
from memtail.stats.consistency import Agreement  # noqa: E402
from memtail.store.engine import Engine  # noqa: E402
from memtail.store.experiments import Experiment  # noqa: E402
from memtail.store.results import (  # noqa: E402
    MemorizationValues,
    high_influence_pairs,
    memorization_values,
    top_memorized,
)


def file_stem(name: str) -> str:
    """A file name made of an experiment's name that stays inside its folder: names are
    validated at create, but a database may hold older ones with any character."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "experiment"


class NothingToPlot(ValueError):
    """There is no data for the figure; the message says why and what to run."""


def plot_experiment(
    engine: Engine, experiment: Experiment, out: str | Path, images: object | None = None
) -> list[Path]:
    """Write the plots to ``out``; ``images`` is a loaded Dataset for the image grids.

    An experiment without estimates raises NothingToPlot: an empty figure says nothing.
    """
    values = memorization_values(engine, experiment.id)
    if values.mem.size == 0:
        raise NothingToPlot(
            f"{experiment.name!r} has no memorization estimates yet (no trial succeeded, or "
            f"none was estimated): `memtail status {experiment.name}` says which"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [_distribution(experiment, values, out)]
    x_train = getattr(images, "x_train", None)
    if x_train is not None and x_train.ndim == 4:
        written.append(_top_images(engine, experiment, images, out))
        pairs = _pair_images(engine, experiment, images, out)
        if pairs is not None:
            written.append(pairs)
    return written


def _distribution(experiment: Experiment, values: MemorizationValues, out: Path) -> Path:
    mem, acc_out = values.mem, values.acc_out
    width = values.ci_high - values.ci_low
    threshold = experiment.spec.estimate.mem_threshold
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.hist(mem, bins=50, color="#3b6ea5")
    left.set_yscale("log")
    left.axvline(threshold, color="#c0392b", linestyle="--", label=f"mem = {threshold}")
    left.set_xlabel("memorization estimate")
    left.set_ylabel("train examples (log scale)")
    left.legend()
    median = float(np.median(width)) if width.size else float("nan")
    left.set_title(f"{(mem >= threshold).sum()} of {mem.size} examples memorized")
    right.scatter(acc_out, mem, s=4, alpha=0.4, color="#3b6ea5")
    right.set_xlabel("accuracy when held out (acc_out)")
    right.set_ylabel("mem")
    right.set_title(f"median 95% interval width {median:.3f}")
    fig.suptitle(
        f"{experiment.name}: {experiment.spec.dataset.name} / {experiment.spec.model.name}"
    )
    fig.tight_layout()
    path = out / f"{file_stem(experiment.name)}-memorization.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _show(ax: plt.Axes, image: np.ndarray) -> None:
    # Per-image min-max scaling undoes the dataset normalization for display.
    image = np.moveaxis(image, 0, -1)
    image = (image - image.min()) / max(float(image.max() - image.min()), 1e-8)
    ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
    ax.set_xticks([])
    ax.set_yticks([])


def _top_images(engine: Engine, experiment: Experiment, data: object, out: Path) -> Path:
    rows = top_memorized(engine, experiment.id, 24)
    x = data.x_train.numpy()  # type: ignore[attr-defined]
    cols = 8
    lines = max(1, (len(rows) + cols - 1) // cols)
    fig, axes = plt.subplots(lines, cols, figsize=(cols * 1.6, lines * 2.1), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows, strict=False):
        ax.axis("on")
        _show(ax, x[row.example_index])
        interval = f"[{row.ci_low:.2f},{row.ci_high:.2f}]"
        ax.set_title(
            f"#{row.example_index} y={row.label}\nmem {row.mem:.2f} {interval}", fontsize=7
        )
    fig.suptitle(f"{experiment.name}: most memorized training examples")
    fig.tight_layout()
    path = out / f"{file_stem(experiment.name)}-top.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pair_images(engine: Engine, experiment: Experiment, data: object, out: Path) -> Path | None:
    rows = high_influence_pairs(engine, experiment.id, 8)
    if not rows:
        return None
    x_train = data.x_train.numpy()  # type: ignore[attr-defined]
    x_test = data.x_test.numpy()  # type: ignore[attr-defined]
    fig, axes = plt.subplots(2, len(rows), figsize=(len(rows) * 1.7, 4.4), squeeze=False)
    for col, row in enumerate(rows):
        _show(axes[0][col], x_train[row.train_index])
        axes[0][col].set_title(f"train #{row.train_index}\nmem {row.mem:.2f}", fontsize=7)
        _show(axes[1][col], x_test[row.test_index])
        axes[1][col].set_title(f"test #{row.test_index}\ninfl {row.infl:.2f}", fontsize=7)
    fig.suptitle(f"{experiment.name}: high-influence pairs (train above, test below)")
    fig.tight_layout(h_pad=2.0)
    path = out / f"{file_stem(experiment.name)}-pairs.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_agreement(
    mem_a: np.ndarray, mem_b: np.ndarray, agreement: Agreement, names: tuple[str, str], path: Path
) -> Path:
    """``memtail compare`` / ``stability``: mem of A against mem of B, one dot per example."""
    threshold = agreement.mem_threshold
    both = ~np.isnan(mem_a) & ~np.isnan(mem_b)
    if not both.any():
        raise NothingToPlot(f"no example has an estimate in both {names[0]} and {names[1]}")
    a, b = mem_a[both], mem_b[both]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(a, b, s=4, alpha=0.4, color="#3b6ea5")
    for line in (ax.axvline, ax.axhline):
        line(threshold, color="#c0392b", linestyle="--", linewidth=1)
    ax.plot([-1, 1], [-1, 1], color="#888888", linewidth=0.8)
    lo = float(min(a.min(), b.min(), 0.0)) if a.size else 0.0
    ax.set_xlim(lo - 0.02, 1.02)
    ax.set_ylim(lo - 0.02, 1.02)
    ax.set_xlabel(f"mem in {names[0]}")
    ax.set_ylabel(f"mem in {names[1]}")
    ax.set_title(f"memorized sets (mem >= {threshold}): Jaccard {agreement.mem_jaccard:.2f}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_utility(reports: list[ArmReport], n_influenced: int, title: str, path: Path) -> Path:
    """``memtail utility``: test accuracy per removal arm, overall and on influenced examples.

    Bars are means over trials, whiskers their 95% t-intervals.
    """
    groups = [("all test examples", "test"), (f"{n_influenced} influenced", "influenced")]
    colors = {"full": "#3b6ea5", "minus-memorized": "#c0392b", "minus-random": "#95a5a6"}
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(reports))
    for k, report in enumerate(reports):
        for g, (_, field) in enumerate(groups):
            value = getattr(report, field)
            if value.trials == 0:
                continue
            err = [[value.mean - value.low], [value.high - value.mean]]
            err = None if np.isnan(err[0][0]) else err
            ax.bar(g + (k - (len(reports) - 1) / 2) * width, value.mean, width,
                   yerr=err, capsize=3, color=colors.get(report.arm, "#555555"),
                   label=report.arm if g == 0 else None)  # fmt: skip
    ax.set_xticks(range(len(groups)), [name for name, _ in groups])
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(reports), frameon=False)
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_depth(depth: Depth, path: Path) -> Path:
    """``memtail depth``: the memorization histograms of the network and of the linear
    probe on its features, overlaid, on a log count scale (the tail is what differs)."""
    threshold = depth.agreement.mem_threshold
    sides = [
        (depth.network, depth.mem_network, "#3b6ea5"),
        (depth.probe, depth.mem_probe, "#e67e22"),
    ]
    values = [mem[~np.isnan(mem)] for _, mem, _ in sides]
    if not any(v.size for v in values):
        raise NothingToPlot(f"neither {depth.network.experiment} nor its probe has estimates")
    low = min(float(v.min()) for v in values if v.size)
    bins = np.linspace(min(low, 0.0), 1.0, 41)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (side, _, color), v in zip(sides, values, strict=True):
        ax.hist(v, bins=bins, histtype="stepfilled", alpha=0.35, color=color, log=True,
                label=f"{side.experiment}: {side.memorized} with mem >= {threshold:g} "
                      f"({side.trials} trials)")  # fmt: skip
        ax.hist(v, bins=bins, histtype="step", color=color, log=True)
    ax.axvline(threshold, color="#c0392b", linestyle="--", linewidth=1)
    ax.set_xlabel("memorization estimate mem(i)")
    ax.set_ylabel("training examples (log scale)")
    ax.set_title("network vs linear probe on its features: where memorization happens")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
