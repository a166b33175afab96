"""The storage benchmark: bytes per trial in PostgreSQL, with and without margins.

Creates scratch databases (dropped at the end), migrates them, creates an experiment of
50,000 train and 10,000 test examples with k trials (``memtail.store.experiments``), then
claims every trial (``memtail.store.trials``) and stores its outcomes
(``memtail.store.outcomes``) as workers do (synthetic correctness from
``harness.generate``; margins, when on, random float16).
Reported per trial: ``pg_total_relation_size`` of ``trials`` + ``trial_outcomes`` (heap,
TOAST and indexes) divided by k, as the workers left it and after ``VACUUM FULL``, with a
breakdown and the raw payload bytes, for the schema as migrated (migration 0003 keeps
outcome rows inline and never tries to compress random bits).

Needs a PostgreSQL server; run from the repository root:

    python benchmarks/storage.py
    python benchmarks/storage.py --k 200 --pg postgresql+psycopg2://postgres@127.0.0.1/postgres

The budget is 1.1 x (n_train + n_test) / 8 + 1 KB per trial without margins, for
what a trial stores (its outcomes). The subset of each trial is part of the experiment's
definition, written when the experiment is created (n_train / 8 bytes, plus the trial
row); it is reported beside. The last line printed is outcome bytes per trial over budget.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import generate, scratch_database, store_trials  # noqa: E402

TABLES = ("trials", "trial_outcomes")
SIZES = """
SELECT c.relname,
       pg_relation_size(c.oid) AS heap,
       coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) AS toast,
       pg_indexes_size(c.oid) AS indexes,
       pg_total_relation_size(c.oid) AS total
FROM pg_class c WHERE c.relname IN ('trials', 'trial_outcomes') ORDER BY c.relname
"""
PAYLOAD = """
SELECT sum(octet_length(t.subset)), sum(pg_column_size(t.subset)),
       sum(octet_length(o.train_correct) + octet_length(o.test_correct)),
       sum(pg_column_size(o.train_correct) + pg_column_size(o.test_correct)),
       coalesce(sum(octet_length(o.train_margin) + octet_length(o.test_margin)), 0),
       coalesce(sum(pg_column_size(o.train_margin) + pg_column_size(o.test_margin)), 0)
FROM trials t JOIN trial_outcomes o ON o.trial_id = t.id
"""


def measure(admin_url: str, k: int, n_train: int, n_test: int, margins: bool) -> dict:
    rows = generate(k, n_train, n_test, seed=0, planted=0)
    with scratch_database(admin_url) as url:
        engine, _ = store_trials(url, rows, seed=0, name="storage", margins=margins)
        with engine.connect() as conn:
            as_left = conn.execute(sa.text(SIZES)).all()
            payload = conn.execute(sa.text(PAYLOAD)).one()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM FULL trials, trial_outcomes"))
            compact = conn.execute(sa.text(SIZES)).all()
        engine.dispose()
    return {"as_left": as_left, "compact": compact, "payload": payload}


def report(label: str, k: int, result: dict) -> dict[str, float]:
    print(f"-- {label}")
    for when in ("as_left", "compact"):
        for row in result[when]:
            print(
                f"   {when:8} {row.relname:15} heap {row.heap / k:8.0f}  toast "
                f"{row.toast / k:8.0f}  indexes {row.indexes / k:6.0f}  total "
                f"{row.total / k:8.0f} bytes/trial"
            )
    sub_raw, sub_stored, out_raw, out_stored, mar_raw, mar_stored = (
        int(x or 0) for x in result["payload"]
    )
    print(
        f"   payload per trial: subset {sub_raw / k:.0f} (stored {sub_stored / k:.0f}), "
        f"correctness {out_raw / k:.0f} (stored {out_stored / k:.0f}), margins "
        f"{mar_raw / k:.0f} (stored {mar_stored / k:.0f})"
    )
    totals = {when: sum(row.total for row in result[when]) / k for when in ("as_left", "compact")}
    outcomes = {
        when: next(r.total for r in result[when] if r.relname == "trial_outcomes") / k
        for when in ("as_left", "compact")
    }
    print(
        f"   bytes per trial, trials + trial_outcomes: {totals['as_left']:.0f} as left, "
        f"{totals['compact']:.0f} after VACUUM FULL; trial_outcomes alone: "
        f"{outcomes['as_left']:.0f} / {outcomes['compact']:.0f}"
    )
    return {"total": totals["as_left"], "outcomes": outcomes["as_left"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--n-train", type=int, default=50_000)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument(
        "--pg", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres", help="admin URL"
    )
    args = parser.parse_args()
    budget = 1.1 * (args.n_train + args.n_test) / 8 + 1024
    print(f"k={args.k} trials, {args.n_train} train + {args.n_test} test examples")
    per_trial = {}
    for margins in (True, False):
        label = "with margins" if margins else "without margins"
        result = measure(args.pg, args.k, args.n_train, args.n_test, margins)
        per_trial[label] = report(label, args.k, result)
    print(f"budget 1.1 x (n_train + n_test) / 8 + 1 KB = {budget:.0f} bytes per trial")
    for label, value in per_trial.items():
        print(
            f"   {label}: outcomes {value['outcomes']:.0f} bytes per trial "
            f"({value['outcomes'] / budget:.3f} x budget); with the trial row and its "
            f"stored subset {value['total']:.0f}"
        )
    print(
        "ratio outcome bytes per trial (no margins) / budget: "
        f"{per_trial['without margins']['outcomes'] / budget:.3f}"
    )


if __name__ == "__main__":
    main()
