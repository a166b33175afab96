"""The ``memtail`` command line's grammar: every command, argument, help text and default.

Each command names its handler, a function of ``memtail.cli``'s command modules; those
import the library inside the handlers, so ``memtail --help`` needs neither torch nor
SQLAlchemy.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import NoReturn

from memtail.cli import analyses, cluster, commands, lifecycle, results

#: A command's handler: its parsed arguments in, the exit status out.
Handler = Callable[[argparse.Namespace], int]

DESCRIPTION = (
    "memtail: what neural networks memorize (Feldman & Zhang, NeurIPS 2020). Trains models on "
    "random subsets of a training set and estimates each example's memorization and each "
    "train/test pair's influence, with confidence intervals, in SQL tables. Without "
    "--database-url or MEMTAIL_DATABASE_URL every command uses runs/memtail.db, where "
    "`memtail run` writes."
)
FORMATS = ("table", "json", "csv")


class _Parser(argparse.ArgumentParser):
    """Usage mistakes in one line, like every other memtail error, with where to look."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"memtail: error: {message}; see `{self.prog} --help`\n")


#: Numbers in ASCII only: int() and float() also take "٥" or "１", which no one types meaning 5.
_WHOLE = re.compile(r"[+-]?[0-9]{1,30}", re.ASCII)
_REAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(nan|inf)", re.ASCII)
#: The spec's bound on trials (``memtail.specification.rules.MAX_TRIALS``, not imported:
#: --help stays light).
MAX_TRIALS = 100_000
#: Seeds go to numpy's SeedSequence and BIGINT columns.
MAX_SEED = 2**63 - 1
#: More local worker processes than this only thrash (each holds a model and a dataset).
MAX_WORKERS = 1024
DAY = 86_400.0
#: Rows a table command shows at most; the files of `memtail export` hold them all.
LIMIT = 10_000_000


def _whole(text: str) -> int:
    """A whole number in ASCII digits; its range is the spec's to check (naming the field)."""
    if not _WHOLE.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number (digits 0-9)")
    return int(text)


def _real(text: str) -> float:
    """A number in ASCII; its range is the spec's to check (naming the field)."""
    if not _REAL.fullmatch(text.strip().lower()):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number, e.g. 0.25")
    return float(text)


def _at_least(low: int, high: int = MAX_SEED, hint: str = "") -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _whole(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, got {value}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:,}, got {value:,}{hint}")
        return value

    return parse


def _port(text: str) -> int:
    port = _at_least(1)(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port, 1-65535, got {port}")
    return port


def _seconds(high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        if not _REAL.fullmatch(text.strip().lower()):
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number of seconds")
        value = float(text)
        if not 0 < value <= high:  # NaN fails too
            raise argparse.ArgumentTypeError(
                f"must be a positive number of seconds, at most {high:,.0f}, got {text}"
            )
        return value

    return parse


_positive_seconds = _seconds(DAY)
_LIMIT = _at_least(1, LIMIT, " (`memtail export` writes them all)")
_ARM_TRIALS = _at_least(1, MAX_TRIALS, " (the bound of a spec's trials)")
_WORKERS = _at_least(0, MAX_WORKERS)


def _threshold(text: str) -> float:
    value = _real(text)
    if not (math.isfinite(value) and -1 <= value <= 1):
        raise argparse.ArgumentTypeError(
            f"must be in [-1, 1], as memorization is, got {text}; e.g. 0.25 (the paper's)"
        )
    return value


def _host(text: str) -> str:
    from memtail.config import HOST_NAME

    if not HOST_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text[:60]!r} is not a host name or address; give one such as 127.0.0.1, "
            "0.0.0.0, ::1 or dashboard.example.org"
        )
    return text


class _Help(argparse.HelpFormatter):
    """Shows a default wherever there is one worth showing (not None, False or a list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        hidden = default is None or default is False or default is argparse.SUPPRESS
        if not hidden and "%(default)" not in text and not isinstance(default, list):
            text += " (default: %(default)s)"
        return text


def _command(
    sub: argparse._SubParsersAction, name: str, handler: Handler, text: str
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=text, description=text, formatter_class=_Help)
    parser.set_defaults(handler=handler)
    return parser


def _spec_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="experiment name (default: the spec's, or DATASET-MODEL)")
    parser.add_argument(
        "--trials", type=_whole, help="k, the number of trials (the spec's if unset)"
    )
    parser.add_argument("--seed", type=_whole, help="experiment seed (the spec's if unset)")
    parser.add_argument(
        "--subset-fraction", type=_real, help="m / n_train, the subset size (paper: 0.7)"
    )
    parser.add_argument(
        "--dataset",
        help="dataset: synthetic-longtail, digits, mnist, fashion-mnist, cifar10, cifar100, "
        "imagefolder or npz; its own defaults replace the spec's dataset options",
    )
    parser.add_argument(
        "--model",
        help="model: mlp, cnn, fastnet, resnet18, resnet50 or a torchvision classifier; "
        "its own defaults replace the spec's model options",
    )
    parser.add_argument("--epochs", type=_whole, help="training epochs per trial")
    rules = parser.add_argument_group(
        "stopping rules", "add trials in growing batches until the answer is decided"
    )
    rules.add_argument(
        "--max-trials", type=_whole, help="the cap on trials; --trials is then the first batch"
    )
    rules.add_argument(
        "--stop-decided",
        type=_real,
        metavar="SHARE",
        help="stop when this share of examples is decided (interval wholly above or below "
        "the memorization threshold), e.g. 0.99",
    )
    rules.add_argument(
        "--stop-half-width",
        type=_real,
        metavar="W",
        help="stop when --stop-coverage of examples have a mem interval within +-W",
    )
    rules.add_argument(
        "--stop-coverage", type=_real, metavar="SHARE", help="with --stop-half-width (0.95)"
    )
    rules.add_argument(
        "--stop-pairs-stable",
        type=_real,
        metavar="J",
        help="stop when the split-half Jaccard of the high-influence pairs reaches J",
    )
    parser.add_argument(
        "--fdr",
        type=_real,
        metavar="LEVEL",
        help="report only pairs whose Benjamini-Hochberg q-value is at most LEVEL, e.g. 0.1, "
        "on top of the paper's rule",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="FIELD=VALUE",
        help="any spec field, e.g. --set model.width=64 (repeatable)",
    )
    parser.add_argument(
        "--download", action="store_true", help="download a torchvision dataset if missing"
    )


def _format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=FORMATS, default="table", help="table for people, json or csv"
    )


def _experiment_commands(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser(
        "experiment", help="create, list, extend, pause, resume, retry or delete experiments"
    ).add_subparsers(dest="experiment", required=True, metavar="ACTION")
    create = _command(
        exp,
        "create",
        commands.cmd_experiment_create,
        "validate a spec and insert its experiment and trials",
    )
    create.add_argument(
        "spec", nargs="?", help="a TOML spec file or a bundled spec name, e.g. digits-mlp"
    )
    _spec_flags(create)
    create.add_argument(
        "--no-dispatch", action="store_true", help="leave sending messages to the coordinator"
    )
    _command(exp, "list", lifecycle.cmd_list, "every experiment with its progress")
    extend = _command(
        exp,
        "extend",
        lifecycle.cmd_extend,
        "raise an experiment's number of trials k (estimates keep folding in)",
    )
    extend.add_argument("name", help="the experiment")
    extend.add_argument(
        "--trials", type=_at_least(1, 2**31 - 1), required=True, help="the new k, above the current"
    )
    for action, handler, what in (
        (
            "pause",
            lifecycle.cmd_pause,
            "stop claiming the experiment's trials (running ones finish)",
        ),
        ("resume", lifecycle.cmd_resume, "claim the experiment's trials again"),
    ):
        _command(exp, action, handler, what).add_argument("name", help="the experiment")
    delete = _command(
        exp,
        "delete",
        lifecycle.cmd_delete,
        "delete an experiment with every row of it, in one transaction",
    )
    delete.add_argument("name", help="the experiment")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    retry = _command(
        exp,
        "retry",
        lifecycle.cmd_retry,
        "put failed trials back to pending, each with its attempts again; without --failed, "
        "also free running trials whose lease has expired now (counted as lost, not failed), "
        "rather than at the reaper's next pass",
    )
    retry.add_argument("name", help="the experiment")
    retry.add_argument(
        "--failed", action="store_true", help="only the failed trials; leave leases to the reaper"
    )


def _result_commands(sub: argparse._SubParsersAction) -> None:
    status = _command(
        sub,
        "status",
        results.cmd_status,
        "progress, rate, ETA, accuracy and how fresh the estimate is",
    )
    status.add_argument("name", nargs="?", help="one experiment (default: all)")
    status.add_argument("--watch", action="store_true", help="refresh until complete")
    status.add_argument(
        "--interval", type=_positive_seconds, default=5.0, help="seconds between refreshes"
    )
    _format(status)
    for name, handler, what in (
        ("top", results.cmd_top, "the most memorized training examples, with intervals"),
        (
            "pairs",
            results.cmd_pairs,
            "high-influence train/test pairs (the paper's rule), with intervals",
        ),
    ):
        p = _command(sub, name, handler, what)
        p.add_argument("name", help="the experiment")
        p.add_argument("-n", "--limit", type=_LIMIT, default=20, help="rows to show")
        _format(p)
    export = _command(
        sub,
        "export",
        results.cmd_export,
        "write the estimates as files: Feldman & Zhang's .npz layout, CSV or Parquet",
    )
    export.add_argument("name", help="the experiment")
    export.add_argument(
        "--out",
        required=True,
        help="npz: the file to write; csv, parquet: a folder for memorization and pairs files",
    )
    export.add_argument(
        "--format", choices=("npz", "csv", "parquet"), default="npz", help="file format"
    )
    plot = _command(sub, "plot", results.cmd_plot, "PNG plots of an experiment's results")
    plot.add_argument("name", help="the experiment")
    plot.add_argument("--out", default=".", help="folder for the PNG files")
    plot.add_argument(
        "--no-images", action="store_true", help="skip image grids (no dataset needed)"
    )
    report = _command(
        sub,
        "report",
        results.cmd_report,
        "one self-contained HTML report of experiments' findings, figures inline",
    )
    report.add_argument("names", nargs="+", metavar="NAME", help="the experiments")
    report.add_argument("--out", default="report.html", help="the HTML file to write")
    report.add_argument(
        "--no-stability",
        action="store_true",
        help="skip the split-half check (it re-estimates halves of the trials in memory)",
    )


def _analysis_commands(sub: argparse._SubParsersAction) -> None:
    compare = _command(
        sub,
        "compare",
        analyses.cmd_compare,
        "agreement of two experiments on the same data (e.g. two models)",
    )
    compare.add_argument("a", help="the first experiment")
    compare.add_argument("b", help="the second experiment, over the same examples")
    compare.add_argument(
        "--mem-threshold", type=_threshold, help="memorized: mem >= this (default: a's spec)"
    )
    compare.add_argument("--out", default=".", help="folder for the scatter plot (PNG)")
    stability = _command(
        sub,
        "stability",
        analyses.cmd_stability,
        "agreement of the estimates from two random halves of the trials",
    )
    stability.add_argument("name", help="the experiment")
    stability.add_argument("--seed", type=_at_least(0), default=0, help="seed of the random split")
    stability.add_argument("--out", default=".", help="folder for the scatter plot (PNG)")
    removal = _command(
        sub,
        "removal",
        analyses.cmd_removal,
        "retrain without the memorized examples vs a random set (3 arms)",
    )
    removal.add_argument("source", help="a subsample experiment with estimates")
    removal.add_argument("--trials-per-arm", type=_ARM_TRIALS, default=5, help="trials of each arm")
    removal.add_argument(
        "--mem-threshold", type=_threshold, help="memorized: mem >= this (default: the source's)"
    )
    removal.add_argument(
        "--seed", type=_at_least(0), default=0, help="seed of the random removed set"
    )
    removal.add_argument(
        "--run", action="store_true", help="train the arms here (embedded), then report"
    )
    removal.add_argument("--workers", type=_WORKERS, default=0, help="with --run; 0: one per core")
    removal.add_argument("--out", default=".", help="with --run: folder for the plot (PNG)")
    utility = _command(
        sub,
        "utility",
        analyses.cmd_utility,
        "test accuracy of the removal arms: what memorized examples are worth",
    )
    utility.add_argument("name", help="the source experiment of `memtail removal`")
    utility.add_argument("--out", default=".", help="folder for the bar plot (PNG)")
    _format(utility)
    probe = _command(
        sub,
        "probe",
        analyses.cmd_probe,
        "memorization of a linear probe on the network's features (SOURCE-probe)",
    )
    probe.add_argument("source", help="a subsample experiment")
    probe.add_argument(
        "--trials",
        type=_at_least(0, MAX_TRIALS),
        default=0,
        help="probe trials; 0: as many as SOURCE's",
    )
    probe.add_argument(
        "--run", action="store_true", help="train the probe here (embedded), then compare"
    )
    probe.add_argument("--workers", type=_WORKERS, default=0, help="with --run; 0: one per core")
    probe.add_argument("--out", default=".", help="with --run: folder for the figure (PNG)")
    depth = _command(
        sub,
        "depth",
        analyses.cmd_depth,
        "the network vs its probe: is memorization in the representation or the last layer",
    )
    depth.add_argument("name", help="the source experiment of `memtail probe`")
    depth.add_argument("--out", default=".", help="folder for the histogram figure (PNG)")


def _process_commands(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="the database schema").add_subparsers(
        dest="db", required=True, metavar="ACTION"
    )
    _command(
        db,
        "upgrade",
        commands.cmd_db_upgrade,
        "create or migrate the schema (alembic upgrade head)",
    )
    estimate = _command(sub, "estimate", commands.cmd_estimate, "run the estimator now")
    estimate.add_argument("name", nargs="?", help="one experiment (default: all with new trials)")
    coord = _command(
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
    dashboard = _command(
        sub,
        "dashboard",
        commands.cmd_dashboard,
        "a live, read-only web dashboard of every experiment",
    )
    dashboard.add_argument("--host", type=_host, default="127.0.0.1", help="interface to listen on")
    dashboard.add_argument(
        "--allowed-host",
        type=_host,
        action="append",
        default=[],
        metavar="NAME",
        help="a further name the pages are opened by (repeatable; also MEMTAIL_DASHBOARD_HOSTS"
        "): any other Host header is refused, besides 127.0.0.1, localhost, [::1] and --host",
    )
    dashboard.add_argument("--port", type=_port, default=8050, help="port to listen on")
    dashboard.add_argument(
        "--refresh",
        type=_positive_seconds,
        default=5.0,
        help="seconds between the pages' live updates",
    )


def _run_command(sub: argparse._SubParsersAction) -> None:
    run = _command(
        sub,
        "run",
        commands.cmd_run,
        "embedded: train, estimate and report with SQLite and local processes",
    )
    run.add_argument(
        "spec", nargs="?", default="digits-mlp", help="a TOML spec file or a bundled spec name"
    )
    _spec_flags(run)
    run.add_argument(
        "--workers", type=_WORKERS, default=0, help="worker processes; 0: one per core"
    )
    run.add_argument(
        "--out",
        default="runs",
        help="folder for the plots, and for the SQLite database when none is configured",
    )


def _cluster_commands(sub: argparse._SubParsersAction) -> None:
    worker = _command(
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
        type=_seconds(30 * DAY),
        default=300.0,
        help="exit after this many seconds without a claimable trial",
    )
    worker.add_argument("--name", help="the name it claims under (default: HOST:PID)")
    slurm = sub.add_parser(
        "slurm", help="trial workers as a SLURM job array: submit, status"
    ).add_subparsers(dest="slurm", required=True, metavar="ACTION")
    submit = _command(
        slurm,
        "submit",
        cluster.cmd_slurm_submit,
        "submit a job array of `memtail worker`s, one per GPU of each task",
    )
    submit.add_argument("experiment", nargs="?", help="the experiment (default: every active)")
    submit.add_argument(
        "--workers", type=_at_least(1, MAX_TRIALS), required=True, help="array tasks (N)"
    )
    submit.add_argument(
        "--gpus-per-worker",
        type=_at_least(0, 64),
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
        type=_seconds(30 * DAY),
        default=300.0,
        help="workers exit after this many seconds without a claimable trial",
    )
    submit.add_argument("--logs", default="slurm-logs", help="folder for the script and logs")
    submit.add_argument(
        "--env-file",
        help="a file (mode 600) of VAR=value lines the tasks source, e.g. the database URL",
    )
    submit.add_argument("--dry-run", action="store_true", help="print the script, submit nothing")
    _command(
        slurm,
        "status",
        cluster.cmd_slurm_status,
        "memtail's array tasks (squeue) beside the workers the database knows",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="memtail", description=DESCRIPTION, formatter_class=_Help)
    parser.add_argument(
        "--database-url", help="SQLAlchemy URL of the results database (MEMTAIL_DATABASE_URL)"
    )
    parser.add_argument("--broker-url", help="Celery broker URL (MEMTAIL_BROKER_URL)")
    parser.add_argument("--data-root", help="folder of the datasets (MEMTAIL_DATA_ROOT)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run_command(sub)
    _experiment_commands(sub)
    _result_commands(sub)
    _analysis_commands(sub)
    _process_commands(sub)
    _cluster_commands(sub)
    return parser
