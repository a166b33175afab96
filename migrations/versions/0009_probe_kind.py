"""Experiments of kind 'probe': a linear classifier on a trained network's features.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

A probe experiment trains its source's network once on the full training set (trial 0,
the feature trial, which stores the features of every example as an artifact) and then a
linear classifier on those fixed features in each other trial's random subset; its
estimates say how much memorization happens in the last layer alone. Only the CHECK on
experiments.kind changes, the way revision 0005 changed it (a table rebuild on SQLite).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _widening() -> object:
    """Revision 0005's module, for its kind-changing helper (one source for the rebuild)."""
    path = Path(__file__).with_name("0005_removal_kind.py")
    spec = importlib.util.spec_from_file_location("memtail_migration_0005", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def upgrade() -> None:
    _widening()._set_kinds(("subsample", "removal", "probe"))  # type: ignore[attr-defined]


def downgrade() -> None:
    # The old CHECK cannot hold probe experiments: they go, with every row of theirs,
    # children first (on SQLite foreign keys are off here: env.py).
    probes = "SELECT id FROM experiments WHERE kind = 'probe'"
    op.execute(
        "DELETE FROM trial_outcomes WHERE trial_id IN "
        f"(SELECT id FROM trials WHERE experiment_id IN ({probes}))"
    )
    op.execute(
        "DELETE FROM artifact_chunks WHERE artifact_id IN "
        f"(SELECT id FROM artifacts WHERE experiment_id IN ({probes}))"
    )
    for table in (
        "artifacts",
        "estimator_locks",
        "influence",
        "memorization",
        "estimate_runs",
        "trials",
        "examples",
    ):
        op.execute(f"DELETE FROM {table} WHERE experiment_id IN ({probes})")
    op.execute("DELETE FROM experiments WHERE kind = 'probe'")
    _widening()._set_kinds(("subsample", "removal"))  # type: ignore[attr-defined]
