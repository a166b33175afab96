"""Stopping rules: why an experiment stopped, and each estimate's rule values.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

``experiments.stop_reason``: set when stopping rules end an experiment (its rules were met,
or its ``max_trials`` was reached first), in the transaction that marks it complete.
``estimate_runs.rules``: for experiments with rules, what each rule measured on that
estimate (value, target, met, projected trials), the look and its spent confidence; what
``memtail status`` shows. Both NULL otherwise.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "experiments",
        sa.Column("stop_reason", sa.Text(), nullable=True, comment="why its rules stopped it"),
    )
    op.add_column(
        "estimate_runs",
        sa.Column(
            "rules",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=True,
            comment="stopping rules' values",
        ),
    )


def downgrade() -> None:
    op.drop_column("estimate_runs", "rules")
    op.drop_column("experiments", "stop_reason")
