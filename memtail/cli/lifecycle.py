"""The commands of an experiment's life: list, extend, pause, resume, retry, delete."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from memtail.cli.arguments import UsageError, open_engine, settings_from
from memtail.specification import ExperimentKind

if TYPE_CHECKING:
    from memtail.records import Experiment


def cmd_list(args: argparse.Namespace) -> int:
    from memtail.store.experiments import list_experiments
    from memtail.store.progress import progress

    engine = open_engine(settings_from(args))
    rows = list_experiments(engine)
    if not rows:
        print("no experiments; create one with `memtail run` or `memtail experiment create`")
    for exp in rows:
        p = progress(engine, exp)
        print(
            f"{exp.id:>4}  {exp.name:<30} {exp.status:<9} {p.done:>6}/{exp.target_trials:<6} "
            f"{exp.spec.dataset.name}/{exp.spec.model.name}"
        )
    return 0


def cmd_extend(args: argparse.Namespace) -> int:
    from memtail.store import lifecycle
    from memtail.store.experiments import get_experiment

    settings = settings_from(args)
    engine = open_engine(settings)
    before = get_experiment(engine, args.name)
    after = lifecycle.extend(engine, before, args.trials)
    print(
        f"extended {after.name!r} from {before.target_trials} to {after.target_trials} trials; "
        f"{_who_trains(settings.database_url, after)}"
    )
    return 0


def _who_trains(database_url: str, experiment: Experiment) -> str:
    if not database_url.startswith("sqlite"):
        return "the service's workers train them (the coordinator sends them)"
    if experiment.kind == ExperimentKind.PROBE:
        source = experiment.name.removesuffix("-probe")
        return f"train them here with `memtail probe {source} --run`"
    return (
        f"train them here with `memtail run SPEC --name {experiment.name} "
        f"--trials {experiment.target_trials}`"
    )


def cmd_pause(args: argparse.Namespace) -> int:
    return _set_paused(args, paused=True)


def cmd_resume(args: argparse.Namespace) -> int:
    return _set_paused(args, paused=False)


def _set_paused(args: argparse.Namespace, *, paused: bool) -> int:
    from memtail.store import lifecycle
    from memtail.store.experiments import get_experiment

    engine = open_engine(settings_from(args))
    exp = lifecycle.set_paused(engine, get_experiment(engine, args.name), paused)
    print(f"experiment {exp.name!r} is {exp.status}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from memtail.store import lifecycle, reaper
    from memtail.store.experiments import get_experiment

    settings = settings_from(args)
    engine = open_engine(settings)
    exp = get_experiment(engine, args.name)
    requeued = lifecycle.retry_failed(engine, exp)
    line = f"re-queued {requeued} failed trial{'' if requeued == 1 else 's'} of {exp.name!r}"
    if not args.failed:
        freed = reaper.reap(engine, settings.max_lost, experiment_id=exp.id)
        line += f"; freed {freed.requeued} expired lease{'' if freed.requeued == 1 else 's'}"
        if freed.failed:
            line += f" ({freed.failed} failed for good, see `memtail status`)"
    print(f"{line}; {_who_trains(settings.database_url, get_experiment(engine, exp.id))}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from memtail.store import lifecycle
    from memtail.store.artifacts import experiment_folder
    from memtail.store.engine import describe_database
    from memtail.store.experiments import get_experiment

    settings = settings_from(args)
    engine = open_engine(settings)
    exp = get_experiment(engine, args.name)
    where, _ = describe_database(settings.database_url)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"deleting {exp.name!r} cannot be undone; pass --yes to delete without a prompt"
            )
        answer = input(
            f"delete experiment {exp.name!r} ({exp.target_trials} trials, their outcomes and "
            f"estimates) from {where}? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    rows = lifecycle.delete(engine, exp)
    if settings.artifacts:
        shutil.rmtree(experiment_folder(Path(settings.artifacts), exp.id), ignore_errors=True)
    print(f"deleted experiment {exp.name!r} and its {rows - 1} rows from {where}")
    return 0
