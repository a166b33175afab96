"""False-discovery control for influence pairs: q-values, and an optional FDR level.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02

``influence.q_value``: each stored pair's Benjamini-Hochberg (or -Yekutieli) q-value over
every pair the estimate examined (``memtail.stats.fdr``); exact up to the run's
``estimate_runs.q_exact_below``, an upper bound above it. ``experiments.fdr``: the spec's
``estimate.fdr``; when set, ``high_influence_pairs`` keeps only pairs with q_value at or
below it, on top of the paper's rule. NULL: no level (every pair of the rule, as before).
Rows written before this revision keep a NULL q_value.

The view gains ``q_value`` as its last column: PostgreSQL replaces a view in place (and
keeps its grants) only when columns are added at the end. SQLite has no CREATE OR REPLACE
VIEW; there the view is dropped and created again.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

HIGH_INFLUENCE_PAIRS = """
VIEW high_influence_pairs AS
SELECT i.experiment_id,
       e.name AS experiment,
       i.train_index,
       i.test_index,
       tr.label AS train_label,
       tt.label AS test_label,
       m.mem,
       m.ci_low AS mem_ci_low,
       m.ci_high AS mem_ci_high,
       i.infl,
       i.ci_low AS infl_ci_low,
       i.ci_high AS infl_ci_high,
       i.p_value,
       tr.source AS train_source,
       tt.source AS test_source,
       i.q_value
FROM influence i
JOIN experiments e ON e.id = i.experiment_id
JOIN memorization m
  ON m.experiment_id = i.experiment_id AND m.example_index = i.train_index
JOIN examples tr
  ON tr.experiment_id = i.experiment_id AND tr.split = 'train'
 AND tr.example_index = i.train_index
JOIN examples tt
  ON tt.experiment_id = i.experiment_id AND tt.split = 'test'
 AND tt.example_index = i.test_index
WHERE m.mem >= e.mem_threshold
  AND i.infl >= e.infl_threshold
  AND tr.label = tt.label
  AND (e.fdr IS NULL OR i.q_value <= e.fdr)
"""

# Dropping a PostgreSQL view drops its grants: the downgrade gives the database's analyst
# role (revision 0007) back what it had.
_REGRANT = """
DO $$
DECLARE
    own text := left(current_database(), 55) || '_analyst';
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = own) THEN
        EXECUTE format('GRANT SELECT ON high_influence_pairs TO %I', own);
    END IF;
END
$$
"""


def _initial() -> object:
    """Revision 0001's module, for the view as it was (one source for its SQL)."""
    path = Path(__file__).with_name("0001_initial_schema.py")
    spec = importlib.util.spec_from_file_location("memtail_migration_0001", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def upgrade() -> None:
    op.add_column(
        "experiments",
        sa.Column(
            "fdr",
            sa.Float(),
            nullable=True,
            comment="high_influence_pairs keeps pairs with q_value <= this; NULL: no level",
        ),
    )
    op.add_column(
        "influence",
        sa.Column(
            "q_value", sa.Float(), nullable=True, comment="BH/BY q-value over pairs examined"
        ),
    )
    op.add_column(
        "estimate_runs",
        sa.Column(
            "q_exact_below",
            sa.Float(),
            nullable=True,
            comment="q-values up to this are exact, above it upper bounds",
        ),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE OR REPLACE " + HIGH_INFLUENCE_PAIRS)
    else:
        op.execute("DROP VIEW high_influence_pairs")
        op.execute("CREATE " + HIGH_INFLUENCE_PAIRS)


def downgrade() -> None:
    op.execute("DROP VIEW high_influence_pairs")
    op.execute(_initial().HIGH_INFLUENCE_PAIRS)  # type: ignore[attr-defined]
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_REGRANT)
    op.drop_column("estimate_runs", "q_exact_below")
    op.drop_column("influence", "q_value")
    op.drop_column("experiments", "fdr")
