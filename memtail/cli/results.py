"""The commands that read results: status, top, pairs, export, plot."""

from __future__ import annotations

import argparse
import sys
import time

from memtail.cli.arguments import engine_for, settings_from


def cmd_status(args: argparse.Namespace) -> int:
    from memtail.status import ExperimentStatus
    from memtail.store.experiments import get_experiment, list_experiments
    from memtail.store.progress import progress
    from memtail.views.text import format_progress

    engine = engine_for(settings_from(args))
    while True:
        if args.name:
            shown = [get_experiment(engine, args.name)]
        else:
            shown = list_experiments(engine)
        text = "\n".join(format_progress(progress(engine, e)) for e in shown)
        if args.watch:
            sys.stdout.write("\x1b[2J\x1b[H")
        print(text or "no experiments")
        if not args.watch or all(e.status == ExperimentStatus.COMPLETE for e in shown):
            return 0
        time.sleep(args.interval)


def cmd_top(args: argparse.Namespace) -> int:
    from memtail.store.experiments import get_experiment
    from memtail.store.results import top_memorized
    from memtail.views.text import format_top

    engine = engine_for(settings_from(args))
    exp = get_experiment(engine, args.name)
    print(format_top(top_memorized(engine, exp.id, args.limit)))
    return 0


def cmd_pairs(args: argparse.Namespace) -> int:
    from memtail.store.experiments import get_experiment
    from memtail.store.results import high_influence_pairs
    from memtail.views.text import format_pairs

    engine = engine_for(settings_from(args))
    exp = get_experiment(engine, args.name)
    print(format_pairs(high_influence_pairs(engine, exp.id, args.limit)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from memtail.store.experiments import get_experiment
    from memtail.views.export import export_npz

    engine = engine_for(settings_from(args))
    exp = get_experiment(engine, args.name)
    arrays = export_npz(engine, exp, args.out)
    print(f"wrote {args.out}: {exp.n_train} memorization values, {arrays['tr_idx'].size} pairs")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from memtail.store.experiments import get_experiment
    from memtail.views.plots import plot_experiment

    settings = settings_from(args)
    engine = engine_for(settings)
    exp = get_experiment(engine, args.name)
    images = None
    if not args.no_images:
        from memtail.training.datasets import load_dataset

        images = load_dataset(exp.spec.dataset, settings.data_root)
    for path in plot_experiment(engine, exp, args.out, images):
        print(f"wrote {path}")
    return 0
