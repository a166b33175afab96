"""estimator_locks, and a read-only analyst role per database that reads nothing else.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

The estimator used to exclude a second estimator of an experiment with a session advisory
lock; any role that may connect can take such a lock, so an analyst could hold it and stop
every estimate. Now it holds the row lock of the experiment's ``estimator_locks`` row for
the run (``SELECT ... FOR UPDATE SKIP LOCKED``), which needs UPDATE on the table, which
analysts do not have.

PostgreSQL only, below: roles are cluster-wide, so 0002's one ``memtail_analyst`` read every
memtail database on the server. Each database now grants SELECT to its own role,
``<database>_analyst`` (``memtail_analyst`` for compose's database ``memtail``), created here
when the migrating role may create roles and otherwise by the administrator first
(services/postgres/init.sh does for compose). Where memtail owns the database, PUBLIC may
no longer connect to it or create temporary tables in it; the owner and the analyst role
may connect.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SHARED = "memtail_analyst"
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
_TABLES = ", ".join(READABLE)


def upgrade() -> None:
    op.create_table(
        "estimator_locks",
        sa.Column(
            "experiment_id",
            sa.Integer(),
            sa.ForeignKey(
                "experiments.id",
                name=op.f("fk_estimator_locks_experiment_id_experiments"),
                ondelete="CASCADE",
            ),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("experiment_id", name=op.f("pk_estimator_locks")),
        comment="One row per estimated experiment; an estimator holds its row lock for a run",
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        DO $$
        DECLARE
            own text := left(current_database(), 55) || '_analyst';
            owner text := (SELECT pg_get_userbyid(datdba) FROM pg_database
                           WHERE datname = current_database());
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = own) THEN
                BEGIN
                    EXECUTE format('CREATE ROLE %I NOLOGIN', own);
                EXCEPTION WHEN insufficient_privilege THEN
                    RAISE NOTICE 'cannot create role %; create it and upgrade again', own;
                END;
            END IF;
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = own) THEN
                EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', own);
                EXECUTE format('GRANT SELECT ON {_TABLES} TO %I', own);
                EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), own);
            END IF;
            IF own <> '{SHARED}' AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{SHARED}')
            THEN
                REVOKE SELECT ON {_TABLES} FROM {SHARED};
                REVOKE USAGE ON SCHEMA public FROM {SHARED};
            END IF;
            IF owner = current_user THEN
                EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC',
                               current_database());
            END IF;
        END
        $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            DO $$
            DECLARE
                own text := left(current_database(), 55) || '_analyst';
                owner text := (SELECT pg_get_userbyid(datdba) FROM pg_database
                               WHERE datname = current_database());
            BEGIN
                IF owner = current_user THEN
                    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO PUBLIC',
                                   current_database());
                END IF;
                IF own <> '{SHARED}' AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = own)
                THEN
                    EXECUTE format('REVOKE SELECT ON {_TABLES} FROM %I', own);
                    EXECUTE format('REVOKE USAGE ON SCHEMA public FROM %I', own);
                    EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM %I',
                                   current_database(), own);
                END IF;
                IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{SHARED}') THEN
                    GRANT USAGE ON SCHEMA public TO {SHARED};
                    GRANT SELECT ON {_TABLES} TO {SHARED};
                END IF;
            END
            $$
            """
        )
    op.drop_table("estimator_locks")
