"""Lost claims apart from failures, and a baseline for retried trials: trials.lost,
trials.retried_attempts.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

A claim whose worker died (killed, its lease expired, its run stopped) recorded no error:
the trial did not fail. ``lost`` counts those claims apart, under a much larger bound
than real errors. ``memtail experiment retry`` puts failed trials back without lowering
``attempts`` (fencing needs it monotonic): ``retried_attempts`` is the claim count at the
last retry, and the failure bound counts only claims since.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "trials",
        sa.Column(
            "lost",
            sa.Integer(),
            nullable=False,
            server_default="0",
            comment="claims whose worker died without an error (not failures)",
        ),
    )
    op.add_column(
        "trials",
        sa.Column(
            "retried_attempts",
            sa.Integer(),
            nullable=False,
            server_default="0",
            comment="attempts at the last `experiment retry`; the bounds count claims since",
        ),
    )


def downgrade() -> None:
    op.drop_column("trials", "retried_attempts")
    op.drop_column("trials", "lost")
