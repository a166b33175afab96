"""The ``memtail`` command line: the parser and error handling.

User mistakes (bad spec fields, missing datasets, unknown experiments, bad settings)
become a one-line ``memtail: error: ...`` with exit status 2 and nothing written; the
subcommands themselves are in ``commands`` (experiments and processes), ``results`` and
``analyses``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from memtail.cli.analyses import cmd_compare, cmd_removal, cmd_stability, cmd_utility
from memtail.cli.commands import (
    cmd_coordinator,
    cmd_db_upgrade,
    cmd_estimate,
    cmd_experiment_create,
    cmd_experiment_list,
    cmd_run,
)
from memtail.cli.results import cmd_export, cmd_pairs, cmd_plot, cmd_status, cmd_top
from memtail.config import ConfigError


def _add_spec_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="experiment name (overrides the spec)")
    parser.add_argument("--trials", type=int, help="k: number of trials")
    parser.add_argument("--seed", type=int, help="experiment seed")
    parser.add_argument("--subset-fraction", type=float, help="m / n_train (paper: 0.7)")
    parser.add_argument("--dataset", help="dataset name")
    parser.add_argument("--model", help="model name")
    parser.add_argument("--epochs", type=int, help="training epochs")
    parser.add_argument(
        "--set", action="append", metavar="FIELD=VALUE", help="any spec field, e.g. model.width=64"
    )
    parser.add_argument(
        "--download", action="store_true", help="download a torchvision dataset if missing"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memtail", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="overrides MEMTAIL_DATABASE_URL")
    parser.add_argument("--broker-url", help="overrides MEMTAIL_BROKER_URL")
    parser.add_argument("--data-root", help="overrides MEMTAIL_DATA_ROOT")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    db.add_parser("upgrade", help="apply migrations (alembic upgrade head)").set_defaults(
        func=cmd_db_upgrade
    )

    exp = sub.add_parser("experiment", help="define experiments").add_subparsers(
        dest="experiment", required=True
    )
    create = exp.add_parser("create", help="validate a spec and insert its trials")
    create.add_argument(
        "spec", nargs="?", help="TOML spec or bundled spec name (fields can also be flags)"
    )
    _add_spec_flags(create)
    create.add_argument(
        "--no-dispatch", action="store_true", help="leave dispatch to the coordinator"
    )
    create.set_defaults(func=cmd_experiment_create)
    exp.add_parser("list", help="all experiments").set_defaults(func=cmd_experiment_list)

    status = sub.add_parser("status", help="progress, rate, ETA and estimate freshness")
    status.add_argument("name", nargs="?")
    status.add_argument("--watch", action="store_true", help="refresh until complete")
    status.add_argument("--interval", type=float, default=5.0)
    status.set_defaults(func=cmd_status)

    for name, func, what in (
        ("top", cmd_top, "most memorized examples"),
        ("pairs", cmd_pairs, "high-influence pairs"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("name")
        p.add_argument("-n", "--limit", type=int, default=20)
        p.set_defaults(func=func)

    export = sub.add_parser("export", help="Feldman & Zhang .npz layout")
    export.add_argument("name")
    export.add_argument("--out", required=True)
    export.set_defaults(func=cmd_export)

    compare = sub.add_parser(
        "compare", help="agreement of two experiments on the same data (e.g. two models)"
    )
    compare.add_argument("a")
    compare.add_argument("b")
    compare.add_argument(
        "--mem-threshold", type=float, help="memorized: mem >= this (default: a's spec)"
    )
    compare.add_argument("--out", default=".", help="folder for the scatter plot (PNG)")
    compare.set_defaults(func=cmd_compare)

    stability = sub.add_parser(
        "stability", help="agreement of the estimates from two random halves of the trials"
    )
    stability.add_argument("name")
    stability.add_argument("--seed", type=int, default=0, help="seed of the random split")
    stability.add_argument("--out", default=".", help="folder for the scatter plot (PNG)")
    stability.set_defaults(func=cmd_stability)

    removal = sub.add_parser(
        "removal", help="retrain without the memorized examples vs a random set (3 arms)"
    )
    removal.add_argument("source", help="a subsample experiment with estimates")
    removal.add_argument("--trials-per-arm", type=int, default=5)
    removal.add_argument(
        "--mem-threshold", type=float, help="memorized: mem >= this (default: the source's)"
    )
    removal.add_argument("--seed", type=int, default=0, help="seed of the random removed set")
    removal.add_argument(
        "--run", action="store_true", help="train the arms here (embedded), then report"
    )
    removal.add_argument("--workers", type=int, default=0, help="with --run (default: cores)")
    removal.add_argument("--out", default=".", help="with --run: folder for the plot (PNG)")
    removal.set_defaults(func=cmd_removal)

    utility = sub.add_parser(
        "utility", help="test accuracy of the removal arms: what memorized examples are worth"
    )
    utility.add_argument("name", help="the source experiment of `memtail removal`")
    utility.add_argument("--out", default=".", help="folder for the bar plot (PNG)")
    utility.set_defaults(func=cmd_utility)

    plot = sub.add_parser("plot", help="PNG plots of the results")
    plot.add_argument("name")
    plot.add_argument("--out", default=".", help="folder for the PNG files")
    plot.add_argument(
        "--no-images", action="store_true", help="skip image grids (no dataset needed)"
    )
    plot.set_defaults(func=cmd_plot)

    estimate = sub.add_parser("estimate", help="run the estimator now")
    estimate.add_argument("name", nargs="?")
    estimate.set_defaults(func=cmd_estimate)

    coord = sub.add_parser("coordinator", help="long-running dispatcher and reaper")
    coord.add_argument(
        "--create", action="append", metavar="SPEC", help="create this experiment first"
    )
    coord.add_argument("--download", action="store_true")
    coord.add_argument("--once", action="store_true", help="one pass, then exit")
    coord.set_defaults(func=cmd_coordinator)

    run = sub.add_parser("run", help="embedded: SQLite + local worker processes, no servers")
    run.add_argument("spec", nargs="?", help="TOML spec or bundled spec name (default: digits-mlp)")
    _add_spec_flags(run)
    run.add_argument("--workers", type=int, default=0, help="worker processes (default: cores)")
    run.add_argument("--out", default="runs", help="folder of the SQLite database and plots")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "coordinator" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from memtail.analyses.comparison import ComparisonError
    from memtail.analyses.removal import RemovalError
    from memtail.spec import SpecError
    from memtail.store.experiments import ExperimentNotFound
    from memtail.training.datasets import DatasetError
    from memtail.training.networks import ModelError

    errors = (
        ConfigError,
        SpecError,
        DatasetError,
        ModelError,
        ExperimentNotFound,
        ComparisonError,
        RemovalError,
    )
    try:
        return int(args.func(args) or 0)
    except errors as error:
        print(f"memtail: error: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"memtail: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
