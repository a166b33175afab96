"""trials.seconds: how long a trial trained and graded, measured by its worker.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

A trial's duration as ``finished_at - started_at`` is an interval on PostgreSQL but text
arithmetic (0) on SQLite, where timestamps are stored as text; a number of seconds,
written with the outcome, reads the same on both. Trials stored before this revision
keep NULL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "trials",
        sa.Column(
            "seconds",
            sa.Float(),
            nullable=True,
            comment="wall seconds the worker spent training and grading",
        ),
    )


def downgrade() -> None:
    # A plain DROP COLUMN on both (SQLite has one since 3.35): no table rebuild, so the
    # views over trials stay as they are.
    op.drop_column("trials", "seconds")
