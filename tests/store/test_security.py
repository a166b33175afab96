"""The analysts' role reads results and cannot change anything."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.helpers import make_experiment, run_all_trials

pytestmark = pytest.mark.postgres


def test_analyst_role_is_read_only(pg_engine: Engine) -> None:
    exp = make_experiment(pg_engine).experiment
    run_all_trials(pg_engine, exp.id, 20, 10)
    with pg_engine.connect() as conn:
        conn.execute(sa.text("SET ROLE memtail_analyst"))
        for table in ("experiments", "memorization", "high_influence_pairs", "trial_outcomes"):
            conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
        assert conn.execute(sa.text("SELECT count(*) FROM trials")).scalar_one() == 12
        for statement in (
            "UPDATE trials SET status = 'failed'",
            "DELETE FROM memorization",
            "INSERT INTO experiments (name) VALUES ('x')",
            "DROP TABLE influence",
            "CREATE TABLE scratch (x int)",
        ):
            savepoint = conn.begin_nested()
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied|must be owner"):
                conn.execute(sa.text(statement))
            savepoint.rollback()
        conn.rollback()


def test_a_login_role_in_the_analyst_group_can_query(pg_url: str, pg_admin: Engine) -> None:
    name = f"memtail_test_alice_{uuid.uuid4().hex[:8]}"
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {name} LOGIN IN ROLE memtail_analyst"))
    try:
        url = sa.engine.make_url(pg_url).set(username=name)
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            progress = conn.execute(sa.text("SELECT count(*) FROM experiment_progress"))
            assert progress.scalar_one() == 0
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                conn.execute(sa.text("DELETE FROM experiments"))
        engine.dispose()
    finally:
        with pg_admin.connect() as conn:
            # The role owns nothing; drop what it was granted in the test database first.
            conn.execute(sa.text(f"DROP ROLE {name}"))
