"""trial_outcomes.train_wrong_class: the class a model predicted for each train example it
got wrong.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

The report shows, beside each memorized example, the class that models which never saw
it predict instead (why an example is atypical or mislabeled is usually in that class).
The correctness bits already say which examples a model got wrong, so only their
predicted classes are stored, in example order, as little-endian uint16 (uint32 past
65,535 classes): two bytes per misclassified train example, a few percent of n_train once
models fit. Trials stored before this revision keep NULL and are left out of that count.

PostgreSQL only: the database's analyst role may also read ``alembic_version``, so that
memtail's own read commands and the dashboard, which check the schema revision before
reading, run as an analyst.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


_GRANT = """
DO $$
DECLARE
    own text := left(current_database(), 55) || '_analyst';
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = own) THEN
        EXECUTE format('%s SELECT ON alembic_version %s %%I', own);
    END IF;
END
$$
"""


def upgrade() -> None:
    op.add_column(
        "trial_outcomes",
        sa.Column(
            "train_wrong_class",
            sa.LargeBinary(),
            nullable=True,
            comment="class predicted for each misclassified train example, LE uint16/32",
        ),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_GRANT % ("GRANT", "TO"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_GRANT % ("REVOKE", "FROM"))
    op.drop_column("trial_outcomes", "train_wrong_class")
