"""The commands that make and run experiments: db, experiment, estimate, coordinator, run.

The grammar lives in ``memtail.cli.grammar``; user mistakes propagate as typed errors that
``memtail.cli.main`` turns into one line and exit status 2. Heavy modules (torch,
matplotlib, Celery) are imported inside each command, after its arguments are checked,
so ``memtail --help`` and a mistake's one line stay fast (tests/cli/test_import_late.py).
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
    UsageError,
    load_spec_arg,
    open_engine,
    output_folder,
    settings_from,
    undone_if_refused,
)
from memtail.config import Settings

if TYPE_CHECKING:
    from memtail.specification import ExperimentSpec
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

    engine = open_engine(settings)
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
            open_engine(settings),
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
    engine = open_engine(settings)
    device = settings.estimator_device
    if args.name is not None:  # an empty name is no experiment: never estimate them all
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
    from memtail.specification import load_spec
    from memtail.training.registry import check_names
    from memtail.work.broker import Broker
    from memtail.work.coordinator import coordinate_once, run_forever

    settings = settings_from(args)
    engine = open_engine(settings)
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
    from memtail.views.summary import dashboard_hint, next_steps, print_summary
    from memtail.work import preflight
    from memtail.work.embedded import embedded_settings
    from memtail.work.session import LocalSession

    out = output_folder(args.out)
    preflight.check(settings_from(args))  # refused before anything is written or claimed
    spec = load_spec_arg(args.spec, args)
    # torch and matplotlib load only once the arguments and the spec are good.
    from memtail.training.datasets import load_dataset
    from memtail.views.plots import file_stem, plot_experiment
    from memtail.views.report import render_report, write_report
    from memtail.work.launch import launch

    with undone_if_refused(out, ("memtail.db",)):
        settings = embedded_settings(settings_from(args), out)
        upgrade(settings.database_url)
        engine = open_engine(settings)
        try:
            launched = launch(engine, spec, settings.data_root, download=args.download)
        except BaseException:
            engine.dispose()  # closes the file before a new one is removed
            raise
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

    def grew(was: int, now: int) -> None:
        # Its stopping rules were not met at this look: they added the next batch.
        print(f"stopping rules not met at {was} trials; training up to {now}")

    try:
        with LocalSession(engine, settings, args.workers or os.cpu_count() or 1) as session:
            finished = session.run(experiment, on_grow=grew)
    except KeyboardInterrupt as stop:
        stored = _stored(engine, experiment.id)
        raise Interrupted(f"{stored}; run the same command to resume") from stop
    final = finished.experiment
    if finished.paused:
        print(
            f"experiment {final.name!r} was paused: {_stored(engine, final.id)}; "
            f"`memtail experiment resume {final.name}`, then run the same command"
        )
        return 0
    print_summary(engine, final.id, settings.database_url)
    dataset = launched.dataset or load_dataset(spec.dataset, settings.data_root)
    for path in plot_experiment(engine, final, out, dataset):
        print(f"  plot: {path}")
    html = render_report(
        engine,
        [final],
        describe_database(settings.database_url)[0],
        images=lambda _experiment: dataset,
    )
    report = write_report(html, out / f"{file_stem(final.name)}-report.html")
    print(f"  report: {report} (one HTML file, figures inline: open it in a browser)")
    print(dashboard_hint(settings.database_url))
    print(next_steps(settings.database_url, experiment.name))
    return 0


def _stored(engine: Engine, experiment_id: int) -> str:
    """E.g. "412/1000 trials stored", of the experiment's target as it is now."""
    from memtail.status import TrialStatus
    from memtail.store.experiments import get_experiment
    from memtail.store.trials import status_counts

    total = get_experiment(engine, experiment_id).target_trials
    return f"{status_counts(engine, experiment_id)[TrialStatus.SUCCEEDED]}/{total} trials stored"


def cmd_dashboard(args: argparse.Namespace) -> int:
    from memtail.cli.images import dataset_images
    from memtail.store.engine import describe_database

    settings = settings_from(args)
    _check_listen_host(args.host, args.port)
    engine = open_engine(settings)
    # Flask, waitress and matplotlib load once the arguments and the database are good.
    import waitress

    from memtail.views.dashboard import create_app

    where = describe_database(settings.database_url)[0]
    app = create_app(
        engine,
        images=dataset_images(settings.data_root),
        database=where,
        refresh_seconds=args.refresh,
        allowed_hosts=(args.host, *settings.dashboard_host_names, *args.allowed_host),
    )
    # waitress: a production WSGI server in pure Python, threads for concurrent viewers.
    try:
        server = waitress.create_server(
            app, host=args.host, port=args.port, threads=8, ident="memtail"
        )
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or error
        raise UsageError(
            f"--host/--port: cannot listen on {args.host}:{args.port} ({reason}); "
            "choose another with --port (or stop what uses it)"
        ) from None
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"dashboard of {where} on http://{shown}:{args.port}/ (Ctrl-C stops it)", flush=True)
    server.run()
    return 0


def _check_listen_host(host: str, port: int) -> None:
    """``--host`` names an address of this machine, checked before anything is opened
    (waitress would fail later, in a traceback)."""
    import socket

    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise UsageError(
            f"--host: {host!r} is no address this machine can listen on ({reason}); give "
            "127.0.0.1 (this machine only), 0.0.0.0 (every interface) or one of its names"
        ) from None
