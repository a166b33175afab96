"""Partial index on pending trials in trial order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

The coordinator's dispatch and a worker's chained claim both ask for the lowest-index
pending trials of one experiment. With only (experiment_id, status) indexed, PostgreSQL
sorts every pending row for each claim; near the end of a 100,000-trial experiment it
would walk the finished ones instead. The partial index holds pending rows only, in order.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from memtail.status import TrialStatus

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_trials_pending_order",
        "trials",
        ["experiment_id", "trial_index"],
        postgresql_where=sa.text(f"status = '{TrialStatus.PENDING}'"),
        sqlite_where=sa.text(f"status = '{TrialStatus.PENDING}'"),
    )


def downgrade() -> None:
    op.drop_index("ix_trials_pending_order", table_name="trials")
