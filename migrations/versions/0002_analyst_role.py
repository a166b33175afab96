"""Read-only role for analysts: SELECT on the results tables and views, nothing else.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

PostgreSQL only (SQLite has no roles). Roles are cluster-wide, so the role is created
only if missing, and downgrade revokes this database's grants without dropping the role
(other memtail databases in the cluster may still grant to it). Give a person access with
``CREATE ROLE alice LOGIN PASSWORD '...' IN ROLE memtail_analyst;``.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ROLE = "memtail_analyst"
READABLE = (
    "experiments",
    "examples",
    "trials",
    "trial_outcomes",
    "memorization",
    "influence",
    "estimate_runs",
    "high_influence_pairs",
    "experiment_progress",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
                CREATE ROLE {ROLE} NOLOGIN;
            END IF;
        END
        $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {ROLE}")
    op.execute(f"GRANT SELECT ON {', '.join(READABLE)} TO {ROLE}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"REVOKE SELECT ON {', '.join(READABLE)} FROM {ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {ROLE}")
