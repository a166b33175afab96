"""Fixtures for real services: a PostgreSQL database per test, SQLite files, Redis.

PostgreSQL: one template database is migrated per session; each test gets its own copy
(``CREATE DATABASE ... TEMPLATE``, a file copy, fast) and it is dropped afterwards. Tests
never touch a database they did not create.

Services missing: tests skip with the reason, unless MEMTAIL_REQUIRE_SERVICES=1 (CI sets
it), where a missing server is an error, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from memtail.store import migrate
from memtail.store.engine import make_engine

ADMIN_URL = os.environ.get(
    "MEMTAIL_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("MEMTAIL_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REQUIRE = os.environ.get("MEMTAIL_REQUIRE_SERVICES") == "1"


def _unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not reachable ({type(error).__name__}: {error})"
    if REQUIRE:
        pytest.fail(f"{message}; MEMTAIL_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(f"{message}; start it or set MEMTAIL_REQUIRE_SERVICES=1 to make this fatal")


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    """Autocommit engine on the maintenance database, for CREATE/DROP DATABASE."""
    engine = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as error:
        _unavailable("PostgreSQL", error)
    yield engine
    engine.dispose()


def _db_url(name: str) -> str:
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def create_pg_database(admin: Engine, template: str | None = None) -> str:
    name = f"memtail_test_{uuid.uuid4().hex[:12]}"
    clause = f" TEMPLATE {template}" if template else ""
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}{clause}"))
    return name


def analyst_role(database: str) -> str:
    """The read-only role migration 0007 gives the database ``database``."""
    return f"{database[:55]}_analyst"


def granted_analyst(engine: Engine) -> str:
    """The analyst role that may read this database: its own, or (a test's copy of the
    session's template) the template's, whose migrations created and granted it."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT DISTINCT grantee FROM information_schema.role_table_grants "
                "WHERE table_name = 'experiments' AND privilege_type = 'SELECT' "
                "AND grantee LIKE '%\\_analyst'"
            )
        ).scalar_one()


def drop_pg_database(admin: Engine, name: str) -> None:
    """Drop the database and the analyst role its migrations created (roles outlive it)."""
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(sa.text(f'DROP ROLE IF EXISTS "{analyst_role(name)}"'))


@pytest.fixture(scope="session")
def pg_template(pg_admin: Engine) -> Iterator[str]:
    """A database migrated to head once per session, copied for each test."""
    name = create_pg_database(pg_admin)
    try:
        migrate.upgrade(_db_url(name))
        yield name
    finally:
        drop_pg_database(pg_admin, name)


@pytest.fixture
def pg_empty_url(pg_admin: Engine) -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database (no schema)."""
    name = create_pg_database(pg_admin)
    yield _db_url(name)
    drop_pg_database(pg_admin, name)


@pytest.fixture
def pg_url(pg_admin: Engine, pg_template: str) -> Iterator[str]:
    """URL of a fresh PostgreSQL database at migration head."""
    name = create_pg_database(pg_admin, template=pg_template)
    yield _db_url(name)
    drop_pg_database(pg_admin, name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh SQLite file at migration head."""
    url = f"sqlite:///{tmp_path / 'memtail.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Both backends of the same schema: the service and the embedded default."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return request.getfixturevalue("sqlite_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    eng = make_engine(pg_url)
    yield eng
    eng.dispose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what needs PostgreSQL from the fixtures it uses, so `-m "not postgres"` works."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if any(name.startswith("pg_") for name in fixtures) or params.get("db_url") == "postgresql":
            item.add_marker(pytest.mark.postgres)
