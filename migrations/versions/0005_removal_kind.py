"""Experiments of kind 'removal': retraining on fixed subsets (the paper's marginal utility).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

A removal experiment trains every trial on one stored subset (the full training set, or it
minus a removed set) to measure what removing examples costs; only the CHECK on
experiments.kind changes. SQLite cannot alter a CHECK, so there the table is rebuilt
(batch mode), with foreign keys off so that dropping the old table touches no trials, and
with the two views dropped first and created again after (SQLite re-parses every view
when the rebuilt table is renamed into place).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

VIEWS = ("experiment_progress", "high_influence_pairs")


def _initial() -> object:
    """Revision 0001's module, for its view definitions (one source for their SQL)."""
    path = Path(__file__).with_name("0001_initial_schema.py")
    spec = importlib.util.spec_from_file_location("memtail_migration_0001", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _set_kinds(kinds: tuple[str, ...]) -> None:
    check = "kind IN (" + ", ".join(f"'{k}'" for k in kinds) + ")"
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_experiments_kind"), "experiments", type_="check")
        op.create_check_constraint(op.f("ck_experiments_kind"), "experiments", check)
        return
    initial = _initial()
    if op.get_bind().exec_driver_sql("PRAGMA foreign_keys").scalar():
        # migrations/env.py turns them off for SQLite; without that the rebuild below
        # would delete every trial of every experiment.
        raise RuntimeError("foreign keys must be off to rebuild experiments on SQLite")
    for view in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    with op.batch_alter_table("experiments", recreate="always") as batch:
        batch.drop_constraint(op.f("ck_experiments_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_experiments_kind"), check)
    op.execute(initial.HIGH_INFLUENCE_PAIRS)  # type: ignore[attr-defined]
    op.execute(initial.EXPERIMENT_PROGRESS)  # type: ignore[attr-defined]
    broken = op.get_bind().exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise RuntimeError(f"rebuilding experiments broke {len(broken)} references")


def upgrade() -> None:
    _set_kinds(("subsample", "removal"))


def downgrade() -> None:
    # The old CHECK cannot hold removal experiments: they go, with every row of theirs.
    # Explicitly, child tables first: on SQLite foreign keys are off here (env.py).
    removal = "SELECT id FROM experiments WHERE kind = 'removal'"
    op.execute(
        "DELETE FROM trial_outcomes WHERE trial_id IN "
        f"(SELECT id FROM trials WHERE experiment_id IN ({removal}))"
    )
    for table in ("influence", "memorization", "estimate_runs", "trials", "examples"):
        op.execute(f"DELETE FROM {table} WHERE experiment_id IN ({removal})")
    op.execute("DELETE FROM experiments WHERE kind = 'removal'")
    _set_kinds(("subsample",))
