"""The commands of the paper's analyses: consistency, removal, representation vs last layer.

``memtail compare`` / ``stability`` (memtail.analyses.comparison), ``memtail removal`` /
``utility`` (memtail.analyses.removal) and ``memtail probe`` / ``depth``
(memtail.analyses.depth). Each prints a table and writes a PNG (utility also as JSON or
CSV).
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from memtail.cli.arguments import (
    Interrupted,
    UsageError,
    open_engine,
    output_folder,
    settings_from,
)

if TYPE_CHECKING:
    from memtail.config import Settings
    from memtail.records import Experiment
    from memtail.store.engine import Engine


def cmd_compare(args: argparse.Namespace) -> int:
    from memtail.analyses.comparison import compare_experiments
    from memtail.store.experiments import get_experiment
    from memtail.store.results import latest_run
    from memtail.views.text import format_agreement

    if args.a == args.b:  # before any folder is made
        raise UsageError(
            f"compare {args.a} {args.b}: both arguments name the same experiment; give two "
            "experiments over the same examples (`memtail stability` splits one in halves)"
        )
    out = output_folder(args.out)
    engine = open_engine(settings_from(args))
    a, b = get_experiment(engine, args.a), get_experiment(engine, args.b)
    from memtail.views.plots import file_stem, plot_agreement  # matplotlib: once found

    result = compare_experiments(engine, a, b, args.mem_threshold)
    print(f"{a.name} ({a.spec.model.name}) vs {b.name} ({b.spec.model.name})")
    print(format_agreement(result.agreement, a.name, b.name))
    path = out / f"{file_stem(a.name)}-vs-{file_stem(b.name)}.png"
    names = (a.name, b.name)
    trials = tuple(getattr(latest_run(engine, e.id), "trials_used", 0) for e in (a, b))
    plot_agreement(result.mem_a, result.mem_b, result.agreement, names, path, trials)
    print(f"wrote {path}")
    return 0


def cmd_stability(args: argparse.Namespace) -> int:
    from memtail.analyses.comparison import split_half
    from memtail.store.experiments import get_experiment
    from memtail.views.text import format_agreement, trials_caveat

    out = output_folder(args.out)
    engine = open_engine(settings_from(args))
    exp = get_experiment(engine, args.name)
    from memtail.views.plots import file_stem, plot_agreement  # matplotlib: once found

    result = split_half(engine, exp, args.seed)
    print(f"{exp.name}: estimates from two random halves of its {result.trials} trials")
    print(format_agreement(result.agreement, "half 1", "half 2"))
    caveat = trials_caveat(exp, result.trials // 2, per=" per half")
    if caveat:
        print(caveat)
    path = out / f"{file_stem(exp.name)}-split-half.png"
    names = ("half 1", "half 2")
    halves = (result.trials // 2, result.trials - result.trials // 2)
    plot_agreement(result.mem_a, result.mem_b, result.agreement, names, path, halves)
    print(f"wrote {path}")
    return 0


def cmd_removal(args: argparse.Namespace) -> int:
    from memtail.analyses.removal import create_removal
    from memtail.store.experiments import get_experiment

    settings = settings_from(args)
    if args.run:  # refused before any arm is created or trained
        _can_train_here(settings, args.out)
    engine = open_engine(settings)
    source = get_experiment(engine, args.source)
    arms = create_removal(engine, source, args.trials_per_arm, args.mem_threshold, args.seed)
    for arm in arms:
        print(
            f"{arm.name}: {arm.target_trials} trials on {arm.subset_size} of "
            f"{arm.n_train} train examples ({arm.n_train - arm.subset_size} removed)"
        )
    if not args.run:
        if settings.database_url.startswith("sqlite"):
            # An embedded database has no service workers to train them.
            print(f"train them here with `memtail removal {source.name} --run`")
        else:
            print(f"the service's workers train them; then `memtail utility {source.name}`")
        return 0
    if not _train_here(settings, engine, arms, args.workers):
        return 0
    return cmd_utility(argparse.Namespace(**{**vars(args), "name": source.name, "format": "table"}))


def cmd_utility(args: argparse.Namespace) -> int:
    from memtail.analyses.removal import utility_report
    from memtail.store.experiments import get_experiment
    from memtail.views.rows import arm_record, render
    from memtail.views.text import format_utility

    out = output_folder(args.out)
    engine = open_engine(settings_from(args))
    source = get_experiment(engine, args.name)
    from memtail.views.plots import file_stem, plot_utility  # matplotlib: once found

    reports, n_influenced = utility_report(engine, source)
    if args.format != "table":
        print(render([arm_record(r, n_influenced) for r in reports], args.format))
        return 0
    print(f"{source.name}: retrained without its memorized examples (marginal utility)")
    print(format_utility(reports, n_influenced))
    path = out / f"{file_stem(source.name)}-utility.png"
    title = f"{source.name}: retrained without memorized vs random examples"
    print(f"wrote {plot_utility(reports, n_influenced, title, path)}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from memtail.analyses.depth import create_probe
    from memtail.store.experiments import get_experiment

    settings = settings_from(args)
    if args.run:  # refused before the probe is created or trained
        _can_train_here(settings, args.out)
    engine = open_engine(settings)
    source = get_experiment(engine, args.source)
    probe = create_probe(engine, source, args.trials or source.spec.trials)
    print(
        f"{probe.name}: a feature trial (the {probe.spec.model.name} on all {probe.n_train} "
        f"train examples) and {probe.spec.trials} probe trials (a linear classifier on its "
        f"features, m={probe.subset_size})"
    )
    if not args.run:
        if settings.database_url.startswith("sqlite"):
            print(f"train them here with `memtail probe {source.name} --run`")
        else:
            print(f"the service's workers train them; then `memtail depth {source.name}`")
        return 0
    if not _train_here(settings, engine, [probe], args.workers):
        return 0
    return cmd_depth(argparse.Namespace(**{**vars(args), "name": source.name}))


def _can_train_here(settings: Settings, out: str) -> None:
    """Refuse ``--run`` where its trials could not train or be estimated (a GPU asked for
    on a host without one, an artifact folder nothing can be written to) or its figure
    could not be written: created first, every trial would fail its attempts instead."""
    from memtail.work import preflight

    output_folder(out)
    preflight.check(settings)


def _train_here(
    settings: Settings, engine: Engine, experiments: list[Experiment], workers: int | None
) -> bool:
    """Train the experiments' trials here, one after another with one set of local
    workers, and estimate each (a removal arm is then complete); whether all ended
    (False: one was paused, which it says)."""
    from memtail.work.session import LocalSession

    try:
        with LocalSession(engine, settings, workers or os.cpu_count() or 1) as session:
            for experiment in experiments:
                if session.run(experiment).paused:
                    print(
                        f"experiment {experiment.name!r} was paused; `memtail experiment "
                        f"resume {experiment.name}`, then run the same command"
                    )
                    return False
    except KeyboardInterrupt as stop:
        raise Interrupted("trials stored so far are kept; run the same command to go on") from stop
    return True


def cmd_depth(args: argparse.Namespace) -> int:
    from memtail.analyses.depth import depth_report
    from memtail.store.experiments import get_experiment
    from memtail.views.text import format_depth

    out = output_folder(args.out)
    engine = open_engine(settings_from(args))
    source = get_experiment(engine, args.name)
    from memtail.views.plots import file_stem, plot_depth  # matplotlib: once found

    depth = depth_report(engine, source)
    print(f"{source.name}: memorization by the network vs a linear probe on its features")
    print(format_depth(depth))
    path = out / f"{file_stem(source.name)}-depth.png"
    print(f"wrote {plot_depth(depth, path)}")
    return 0
