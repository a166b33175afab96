"""CLI handlers of the paper's analyses: consistency checks and removal experiments.

``memtail compare`` / ``stability`` (memtail.comparison) and ``memtail removal`` /
``utility`` (memtail.removal). Each prints a table and writes a PNG.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from memtail.commands import _engine, _settings


def cmd_compare(args: argparse.Namespace) -> int:
    from memtail.comparison import compare_experiments, format_agreement
    from memtail.experiments import get_experiment
    from memtail.plots import plot_agreement

    engine = _engine(_settings(args))
    a, b = get_experiment(engine, args.a), get_experiment(engine, args.b)
    result = compare_experiments(engine, a, b, args.mem_threshold)
    print(f"{a.name} ({a.spec.model.name}) vs {b.name} ({b.spec.model.name})")
    print(format_agreement(result.agreement, a.name, b.name))
    path = Path(args.out) / f"{a.name}-vs-{b.name}.png"
    names = (a.name, b.name)
    print(f"wrote {plot_agreement(result.mem_a, result.mem_b, result.agreement, names, path)}")
    return 0


def cmd_stability(args: argparse.Namespace) -> int:
    from memtail.comparison import format_agreement, split_half
    from memtail.experiments import get_experiment
    from memtail.plots import plot_agreement

    engine = _engine(_settings(args))
    exp = get_experiment(engine, args.name)
    result = split_half(engine, exp, args.seed)
    print(f"{exp.name}: estimates from two random halves of its trials")
    print(format_agreement(result.agreement, "half 1", "half 2"))
    path = Path(args.out) / f"{exp.name}-split-half.png"
    names = ("half 1", "half 2")
    print(f"wrote {plot_agreement(result.mem_a, result.mem_b, result.agreement, names, path)}")
    return 0


def cmd_removal(args: argparse.Namespace) -> int:
    from memtail.experiments import get_experiment
    from memtail.removal import create_removal

    settings = _settings(args)
    engine = _engine(settings)
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
    from memtail import trials
    from memtail.estimates import estimate_experiment
    from memtail.local import LOCAL_PREFIX, _drive

    for arm in arms:
        trials.release_running(engine, arm.id, worker_prefix=LOCAL_PREFIX)
        _drive(engine, settings, arm.id, arm.target_trials, args.workers or os.cpu_count() or 1)
        estimate_experiment(engine, arm.id)  # no estimates for removal arms: marks complete
    return cmd_utility(argparse.Namespace(**{**vars(args), "name": source.name}))


def cmd_utility(args: argparse.Namespace) -> int:
    from memtail.experiments import get_experiment
    from memtail.plots import plot_utility
    from memtail.removal import format_utility, utility_report

    engine = _engine(_settings(args))
    source = get_experiment(engine, args.name)
    reports, n_influenced = utility_report(engine, source)
    print(f"{source.name}: retrained without its memorized examples (marginal utility)")
    print(format_utility(reports, n_influenced))
    path = Path(args.out) / f"{source.name}-utility.png"
    title = f"{source.name}: retrained without memorized vs random examples"
    print(f"wrote {plot_utility(reports, n_influenced, title, path)}")
    return 0
