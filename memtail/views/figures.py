"""The figures of an experiment's results, as matplotlib Figures: the report, the
dashboard and ``memtail plot``/``compare``/``utility``/``depth`` draw the same ones.

Figures are built on ``matplotlib.figure.Figure`` directly, never through pyplot's global
state, so the dashboard's threads can draw at once. Every title states how many trials
are behind it, and every error bar says what it is.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter, PercentFormatter

from memtail.analyses.convergence import Convergence
from memtail.analyses.depth import Depth
from memtail.analyses.removal import ArmReport
from memtail.stats.consistency import Agreement
from memtail.store.results import MemorizationValues

BLUE, RED, ORANGE, GREY = "#3b6ea5", "#c0392b", "#e67e22", "#95a5a6"
#: The resolution of every PNG, in the pages and from ``memtail plot`` alike.
DPI = 110
#: The widest figure, in inches, that a report or dashboard page shows at its natural
#: size: a section's content is 1074 px wide (memtail.css; measured in Chromium by
#: tests/views/test_report.py), 9.76 inches at ``DPI``.
PAGE_WIDTH = 9.6


class NothingToPlot(ValueError):
    """There is no data for the figure; the message says why and what to run."""


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _plain(value: float, _position: object = None) -> str:
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def count_axis(ax: Axes, counts: np.ndarray, what: str) -> None:
    """A histogram's count axis. Logarithmic where the bars span two decades or more, so
    that a long tail's few examples stay visible, with plain labels (1, 10, 100); linear
    where they do not: a log axis over less than a decade has no major tick to label and
    labels its minor ticks instead, as 2x10^0 ... 6x10^0."""
    shown = counts[counts > 0]
    if shown.size and shown.max() >= 100 * shown.min():
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(_plain))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel(f"{what} (log scale)")
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(what)


def memorization_figure(
    values: MemorizationValues, threshold: float, trials: int, confidence: float, title: str
) -> Figure:
    """The distribution of mem (log counts), and every example ranked by mem with its
    interval: which examples are memorized beyond doubt, which only maybe."""
    mem = values.mem
    if mem.size == 0:
        raise NothingToPlot("no memorization estimates yet")
    fig = Figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2)
    counts, _, _ = left.hist(mem, bins=50, color=BLUE)
    count_axis(left, counts, "train examples")
    left.axvline(threshold, color=RED, linestyle="--", label=f"mem = {threshold:g}")
    left.set_xlabel("memorization estimate mem(i)")
    left.legend(frameon=False)
    left.set_title(
        f"{int((mem >= threshold).sum())} of {mem.size} examples with mem >= {threshold:g}"
    )
    order = np.argsort(-mem, kind="stable")
    rank = np.arange(1, mem.size + 1)
    right.fill_between(
        rank,
        values.ci_low[order],
        values.ci_high[order],
        color=BLUE,
        alpha=0.25,
        linewidth=0,
        label=f"{confidence:.0%} interval",
    )
    right.plot(rank, mem[order], color=BLUE, linewidth=1.2, label="mem")
    right.axhline(threshold, color=RED, linestyle="--", linewidth=1)
    right.set_xscale("log")
    right.set_xlabel("rank by mem (log scale)")
    right.set_ylabel("mem")
    sure = int((values.ci_low >= threshold).sum())
    right.set_title(f"{sure} examples have their whole interval above {threshold:g}")
    right.legend(frameon=False, loc="upper right")
    fig.suptitle(f"{title}: memorization from {trials} trials")
    fig.tight_layout()
    return fig


def influence_figure(
    infl: np.ndarray, threshold: float, trials: int, expected_false: float | None, title: str
) -> Figure:
    """The stored influence values: the estimator keeps pairs with infl >= threshold."""
    if infl.size == 0:
        raise NothingToPlot("no pair reaches the influence threshold")
    fig = Figure(figsize=(7, 3.8))
    ax = fig.subplots()
    counts, _, _ = ax.hist(infl, bins=40, color=BLUE)
    count_axis(ax, counts, "(train, test) pairs")
    ax.axvline(threshold, color=RED, linestyle="--", linewidth=1, label=f"infl = {threshold:g}")
    ax.set_xlabel("influence estimate infl(i, j)")
    chance = "" if expected_false is None else f"; {expected_false:.1f} expected by chance"
    ax.set_title(
        f"{title}: {infl.size} pairs with infl >= {threshold:g} from {trials} trials{chance}",
        fontsize=9,
    )
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def convergence_figure(conv: Convergence, title: str) -> Figure:
    """Interval half-width and memorized count against trials, on prefixes of the trials."""
    fig = Figure(figsize=(11, 3.8))
    left, right = fig.subplots(1, 2)
    k = conv.trials
    left.plot(k, conv.median_half_width, "o-", color=BLUE, label="median over examples")
    left.plot(k, conv.p95_half_width, "s-", color=ORANGE, label="95th percentile")
    left.plot(k, conv.worst_case, "--", color=GREY, label="worst case (accuracies 1/2)")
    left.set_xlabel("trials")
    left.set_ylabel(f"half-width of the {conv.confidence:.0%} interval of mem")
    left.set_ylim(bottom=0)
    left.legend(frameon=False)
    left.set_title("interval half-width")
    right.plot(k, conv.memorized, "o-", color=RED)
    right.set_xlabel("trials")
    right.set_ylabel(f"examples with mem >= {conv.threshold:g}")
    right.set_ylim(bottom=0)
    right.set_title("memorized examples")
    fig.suptitle(f"{title}: estimates on the first k of {int(k[-1])} trials")
    fig.tight_layout()
    return fig


def agreement_figure(
    mem_a: np.ndarray,
    mem_b: np.ndarray,
    agreement: Agreement,
    names: tuple[str, str],
    trials: tuple[int, int],
) -> Figure:
    """mem of A against mem of B, one dot per example."""
    threshold = agreement.mem_threshold
    both = ~np.isnan(mem_a) & ~np.isnan(mem_b)
    if not both.any():
        raise NothingToPlot(f"no example has an estimate in both {names[0]} and {names[1]}")
    a, b = mem_a[both], mem_b[both]
    fig = Figure(figsize=(5.5, 5.2))
    ax = fig.subplots()
    ax.scatter(a, b, s=4, alpha=0.4, color=BLUE)
    ax.axvline(threshold, color=RED, linestyle="--", linewidth=1)
    ax.axhline(threshold, color=RED, linestyle="--", linewidth=1)
    ax.plot([-1, 1], [-1, 1], color="#888888", linewidth=0.8)
    lo = float(min(a.min(), b.min(), 0.0))
    ax.set_xlim(lo - 0.02, 1.02)
    ax.set_ylim(lo - 0.02, 1.02)
    ax.set_xlabel(f"mem in {names[0]} ({trials[0]} trials)")
    ax.set_ylabel(f"mem in {names[1]} ({trials[1]} trials)")
    ax.set_title(
        f"memorized (mem >= {threshold:g}): Jaccard {agreement.mem_jaccard:.2f}; "
        f"Spearman {agreement.mem_spearman:.2f}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def utility_figure(reports: list[ArmReport], n_influenced: int, title: str) -> Figure:
    """Test accuracy per removal arm: dots at the mean over trials, whiskers the 95%
    t-interval of that mean; the axis spans the data, so a one-point drop shows."""
    groups = [
        ("all test examples", "test"),
        (f"{n_influenced} influenced test examples", "influenced"),
    ]
    colors = {"full": BLUE, "minus-memorized": RED, "minus-random": GREY}
    fig = Figure(figsize=(8, 4))
    axes = fig.subplots(1, 2, squeeze=False)[0]
    for ax, (label, field) in zip(axes, groups, strict=True):
        shown = [(r, getattr(r, field)) for r in reports if getattr(r, field).trials]
        for x, (report, value) in enumerate(shown):
            err = None
            if not np.isnan(value.low):
                err = [[value.mean - value.low], [value.high - value.mean]]
            ax.errorbar(
                [x],
                [value.mean],
                yerr=err,
                fmt="o",
                capsize=4,
                markersize=7,
                color=colors.get(report.arm, "#555555"),
            )
            ax.annotate(
                f"{value.mean:.1%}",
                (x, value.mean),
                textcoords="offset points",
                xytext=(9, -3),
                fontsize=8,
            )
        ax.set_xticks(
            range(len(shown)), [f"{r.arm}\n({v.trials} trials)" for r, v in shown], fontsize=8
        )
        ax.set_xlim(-0.5, len(shown) - 0.5)
        ax.margins(y=0.25)
        ax.set_ylabel("test accuracy")
        ax.set_title(label, fontsize=9)
        low, high = ax.get_ylim()
        ax.set_ylim(max(low, 0.0), min(high, 1.0 + 0.02 * (high - low)))
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    fig.suptitle(f"{title}\nmean over trials; whiskers: 95% t-interval of the mean", fontsize=10)
    fig.tight_layout()
    return fig


def depth_figure(depth: Depth) -> Figure:
    """Memorization histograms of the network and of the linear probe on its features,
    overlaid on a log count scale (the tail is what differs)."""
    threshold = depth.agreement.mem_threshold
    sides = [(depth.network, depth.mem_network, BLUE), (depth.probe, depth.mem_probe, ORANGE)]
    values = [mem[~np.isnan(mem)] for _, mem, _ in sides]
    if not any(v.size for v in values):
        raise NothingToPlot(f"neither {depth.network.experiment} nor its probe has estimates")
    low = min(float(v.min()) for v in values if v.size)
    bins = np.linspace(min(low, 0.0), 1.0, 41)
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    counts = []
    for (side, _, color), v in zip(sides, values, strict=True):
        drawn, _, _ = ax.hist(
            v,
            bins=bins,
            histtype="stepfilled",
            alpha=0.35,
            color=color,
            label=f"{side.experiment}: {side.memorized} with mem >= {threshold:g} "
            f"({side.trials} trials)",
        )
        ax.hist(v, bins=bins, histtype="step", color=color)
        counts.append(drawn)
    count_axis(ax, np.concatenate(counts), "training examples")
    ax.axvline(threshold, color=RED, linestyle="--", linewidth=1)
    ax.set_xlabel("memorization estimate mem(i)")
    ax.set_title("network vs linear probe on its features: where memorization happens")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
