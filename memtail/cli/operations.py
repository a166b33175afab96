"""The commands that run memtail's processes: ``db``, ``estimate``, ``coordinator`` and
``dashboard`` of the service, and the cluster's ``worker`` and ``slurm``."""

from __future__ import annotations

import argparse

from memtail.cli import cluster, commands
from memtail.cli.parser import DAY, at_least, command, host, port, refresh_seconds, seconds
from memtail.specification import MAX_TRIALS


def process_commands(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="the database schema").add_subparsers(
        dest="db", required=True, metavar="ACTION"
    )
    command(
        db,
        "upgrade",
        commands.cmd_db_upgrade,
        "create or migrate the schema (alembic upgrade head)",
    )
    estimate = command(sub, "estimate", commands.cmd_estimate, "run the estimator now")
    estimate.add_argument("name", nargs="?", help="one experiment (default: all with new trials)")
    coord = command(
        sub,
        "coordinator",
        commands.cmd_coordinator,
        "the long-running dispatcher and reaper of the service",
    )
    coord.add_argument(
        "--create", action="append", metavar="SPEC", help="create this experiment first"
    )
    coord.add_argument("--download", action="store_true", help="download missing datasets")
    coord.add_argument("--once", action="store_true", help="one pass, then exit")
    dashboard = command(
        sub,
        "dashboard",
        commands.cmd_dashboard,
        "a live, read-only web dashboard of every experiment",
    )
    dashboard.add_argument("--host", type=host, default="127.0.0.1", help="interface to listen on")
    dashboard.add_argument(
        "--allowed-host",
        type=host,
        action="append",
        default=[],
        metavar="NAME",
        help="a further name the pages are opened by (repeatable; also MEMTAIL_DASHBOARD_HOSTS"
        "): any other Host header is refused, besides 127.0.0.1, localhost, [::1] and --host",
    )
    dashboard.add_argument("--port", type=port, default=8050, help="port to listen on")
    dashboard.add_argument(
        "--refresh",
        type=refresh_seconds,
        default=5.0,
        help="seconds between the pages' live updates",
    )


def cluster_commands(sub: argparse._SubParsersAction) -> None:
    worker = command(
        sub,
        "worker",
        cluster.cmd_worker,
        "a trial worker that claims trials from the database (no broker), e.g. on a cluster",
    )
    worker.add_argument(
        "experiments", nargs="*", help="experiments to serve (default: every active one)"
    )
    worker.add_argument(
        "--idle-exit",
        type=seconds(30 * DAY),
        default=300.0,
        help="exit after this many seconds without a claimable trial",
    )
    worker.add_argument("--name", help="the name it claims under (default: HOST:PID)")
    slurm = sub.add_parser(
        "slurm", help="trial workers as a SLURM job array: submit, status"
    ).add_subparsers(dest="slurm", required=True, metavar="ACTION")
    submit = command(
        slurm,
        "submit",
        cluster.cmd_slurm_submit,
        "submit a job array of `memtail worker`s, one per GPU of each task",
    )
    submit.add_argument("experiment", nargs="?", help="the experiment (default: every active)")
    submit.add_argument(
        "--workers", type=at_least(1, MAX_TRIALS), required=True, help="array tasks (N)"
    )
    submit.add_argument(
        "--gpus-per-worker",
        type=at_least(0, 64),
        default=1,
        help="GPUs per task, one worker each (0: CPU)",
    )
    submit.add_argument("--time", default="12:00:00", help="each task's time limit")
    submit.add_argument("--partition", help="SLURM partition")
    submit.add_argument("--account", help="SLURM account")
    submit.add_argument(
        "--sbatch-arg", action="append", metavar="ARG", help="any sbatch option (repeatable)"
    )
    submit.add_argument(
        "--idle-exit",
        type=seconds(30 * DAY),
        default=300.0,
        help="workers exit after this many seconds without a claimable trial",
    )
    submit.add_argument("--logs", default="slurm-logs", help="folder for the script and logs")
    submit.add_argument(
        "--env-file",
        help="a file (mode 600) of VAR=value lines the tasks source, e.g. the database URL",
    )
    submit.add_argument("--dry-run", action="store_true", help="print the script, submit nothing")
    command(
        slurm,
        "status",
        cluster.cmd_slurm_status,
        "memtail's array tasks (squeue) beside the workers the database knows",
    )
