"""What each ``memtail`` subcommand does; the parser lives in ``memtail.cli``.

Every command reads the configuration once (``MEMTAIL_*``), lets flags override it, and
does its work through the library; user mistakes propagate as typed errors that
``memtail.cli.main`` turns into one line and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
import time
from typing import Any

from memtail.config import ConfigError, Settings


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    overrides = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    if getattr(args, "broker_url", None):
        overrides["broker_url"] = args.broker_url
    if getattr(args, "data_root", None):
        overrides["data_root"] = args.data_root
    return dataclasses.replace(settings, **overrides) if overrides else settings


def _engine(settings: Settings):  # type: ignore[no-untyped-def]
    from memtail.db.engine import make_engine

    return make_engine(settings.database_url)


def _parse_value(text: str) -> Any:
    """`--set training.epochs=5`: values parse as TOML scalars, else stay strings."""
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def spec_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    flags = {
        "name": "name",
        "trials": "trials",
        "seed": "seed",
        "subset_fraction": "subset_fraction",
        "dataset": "dataset.name",
        "model": "model.name",
        "epochs": "training.epochs",
    }
    for attr, dotted in flags.items():
        value = getattr(args, attr, None)
        if value is not None:
            overrides[dotted] = value
    for item in getattr(args, "set", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE, e.g. training.epochs=5")
        overrides[key.strip()] = _parse_value(value.strip())
    return overrides


def load_spec_arg(spec_path: str | None, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from memtail.spec import load_spec, spec_from_dict

    overrides = spec_overrides(args)
    if spec_path is None:
        return spec_from_dict({}, overrides)
    return load_spec(spec_path, overrides)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from memtail.db import migrate

    migrate.upgrade(_settings(args).database_url)
    print("database at head")
    return 0


def cmd_experiment_create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    spec = load_spec_arg(args.spec, args)
    create_experiment_from(settings, spec, download=args.download, dispatch=not args.no_dispatch)
    return 0


def create_experiment_from(
    settings: Settings, spec: Any, *, download: bool, dispatch: bool
) -> None:
    """Load the dataset (its size and labels), insert the experiment, optionally dispatch.

    ``spec`` is an ExperimentSpec or the path of a TOML spec.
    """
    from memtail.datasets import load_dataset
    from memtail.experiments import ExampleSet, create_experiment, find_experiment
    from memtail.spec import load_spec

    if not hasattr(spec, "dataset"):
        spec = load_spec(spec)
    engine = _engine(settings)
    existing = find_experiment(engine, spec.name)
    if existing is not None and existing.spec_hash == spec.spec_hash():
        # Nothing to create: skip loading the dataset (seconds of CPU on every restart
        # of the coordinator, next to workers that are training).
        print(f"experiment {spec.name!r} already exists with this spec (id {existing.id})")
        return
    dataset = load_dataset(spec.dataset, settings.data_root, download=download)
    result = create_experiment(engine, spec, ExampleSet.from_dataset(dataset))
    exp = result.experiment
    if not result.created:
        print(f"experiment {exp.name!r} already exists with this spec (id {exp.id}); nothing to do")
        return
    print(
        f"created experiment {exp.name!r} (id {exp.id}): {exp.target_trials} trials of "
        f"m={exp.subset_size} of n_train={exp.n_train}, n_test={exp.n_test}"
    )
    if dispatch:
        _dispatch_now(engine, settings, exp.id)


def _dispatch_now(engine: Any, settings: Settings, experiment_id: int) -> None:
    from memtail import dispatch

    try:
        from services.dispatch import celery_sender

        sent = dispatch.dispatch(
            engine,
            experiment_id,
            celery_sender(settings),
            window=settings.dispatch_window,
            redispatch_after=settings.redispatch_after,
        )
        print(f"dispatched {sent} trials; `memtail coordinator` keeps the queue filled")
    except Exception as error:  # noqa: BLE001 - the coordinator will dispatch later
        print(f"warning: could not reach the broker ({error}); the coordinator will dispatch")


def cmd_experiment_list(args: argparse.Namespace) -> int:
    from memtail.experiments import list_experiments
    from memtail.report import progress

    engine = _engine(_settings(args))
    rows = list_experiments(engine)
    if not rows:
        print("no experiments; create one with `memtail experiment create SPEC.toml`")
    for exp in rows:
        p = progress(engine, exp)
        print(
            f"{exp.id:>4}  {exp.name:<30} {exp.status:<9} {p.done:>6}/{exp.target_trials:<6} "
            f"{exp.spec.dataset.name}/{exp.spec.model.name}"
        )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from memtail.experiments import get_experiment, list_experiments
    from memtail.report import format_progress, progress

    engine = _engine(_settings(args))
    while True:
        if args.name:
            shown = [get_experiment(engine, args.name)]
        else:
            shown = list_experiments(engine)
        text = "\n".join(format_progress(progress(engine, e)) for e in shown)
        if args.watch:
            sys.stdout.write("\x1b[2J\x1b[H")
        print(text or "no experiments")
        if not args.watch or all(e.status == "complete" for e in shown):
            return 0
        time.sleep(args.interval)


def cmd_top(args: argparse.Namespace) -> int:
    from memtail.experiments import get_experiment
    from memtail.report import format_top, top_memorized

    engine = _engine(_settings(args))
    exp = get_experiment(engine, args.name)
    print(format_top(top_memorized(engine, exp.id, args.limit)))
    return 0


def cmd_pairs(args: argparse.Namespace) -> int:
    from memtail.experiments import get_experiment
    from memtail.report import format_pairs, high_influence_pairs

    engine = _engine(_settings(args))
    exp = get_experiment(engine, args.name)
    print(format_pairs(high_influence_pairs(engine, exp.id, args.limit)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from memtail.experiments import get_experiment
    from memtail.export import export_npz

    engine = _engine(_settings(args))
    exp = get_experiment(engine, args.name)
    arrays = export_npz(engine, exp, args.out)
    print(f"wrote {args.out}: {exp.n_train} memorization values, {arrays['tr_idx'].size} pairs")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from memtail.experiments import get_experiment
    from memtail.plots import plot_experiment

    settings = _settings(args)
    engine = _engine(settings)
    exp = get_experiment(engine, args.name)
    images = None
    if not args.no_images:
        from memtail.datasets import load_dataset

        images = load_dataset(exp.spec.dataset, settings.data_root)
    for path in plot_experiment(engine, exp, args.out, images):
        print(f"wrote {path}")
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from memtail.estimates import estimate_all, estimate_experiment
    from memtail.experiments import get_experiment

    settings = _settings(args)
    engine = _engine(settings)
    device = settings.estimator_device
    if args.name:
        exp = get_experiment(engine, args.name)
        summary = estimate_experiment(engine, exp.id, force=True, device=device)
        summaries = [summary] if summary else []
    else:
        summaries = estimate_all(engine, device)
    for s in summaries:
        print(
            f"experiment {s.experiment_id}: {s.trials_used} trials, {s.memorization_rows} "
            f"memorization rows, {s.influence_rows} pairs ({s.expected_false_pairs:.1f} "
            f"expected by chance) in {s.seconds:.2f}s"
        )
    if not summaries:
        print("nothing to estimate (no new trials, or another estimator is running)")
    return 0


def cmd_coordinator(args: argparse.Namespace) -> int:
    from memtail.coordinator import coordinate_once, run_forever
    from services.dispatch import Broker

    settings = _settings(args)
    engine = _engine(settings)
    broker = Broker(settings)
    for spec_path in args.create or []:
        create_experiment_from(settings, spec_path, download=args.download, dispatch=False)
    if args.once:
        report = coordinate_once(engine, settings, broker.send, broker.depth)
        print(f"dispatched {report.dispatched}, requeued {report.requeued}, failed {report.failed}")
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("memtail").info("coordinator started")
    run_forever(engine, settings, broker.send, stop, broker.depth)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from memtail.local import run_local

    return run_local(args, _settings(args))
