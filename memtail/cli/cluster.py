"""Workers on clusters: ``memtail worker`` (a trial worker that only needs the database)
and ``memtail slurm submit|status`` (job arrays of them on SLURM)."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

from memtail.cli.arguments import (
    UsageError,
    checked_path,
    open_engine,
    output_folder,
    settings_from,
)
from memtail.specification.rules import has_control_character


def cmd_worker(args: argparse.Namespace) -> int:
    from memtail.store.experiments import get_experiment
    from memtail.work import preemption, preflight
    from memtail.work.puller import pull

    if args.name is not None and (not args.name.strip() or has_control_character(args.name)):
        # An unset shell variable (`--name "$NODE"`) would claim as HOST:PID unseen, and a
        # newline would break every log line that names the worker.
        raise UsageError(
            "--name is empty or contains a control character; give the name the worker "
            "claims under, or leave --name out for HOST:PID"
        )
    settings = settings_from(args)
    preflight.check(settings, estimates=False)  # refused before it claims a trial
    engine = open_engine(settings)
    served = [get_experiment(engine, name).id for name in args.experiments] or None
    name = args.name or f"{socket.gethostname()}:{os.getpid()}"
    # SIGTERM mid-trial saves the trial and hands it back; idle, it ends the command.
    preemption.install(settings.stop_grace_seconds)
    print(
        f"worker {name}: serving {', '.join(args.experiments) or 'every active experiment'}; "
        f"exits after {args.idle_exit:g} s without a claimable trial",
        flush=True,
    )
    summary = pull(
        engine,
        settings,
        name,
        experiments=served,
        idle_exit=args.idle_exit,
        on_report=lambda report: print(report, flush=True),
    )
    print(f"worker {name}: {len(summary.reports)} trials; exiting: {summary.reason}", flush=True)
    return 0


def cmd_slurm_submit(args: argparse.Namespace) -> int:
    from memtail.work.slurm import ArrayJob, render, submit

    if not args.dry_run:  # the script and the logs: refused before anything is submitted
        output_folder(args.logs, "--logs")
    env_file = None
    if args.env_file is not None:  # given but empty is a mistake, not "no env file"
        env_file = checked_path(args.env_file, "--env-file")
        if env_file.is_dir():
            raise UsageError(
                f"--env-file {args.env_file} is a folder; give the file of VAR=value lines"
            )
    settings = settings_from(args)
    if settings.database_url.startswith("sqlite"):
        raise UsageError(
            f"MEMTAIL_DATABASE_URL is SQLite ({settings.database_url}): workers on compute "
            "nodes need a PostgreSQL server they can reach; set MEMTAIL_DATABASE_URL="
            "postgresql+psycopg2://USER@HOST/DB (the password in ~/.pgpass or --env-file)"
        )
    if args.experiment is not None:
        from memtail.store.experiments import get_experiment

        get_experiment(open_engine(settings), args.experiment)  # a typo fails here, not on nodes
    job = ArrayJob(
        experiment=args.experiment,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        time=args.time,
        partition=args.partition,
        account=args.account,
        sbatch_args=args.sbatch_arg or [],
        idle_exit=args.idle_exit,
        warning_seconds=int(settings.stop_grace_seconds) + 60,
        logs=Path(args.logs),
        env_file=env_file,
    )
    job.check()
    script = render(job)
    if args.dry_run:
        print(script, end="")
        return 0
    job_id, path = submit(job, script)
    print(f"submitted job array {job_id}: {job.workers} tasks; script {path}")
    print(f"logs: {job.logs.resolve()}/; progress: `memtail slurm status`, `memtail status`")
    return 0


def cmd_slurm_status(args: argparse.Namespace) -> int:
    from memtail.store.workers import worker_states
    from memtail.work.slurm import queue

    tasks = queue()
    print(f"SLURM: {len(tasks)} memtail array tasks queued or running")
    for t in tasks:
        print(
            f"  {t.job_id:<16} {t.name:<28} {t.state:<11} {t.elapsed:>10}/{t.limit:<11} {t.where}"
        )
    engine = open_engine(settings_from(args))
    states = worker_states(engine)
    print(f"database: {len(states)} workers known")
    for w in states:
        doing = f"trial {w.current[1]} of {w.current[0]}" if w.current else "idle"
        seen = "never" if w.last_seen is None else w.last_seen.strftime("%Y-%m-%d %H:%M:%S")
        print(f"  {w.worker:<40} last seen {seen}  stored {w.succeeded:>5}  {doing}")
    return 0
