"""The ``memtail`` command line's grammar: every command, argument, help text and default.

Each command names its handler, a function of ``memtail.cli``'s command modules; those
import the library inside the handlers, so ``memtail --help`` needs neither torch nor
SQLAlchemy. Here are the global flags, ``memtail run`` and ``memtail experiment``;
``questions`` holds the commands that read results, ``operations`` those that run
memtail's processes.
"""

from __future__ import annotations

import argparse

from memtail.cli import commands, lifecycle, operations, questions
from memtail.cli.parser import WORKERS, Help, Parser, at_least, command, real, whole

DESCRIPTION = (
    "memtail: what neural networks memorize (Feldman & Zhang, NeurIPS 2020). Trains models on "
    "random subsets of a training set and estimates each example's memorization and each "
    "train/test pair's influence, with confidence intervals, in SQL tables. Without "
    "--database-url or MEMTAIL_DATABASE_URL every command uses runs/memtail.db, where "
    "`memtail run` writes."
)


def _spec_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="experiment name (default: the spec's, or DATASET-MODEL)")
    parser.add_argument(
        "--trials", type=whole, help="k, the number of trials (the spec's if unset)"
    )
    parser.add_argument("--seed", type=whole, help="experiment seed (the spec's if unset)")
    parser.add_argument(
        "--subset-fraction", type=real, help="m / n_train, the subset size (paper: 0.7)"
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
    parser.add_argument("--epochs", type=whole, help="training epochs per trial")
    rules = parser.add_argument_group(
        "stopping rules", "add trials in growing batches until the answer is decided"
    )
    rules.add_argument(
        "--max-trials", type=whole, help="the cap on trials; --trials is then the first batch"
    )
    rules.add_argument(
        "--stop-decided",
        type=real,
        metavar="SHARE",
        help="stop when this share of examples is decided (interval wholly above or below "
        "the memorization threshold), e.g. 0.99",
    )
    rules.add_argument(
        "--stop-half-width",
        type=real,
        metavar="W",
        help="stop when --stop-coverage of examples have a mem interval within ±W",
    )
    rules.add_argument(
        "--stop-coverage", type=real, metavar="SHARE", help="with --stop-half-width (0.95)"
    )
    rules.add_argument(
        "--stop-pairs-stable",
        type=real,
        metavar="J",
        help="stop when the split-half Jaccard of the high-influence pairs reaches J",
    )
    parser.add_argument(
        "--fdr",
        type=real,
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


def _experiment_commands(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser(
        "experiment", help="create, list, extend, pause, resume, retry or delete experiments"
    ).add_subparsers(dest="experiment", required=True, metavar="ACTION")
    create = command(
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
    command(exp, "list", lifecycle.cmd_list, "every experiment with its progress")
    extend = command(
        exp,
        "extend",
        lifecycle.cmd_extend,
        "raise an experiment's number of trials k (estimates keep folding in)",
    )
    extend.add_argument("name", help="the experiment")
    extend.add_argument(
        "--trials", type=at_least(1, 2**31 - 1), required=True, help="the new k, above the current"
    )
    for action, handler, what in (
        (
            "pause",
            lifecycle.cmd_pause,
            "stop claiming the experiment's trials (running ones finish)",
        ),
        ("resume", lifecycle.cmd_resume, "claim the experiment's trials again"),
    ):
        command(exp, action, handler, what).add_argument("name", help="the experiment")
    delete = command(
        exp,
        "delete",
        lifecycle.cmd_delete,
        "delete an experiment with every row of it, in one transaction",
    )
    delete.add_argument("name", help="the experiment")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    retry = command(
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


def _run_command(sub: argparse._SubParsersAction) -> None:
    run = command(
        sub,
        "run",
        commands.cmd_run,
        "embedded: train, estimate and report with SQLite and local processes",
    )
    run.add_argument(
        "spec", nargs="?", default="digits-mlp", help="a TOML spec file or a bundled spec name"
    )
    _spec_flags(run)
    run.add_argument("--workers", type=WORKERS, default=0, help="worker processes; 0: one per core")
    run.add_argument(
        "--out",
        default="runs",
        help="folder for the plots, and for the SQLite database when none is configured",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="memtail", description=DESCRIPTION, formatter_class=Help)
    parser.add_argument(
        "--database-url", help="SQLAlchemy URL of the results database (MEMTAIL_DATABASE_URL)"
    )
    parser.add_argument("--broker-url", help="Celery broker URL (MEMTAIL_BROKER_URL)")
    parser.add_argument("--data-root", help="folder of the datasets (MEMTAIL_DATA_ROOT)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run_command(sub)
    _experiment_commands(sub)
    questions.result_commands(sub)
    questions.analysis_commands(sub)
    operations.process_commands(sub)
    operations.cluster_commands(sub)
    return parser
