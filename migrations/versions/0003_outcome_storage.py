"""Store packed bits without compression attempts, outcomes inline.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Packed correctness and membership bits are close to random, so PostgreSQL's pglz
compression only costs CPU (EXTERNAL: out-of-line when large, never compressed). Outcome
rows are written once and never updated, so letting them stay inline up to a full page
(toast_tuple_target) saves the TOAST pointer and chunk overhead: measured with
benchmarks/storage.py at 50k train / 10k test examples, trial_outcomes drops from 10,158 to
8,520 bytes per trial. PostgreSQL only.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OUTCOME_COLUMNS = ("train_correct", "test_correct", "train_margin", "test_margin")


def _storage(table: str, columns: tuple[str, ...], mode: str) -> None:
    clauses = ", ".join(f"ALTER COLUMN {c} SET STORAGE {mode}" for c in columns)
    op.execute(f"ALTER TABLE {table} {clauses}")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE trial_outcomes SET (toast_tuple_target = 8160)")
    _storage("trial_outcomes", OUTCOME_COLUMNS, "EXTERNAL")
    _storage("trials", ("subset",), "EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _storage("trials", ("subset",), "EXTENDED")
    _storage("trial_outcomes", OUTCOME_COLUMNS, "EXTENDED")
    op.execute("ALTER TABLE trial_outcomes RESET (toast_tuple_target)")
