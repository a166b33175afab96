"""The commands that make and run experiments: db, experiment, estimate, coordinator, run.

The parser lives in ``memtail.cli.main``; user mistakes propagate as typed errors that
``main`` turns into one line and exit status 2. Heavy modules (torch, sqlalchemy, Celery)
are imported inside each command, so ``memtail --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from memtail.cli.arguments import (
    Interrupted,
    TrialsFailed,
    UsageError,
    database,
    load_spec_arg,
    output_folder,
    settings_from,
)
from memtail.config import Settings

if TYPE_CHECKING:
    from memtail.spec import ExperimentSpec
    from memtail.store.engine import Engine


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from memtail.store.database import upgrade

    upgrade(settings_from(args).database_url)
    print("database at head")
    return 0


def cmd_experiment_create(args: argparse.Namespace) -> int:
    spec = load_spec_arg(args.spec, args)
    _create(settings_from(args), spec, download=args.download, dispatch=not args.no_dispatch)
    return 0


def _create(settings: Settings, spec: ExperimentSpec, *, download: bool, dispatch: bool) -> None:
    """Launch ``spec``, say what happened, and optionally send its first messages."""
    from memtail.work.launch import launch

    engine = database(settings)
    launched = launch(engine, spec, settings.data_root, download=download)
    exp = launched.experiment
    if launched.verb == "resuming":
        print(
            f"experiment {exp.name!r} already exists with this spec (id {exp.id}, "
            f"{exp.target_trials} trials)"
        )
        return
    print(
        f"{launched.verb} experiment {exp.name!r} (id {exp.id}): {exp.target_trials} trials "
        f"of m={exp.subset_size} of n_train={exp.n_train}, n_test={exp.n_test}"
    )
    if not dispatch:
        return
    if settings.database_url.startswith("sqlite"):
        # Embedded: no workers listen to any broker; nothing is sent.
        print("train its trials here with `memtail run` and the same spec and flags")
    elif settings.broker_url:
        _dispatch_now(settings, exp.id)
    else:
        # No broker configured: a message could land in whatever listens on the default.
        print("`memtail coordinator` sends its trials to the workers (no broker configured)")


def _dispatch_now(settings: Settings, experiment_id: int) -> None:
    from memtail.work.broker import Broker
    from memtail.work.coordinator import dispatch

    try:
        sent = dispatch(
            database(settings),
            experiment_id,
            Broker(settings).send,
            window=settings.dispatch_window,
            redispatch_after=settings.redispatch_after,
        )
        print(f"dispatched {sent} trials; `memtail coordinator` keeps the queue filled")
    except Exception as error:  # noqa: BLE001 - the coordinator will dispatch later
        print(f"warning: could not reach the broker ({error}); the coordinator will dispatch")


def cmd_estimate(args: argparse.Namespace) -> int:
    from memtail.store.estimate_runs import EstimatorBusy
    from memtail.store.experiments import get_experiment
    from memtail.work.estimator import estimate_all, estimate_experiment

    settings = settings_from(args)
    engine = database(settings)
    device = settings.estimator_device
    if args.name:
        exp = get_experiment(engine, args.name)
        try:
            summary = estimate_experiment(engine, exp.id, force=True, device=device)
        except EstimatorBusy as busy:
            print(f"memtail: {busy}; try again once it has finished", file=sys.stderr)
            return 1
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
    from memtail.spec import load_spec
    from memtail.training.registry import check_names
    from memtail.work.broker import Broker
    from memtail.work.coordinator import coordinate_once, run_forever

    settings = settings_from(args)
    engine = database(settings)
    broker = Broker(settings)
    for source in args.create or []:
        _create(settings, check_names(load_spec(source)), download=args.download, dispatch=False)
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
    """Embedded: migrate a SQLite file, create, extend or resume the experiment, train its
    trials in local processes, estimate, then print the summary and write the plots."""
    from memtail.status import ExperimentStatus
    from memtail.store.database import upgrade
    from memtail.store.engine import describe_database
    from memtail.store.experiments import get_experiment
    from memtail.training.datasets import load_dataset
    from memtail.views.plots import file_stem, plot_experiment
    from memtail.views.report import render_report, write_report
    from memtail.views.summary import dashboard_hint, next_steps, print_summary
    from memtail.work.embedded import embedded_settings, run_trials
    from memtail.work.estimator import estimate_experiment
    from memtail.work.launch import launch

    out = output_folder(args.out)
    settings = embedded_settings(settings_from(args), out)
    spec = load_spec_arg(args.spec, args)
    upgrade(settings.database_url)
    engine = database(settings)
    launched = launch(engine, spec, settings.data_root, download=args.download)
    experiment = launched.experiment
    if experiment.status == ExperimentStatus.PAUSED:
        raise UsageError(
            f"experiment {experiment.name!r} is paused; `memtail experiment resume "
            f"{experiment.name}` first"
        )
    print(
        f"{launched.verb} experiment {experiment.name!r}: {experiment.target_trials} trials, "
        f"m={experiment.subset_size} of n_train={experiment.n_train}, n_test={experiment.n_test}"
    )
    workers = args.workers or os.cpu_count() or 1
    while True:
        try:
            counts = run_trials(engine, settings, experiment.id, experiment.target_trials, workers)
        except KeyboardInterrupt as stop:
            stored = _stored(engine, experiment.id, experiment.target_trials)
            raise Interrupted(f"{stored}; run the same command to resume") from stop
        if get_experiment(engine, experiment.id).status == ExperimentStatus.PAUSED:
            print(
                f"experiment {experiment.name!r} was paused: "
                f"{_stored(engine, experiment.id, experiment.target_trials)}; "
                f"`memtail experiment resume {experiment.name}`, then run the same command"
            )
            return 0
        check_any_succeeded(engine, experiment.id, counts)
        estimate_experiment(engine, experiment.id, device=settings.estimator_device)
        grown = get_experiment(engine, experiment.id)
        if grown.target_trials == experiment.target_trials:
            break
        # Its stopping rules were not met at this look: they added the next batch.
        print(
            f"stopping rules not met at {experiment.target_trials} trials; "
            f"training up to {grown.target_trials}"
        )
        experiment = grown
    print_summary(engine, experiment.id, settings.database_url)
    dataset = launched.dataset or load_dataset(spec.dataset, settings.data_root)
    final = get_experiment(engine, experiment.id)
    for path in plot_experiment(engine, final, out, dataset):
        print(f"  plot: {path}")
    html = render_report(
        engine, [final], settings.data_root, describe_database(settings.database_url)[0]
    )
    report = write_report(html, out / f"{file_stem(final.name)}-report.html")
    print(f"  report: {report} (one HTML file, figures inline: open it in a browser)")
    print(dashboard_hint(settings.database_url))
    print(next_steps(settings.database_url, experiment.name))
    return 0


def _stored(engine: Engine, experiment_id: int, total: int) -> str:
    from memtail.status import TrialStatus
    from memtail.store.trials import status_counts

    return f"{status_counts(engine, experiment_id)[TrialStatus.SUCCEEDED]}/{total} trials stored"


def check_any_succeeded(engine: Engine, experiment_id: int, counts: dict[str, int]) -> None:
    """Raise TrialsFailed with the first trial's own error when every trial failed."""
    from memtail.status import TrialStatus
    from memtail.store.experiments import get_experiment
    from memtail.store.progress import progress

    if counts[TrialStatus.SUCCEEDED] > 0 or counts[TrialStatus.FAILED] == 0:
        return

    report = progress(engine, get_experiment(engine, experiment_id))
    name, failed = report.experiment.name, report.counts[TrialStatus.FAILED]
    index, error = report.failures[0]
    first = (error.strip().splitlines() or ["?"])[-1][:300]
    raise TrialsFailed(
        f"all {failed} trials of {name!r} failed (trial {index}: {first}); fix the spec, then "
        f"`memtail experiment delete {name} --yes` and run again"
    )


def cmd_dashboard(args: argparse.Namespace) -> int:
    import waitress

    from memtail.store.engine import describe_database
    from memtail.views.dashboard import create_app

    settings = settings_from(args)
    engine = database(settings)
    where = describe_database(settings.database_url)[0]
    app = create_app(
        engine, data_root=settings.data_root, database=where, refresh_seconds=args.refresh
    )
    # waitress: a production WSGI server in pure Python, threads for concurrent viewers.
    try:
        server = waitress.create_server(
            app, host=args.host, port=args.port, threads=8, ident="memtail"
        )
    except OSError as error:
        raise UsageError(
            f"--host/--port: cannot listen on {args.host}:{args.port} ({error.strerror or error}); "
            "choose another with --port (or stop what uses it)"
        ) from None
    print(f"dashboard of {where} on http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    server.run()
    return 0
