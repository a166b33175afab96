"""The commands of the paper's analyses: consistency checks and removal experiments.

``memtail compare`` / ``stability`` (memtail.analyses.comparison) and ``memtail removal`` /
``utility`` (memtail.analyses.removal). Each prints a table and writes a PNG.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from memtail.cli.arguments import engine_for, settings_from


def cmd_compare(args: argparse.Namespace) -> int:
    from memtail.analyses.comparison import compare_experiments
    from memtail.store.experiments import get_experiment
    from memtail.views.plots import plot_agreement
    from memtail.views.text import format_agreement

    engine = engine_for(settings_from(args))
    a, b = get_experiment(engine, args.a), get_experiment(engine, args.b)
    result = compare_experiments(engine, a, b, args.mem_threshold)
    print(f"{a.name} ({a.spec.model.name}) vs {b.name} ({b.spec.model.name})")
    print(format_agreement(result.agreement, a.name, b.name))
    path = Path(args.out) / f"{a.name}-vs-{b.name}.png"
    names = (a.name, b.name)
    print(f"wrote {plot_agreement(result.mem_a, result.mem_b, result.agreement, names, path)}")
    return 0


def cmd_stability(args: argparse.Namespace) -> int:
    from memtail.analyses.comparison import split_half
    from memtail.store.experiments import get_experiment
    from memtail.views.plots import plot_agreement
    from memtail.views.text import format_agreement

    engine = engine_for(settings_from(args))
    exp = get_experiment(engine, args.name)
    result = split_half(engine, exp, args.seed)
    print(f"{exp.name}: estimates from two random halves of its trials")
    print(format_agreement(result.agreement, "half 1", "half 2"))
    path = Path(args.out) / f"{exp.name}-split-half.png"
    names = ("half 1", "half 2")
    print(f"wrote {plot_agreement(result.mem_a, result.mem_b, result.agreement, names, path)}")
    return 0


def cmd_removal(args: argparse.Namespace) -> int:
    from memtail.analyses.removal import create_removal
    from memtail.store.experiments import get_experiment

    settings = settings_from(args)
    engine = engine_for(settings)
    source = get_experiment(engine, args.source)
    arms = create_removal(engine, source, args.trials_per_arm, args.mem_threshold, args.seed)
    for arm in arms:
        print(
            f"{arm.name}: {arm.target_trials} trials on {arm.subset_size} of "
            f"{arm.n_train} train examples ({arm.n_train - arm.subset_size} removed)"
        )
    if not args.run:
        print("workers train them like any trials; then: memtail utility " + source.name)
        return 0
    from memtail.work.embedded import run_trials
    from memtail.work.estimator import estimate_experiment

    for arm in arms:
        run_trials(engine, settings, arm.id, arm.target_trials, args.workers or os.cpu_count() or 1)
        estimate_experiment(engine, arm.id)  # no estimates for removal arms: marks complete
    return cmd_utility(argparse.Namespace(**{**vars(args), "name": source.name}))


def cmd_utility(args: argparse.Namespace) -> int:
    from memtail.analyses.removal import utility_report
    from memtail.store.experiments import get_experiment
    from memtail.views.plots import plot_utility
    from memtail.views.text import format_utility

    engine = engine_for(settings_from(args))
    source = get_experiment(engine, args.name)
    reports, n_influenced = utility_report(engine, source)
    print(f"{source.name}: retrained without its memorized examples (marginal utility)")
    print(format_utility(reports, n_influenced))
    path = Path(args.out) / f"{source.name}-utility.png"
    title = f"{source.name}: retrained without memorized vs random examples"
    print(f"wrote {plot_utility(reports, n_influenced, title, path)}")
    return 0
