"""The commands that ask stored experiments what they found: ``status``, ``top``,
``pairs``, ``export``, ``plot`` and ``report``, and the paper's analyses (``compare``,
``stability``, ``removal``, ``utility``, ``probe``, ``depth``)."""

from __future__ import annotations

import argparse

from memtail.cli import analyses, results
from memtail.cli.parser import (
    ARM_TRIALS,
    FORMATS,
    ROWS,
    WORKERS,
    at_least,
    command,
    refresh_seconds,
    threshold,
)
from memtail.specification import MAX_TRIALS


def _format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=FORMATS, default="table", help="table for people, json or csv"
    )


def result_commands(sub: argparse._SubParsersAction) -> None:
    status = command(
        sub,
        "status",
        results.cmd_status,
        "progress, rate, ETA, accuracy and how fresh the estimate is",
    )
    status.add_argument("name", nargs="?", help="one experiment (default: all)")
    status.add_argument("--watch", action="store_true", help="refresh until complete")
    status.add_argument(
        "--interval", type=refresh_seconds, default=5.0, help="seconds between refreshes"
    )
    _format(status)
    for name, handler, what in (
        ("top", results.cmd_top, "the most memorized training examples, with intervals"),
        (
            "pairs",
            results.cmd_pairs,
            "high-influence train/test pairs (the paper's rule), with intervals",
        ),
    ):
        p = command(sub, name, handler, what)
        p.add_argument("name", help="the experiment")
        p.add_argument("-n", "--limit", type=ROWS, default=20, help="rows to show")
        _format(p)
    export = command(
        sub,
        "export",
        results.cmd_export,
        "write the estimates as files: Feldman & Zhang's .npz layout, CSV or Parquet",
    )
    export.add_argument("name", help="the experiment")
    export.add_argument(
        "--out",
        required=True,
        help="npz: the file to write; csv, parquet: a folder for memorization and pairs files",
    )
    export.add_argument(
        "--format", choices=("npz", "csv", "parquet"), default="npz", help="file format"
    )
    plot = command(sub, "plot", results.cmd_plot, "PNG plots of an experiment's results")
    plot.add_argument("name", help="the experiment")
    plot.add_argument("--out", default=".", help="folder for the PNG files")
    plot.add_argument(
        "--no-images", action="store_true", help="skip image grids (no dataset needed)"
    )
    report = command(
        sub,
        "report",
        results.cmd_report,
        "one self-contained HTML report of experiments' findings, figures inline",
    )
    report.add_argument("names", nargs="+", metavar="NAME", help="the experiments")
    report.add_argument("--out", default="report.html", help="the HTML file to write")
    report.add_argument(
        "--no-stability",
        action="store_true",
        help="skip the split-half check (it re-estimates halves of the trials in memory)",
    )


def analysis_commands(sub: argparse._SubParsersAction) -> None:
    compare = command(
        sub,
        "compare",
        analyses.cmd_compare,
        "agreement of two experiments on the same data (e.g. two models)",
    )
    compare.add_argument("a", help="the first experiment")
    compare.add_argument("b", help="the second experiment, over the same examples")
    compare.add_argument(
        "--mem-threshold", type=threshold, help="memorized: mem >= this (default: a's spec)"
    )
    compare.add_argument("--out", default=".", help="folder for the scatter plot (PNG)")
    stability = command(
        sub,
        "stability",
        analyses.cmd_stability,
        "agreement of the estimates from two random halves of the trials",
    )
    stability.add_argument("name", help="the experiment")
    stability.add_argument("--seed", type=at_least(0), default=0, help="seed of the random split")
    stability.add_argument("--out", default=".", help="folder for the scatter plot (PNG)")
    removal = command(
        sub,
        "removal",
        analyses.cmd_removal,
        "retrain without the memorized examples vs a random set (3 arms)",
    )
    removal.add_argument("source", help="a subsample experiment with estimates")
    removal.add_argument("--trials-per-arm", type=ARM_TRIALS, default=5, help="trials of each arm")
    removal.add_argument(
        "--mem-threshold", type=threshold, help="memorized: mem >= this (default: the source's)"
    )
    removal.add_argument(
        "--seed", type=at_least(0), default=0, help="seed of the random removed set"
    )
    removal.add_argument(
        "--run", action="store_true", help="train the arms here (embedded), then report"
    )
    removal.add_argument("--workers", type=WORKERS, default=0, help="with --run; 0: one per core")
    removal.add_argument("--out", default=".", help="with --run: folder for the plot (PNG)")
    utility = command(
        sub,
        "utility",
        analyses.cmd_utility,
        "test accuracy of the removal arms: what memorized examples are worth",
    )
    utility.add_argument("name", help="the source experiment of `memtail removal`")
    utility.add_argument("--out", default=".", help="folder for the bar plot (PNG)")
    _format(utility)
    probe = command(
        sub,
        "probe",
        analyses.cmd_probe,
        "memorization of a linear probe on the network's features (SOURCE-probe)",
    )
    probe.add_argument("source", help="a subsample experiment")
    probe.add_argument(
        "--trials",
        type=at_least(0, MAX_TRIALS),
        default=0,
        help="probe trials; 0: as many as SOURCE's",
    )
    probe.add_argument(
        "--run", action="store_true", help="train the probe here (embedded), then compare"
    )
    probe.add_argument("--workers", type=WORKERS, default=0, help="with --run; 0: one per core")
    probe.add_argument("--out", default=".", help="with --run: folder for the figure (PNG)")
    depth = command(
        sub,
        "depth",
        analyses.cmd_depth,
        "the network vs its probe: is memorization in the representation or the last layer",
    )
    depth.add_argument("name", help="the source experiment of `memtail probe`")
    depth.add_argument("--out", default=".", help="folder for the histogram figure (PNG)")
