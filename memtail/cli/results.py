"""The commands that read results: status, top, pairs, export, plot, report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from memtail.cli.arguments import (
    UsageError,
    open_engine,
    output_file,
    output_folder,
    settings_from,
)

if TYPE_CHECKING:
    from memtail.records import Experiment
    from memtail.store.engine import Engine


def cmd_status(args: argparse.Namespace) -> int:
    from memtail.status import ExperimentStatus
    from memtail.store.experiments import get_experiment, list_experiments
    from memtail.store.progress import progress
    from memtail.views.rows import progress_record, render
    from memtail.views.text import format_progress

    engine = open_engine(settings_from(args))
    # Clearing the screen is for a person watching a terminal, never for a file or pipe.
    clear = args.watch and args.format == "table" and sys.stdout.isatty()
    while True:
        # An empty name (`status "$NAME"`, NAME unset) is no experiment, not all of them.
        if args.name is not None:
            shown = [get_experiment(engine, args.name)]
        else:
            shown = list_experiments(engine)
        reports = [progress(engine, e) for e in shown]
        if args.format == "table":
            text = "\n".join(format_progress(p) for p in reports) or "no experiments"
        else:
            text = render([progress_record(p) for p in reports], args.format)
        if clear:
            sys.stdout.write("\x1b[2J\x1b[H")
        print(text, flush=True)
        if not args.watch or all(e.status == ExperimentStatus.COMPLETE for e in shown):
            return 0
        time.sleep(args.interval)


def _estimated(engine: Engine, name: str) -> Experiment:
    """The experiment, if it is one that has estimates at all."""
    from memtail.analyses.removal import source_name
    from memtail.specification import ExperimentKind
    from memtail.store.experiments import get_experiment

    exp = get_experiment(engine, name)
    if exp.kind == ExperimentKind.REMOVAL:
        source = source_name(exp.name) or "SOURCE"
        raise UsageError(
            f"{exp.name!r} is a removal arm: arms are never estimated; "
            f"`memtail utility {source}` compares them"
        )
    return exp


def cmd_top(args: argparse.Namespace) -> int:
    from memtail.store.progress import progress
    from memtail.store.results import top_memorized
    from memtail.views.rows import dataclass_records, render
    from memtail.views.text import format_top, mem_confidence

    engine = open_engine(settings_from(args))
    exp = _estimated(engine, args.name)
    rows = top_memorized(engine, exp.id, args.limit)
    if args.format != "table":
        print(render(dataclass_records(rows), args.format))
    elif not rows:
        print(f"no memorization estimates for {exp.name!r} yet: `memtail estimate {exp.name}`")
    else:
        print(format_top(rows, mem_confidence(progress(engine, exp))))
    return 0


def cmd_pairs(args: argparse.Namespace) -> int:
    from memtail.store.pairs import high_influence_pairs
    from memtail.store.progress import progress
    from memtail.store.results import latest_run
    from memtail.views.rows import dataclass_records, render
    from memtail.views.text import format_pairs, pairs_count, trials_caveat

    engine = open_engine(settings_from(args))
    exp = _estimated(engine, args.name)
    rows = high_influence_pairs(engine, exp.id, args.limit)
    if args.format != "table":
        print(render(dataclass_records(rows), args.format))
        return 0
    report = progress(engine, exp)
    if report.last_estimate_trials is None:
        print(f"no estimates for {exp.name!r} yet: `memtail estimate {exp.name}`")
        return 0
    print(f"{exp.name}, from {report.last_estimate_trials} trials: {pairs_count(report)}")
    caveat = trials_caveat(exp, report.last_estimate_trials)
    if caveat:
        print(caveat)
    run = latest_run(engine, exp.id)
    print(format_pairs(rows, None if run is None else run.q_exact_below))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from memtail.store.experiments import get_experiment
    from memtail.views.export import export_npz, export_tables, npz_file

    # npz: a file, or a folder to write NAME.npz in; csv, parquet: a folder of tables.
    into_folder = args.format != "npz" or Path(args.out).is_dir() or args.out.endswith("/")
    out = output_folder(args.out) if into_folder else output_file(args.out, "NAME.npz")
    engine = open_engine(settings_from(args))
    exp = get_experiment(engine, args.name)
    if args.format == "npz":
        path = npz_file(out, exp.name, folder=into_folder)
        arrays = export_npz(engine, exp, path)
        print(f"wrote {path}: {exp.n_train} memorization values, {arrays['tr_idx'].size} pairs")
        return 0
    for path in export_tables(engine, exp, out, args.format):
        print(f"wrote {path}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    out = output_folder(args.out)
    settings = settings_from(args)
    engine = open_engine(settings)
    exp = _estimated(engine, args.name)
    from memtail.views.plots import plot_experiment  # matplotlib: once the experiment is found

    images = None
    if not args.no_images:
        from memtail.training.datasets import load_dataset

        images = load_dataset(exp.spec.dataset, settings.data_root)
    for path in plot_experiment(engine, exp, out, images):
        print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from memtail.cli.images import dataset_images
    from memtail.store.engine import describe_database
    from memtail.store.experiments import get_experiment

    out = output_file(args.out, "report.html")
    settings = settings_from(args)
    engine = open_engine(settings)
    experiments = [get_experiment(engine, name) for name in dict.fromkeys(args.names)]
    from memtail.views.report import render_report, write_report  # matplotlib: once found

    html = render_report(
        engine,
        experiments,
        describe_database(settings.database_url)[0],
        images=dataset_images(settings.data_root),
        stability=not args.no_stability,
        step=lambda what: print(f"report: {what}", file=sys.stderr, flush=True),
    )
    path = write_report(html, out)
    print(f"wrote {path} ({len(html) / 1e6:.1f} MB): open it in any browser, offline")
    return 0
