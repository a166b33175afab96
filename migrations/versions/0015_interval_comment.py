"""The memorization interval's column comment names both methods: memorization.ci_low.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

With ``stopping.spending`` set to O'Brien-Fleming or Pocock, the intervals are the
square-and-add of Clopper-Pearson limits instead of Newcombe's; ``estimate_runs.rules``
records which (``"interval"``). Only the comment changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_OLD = "Newcombe hybrid score interval"
_NEW = (
    "Newcombe hybrid score interval, or Clopper-Pearson square-and-add "
    "(estimate_runs.rules.interval)"
)


def _comment(comment: str, existing: str) -> None:
    # SQLite keeps no column comments: there is nothing to change (and a batch alter
    # would copy the whole table for nothing).
    if op.get_bind().dialect.name != "postgresql":
        return
    op.alter_column(
        "memorization", "ci_low", existing_type=sa.Float(), existing_nullable=True,
        comment=comment, existing_comment=existing,
    )  # fmt: skip


def upgrade() -> None:
    _comment(_NEW, _OLD)


def downgrade() -> None:
    _comment(_OLD, _NEW)
