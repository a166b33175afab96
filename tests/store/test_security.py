"""The analysts' role reads results and cannot change anything."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import analyst_role, create_pg_database, drop_pg_database, granted_analyst
from tests.helpers import make_experiment, run_all_trials

pytestmark = pytest.mark.postgres


def test_analyst_role_is_read_only(pg_engine: Engine) -> None:
    exp = make_experiment(pg_engine).experiment
    run_all_trials(pg_engine, exp.id, 20, 10)
    with pg_engine.connect() as conn:
        conn.execute(sa.text(f'SET ROLE "{granted_analyst(pg_engine)}"'))
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
    group = granted_analyst(sa.create_engine(pg_url))
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE {name} LOGIN IN ROLE "{group}"'))
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


def test_each_database_has_its_own_analysts_and_no_public_access(pg_admin: Engine) -> None:
    from memtail.store import migrate
    from tests.conftest import _db_url

    first, second = create_pg_database(pg_admin), create_pg_database(pg_admin)
    outsider = f"memtail_test_outsider_{uuid.uuid4().hex[:8]}"
    alice = f"memtail_test_alice_{uuid.uuid4().hex[:8]}"
    try:
        for name in (first, second):
            migrate.upgrade(_db_url(name))
        with pg_admin.connect() as conn:
            conn.execute(sa.text(f'CREATE ROLE {alice} LOGIN IN ROLE "{analyst_role(first)}"'))
            conn.execute(sa.text(f"CREATE ROLE {outsider} LOGIN"))

        def connect(user: str, database: str) -> sa.engine.Connection:
            url = sa.engine.make_url(_db_url(database)).set(username=user)
            return sa.create_engine(url, poolclass=sa.pool.NullPool).connect()

        with connect(alice, first) as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM experiments")).scalar_one() == 0
            # Temporary tables are not for PUBLIC (nor analysts) where memtail owns the database.
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                conn.execute(sa.text("CREATE TEMPORARY TABLE scratch (x int)"))
        # One database's analysts cannot read another's: they cannot even connect to it.
        for user in (alice, outsider):
            with pytest.raises(sa.exc.OperationalError, match="permission denied for database"):
                connect(user, second)
        with pytest.raises(sa.exc.OperationalError, match="permission denied for database"):
            connect(outsider, first)
    finally:
        with pg_admin.connect() as conn:
            for name in (first, second):
                drop_pg_database(pg_admin, name)
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {alice}"))
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {outsider}"))
