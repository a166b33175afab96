"""Alembic creates the schema; it must agree with memtail.db.tables on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from memtail.db import migrate
from memtail.db.engine import make_engine
from memtail.db.tables import metadata

TABLES = {
    "experiments",
    "examples",
    "trials",
    "trial_outcomes",
    "memorization",
    "influence",
    "estimate_runs",
}
VIEWS = {"high_influence_pairs", "experiment_progress"}


def _roundtrip(url: str) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        inspector = sa.inspect(engine)
        assert TABLES <= set(inspector.get_table_names())
        assert VIEWS <= set(inspector.get_view_names())
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, metadata)
        assert diff == [], f"migrations and memtail.db.tables disagree: {diff}"
        with engine.connect() as conn:
            # The views compile and run against the empty schema.
            assert conn.execute(sa.text("SELECT * FROM high_influence_pairs")).all() == []
            assert conn.execute(sa.text("SELECT * FROM experiment_progress")).all() == []
    finally:
        engine.dispose()

    migrate.downgrade(url, "base")
    engine = make_engine(url)
    try:
        inspector = sa.inspect(engine)
        assert not (TABLES | VIEWS) & set(inspector.get_table_names() + inspector.get_view_names())
    finally:
        engine.dispose()
    # And back up again: downgrade left nothing behind that blocks a fresh upgrade.
    migrate.upgrade(url)


@pytest.mark.postgres
def test_migrations_postgres(pg_empty_url: str) -> None:
    _roundtrip(pg_empty_url)


def test_migrations_sqlite(tmp_path: Path) -> None:
    _roundtrip(f"sqlite:///{tmp_path / 'm.db'}")
