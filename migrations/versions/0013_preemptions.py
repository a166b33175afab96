"""Preempted trials and resumed training: trials.preemptions, trials.resumed_seconds.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02

A worker told to stop (SIGTERM from SLURM, Kubernetes or a spot-instance notice) saves
its trial's training state as a checkpoint artifact and hands the trial back to pending.
That is not the trial's fault: ``preemptions`` counts those hand-backs apart from failed
attempts (a trial fails for good after ``attempts - preemptions`` failures, or after too
many preemptions), and the claim counter ``attempts`` still grows with every claim, so
fencing is unchanged. ``resumed_seconds``: of a succeeded trial's ``seconds``, the
training time a checkpoint carried over from earlier attempts, which resuming saved.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "trials",
        sa.Column(
            "preemptions",
            sa.Integer(),
            nullable=False,
            server_default="0",
            comment="times a worker stopped and handed it back (not failures)",
        ),
    )
    op.add_column(
        "trials",
        sa.Column(
            "resumed_seconds",
            sa.Float(),
            nullable=True,
            comment="training seconds a checkpoint carried over from earlier attempts",
        ),
    )


def downgrade() -> None:
    op.drop_column("trials", "resumed_seconds")
    op.drop_column("trials", "preemptions")
