"""Engines for PostgreSQL (the service) and SQLite (the embedded default).

Engines are created by each process after it forks (never at import time), with
pre-ping so a PostgreSQL restart costs one failed checkout instead of a crashed worker.
``Engine`` is the handle the layers above pass around, and ``DatabaseError`` what any
database failure raises; neither needs them to know SQLAlchemy.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from memtail.store.urls import display_url

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Any error the database driver reports (connection lost, constraint, syntax).
DatabaseError = sa.exc.DBAPIError


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with memtail's connection policy for the URL's dialect."""
    if url.startswith("sqlite"):
        # 60 s busy timeout: local worker processes share one file and take turns writing.
        engine = sa.create_engine(url, connect_args={"timeout": 60}, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 2)
    kwargs.setdefault("max_overflow", 4)
    engine = sa.create_engine(url, **kwargs)
    _attach_autocommit(engine, kwargs)
    return engine


# PostgreSQL engine -> its sibling for one_statement (see there); dies with the engine.
_AUTOCOMMIT: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def _attach_autocommit(engine: Engine, kwargs: dict[str, Any]) -> None:
    # Connections of the sibling are switched to autocommit once, when they connect,
    # instead of on every checkout and back on every checkin. It skips the pre-ping, a
    # round trip per statement: every caller of one_statement retries on a connection
    # invalidated by a server restart (with_retries), and the first such failure
    # invalidates the whole pool, so one retry reaches a fresh connection.
    sibling = sa.create_engine(
        engine.url, **{**kwargs, "isolation_level": "AUTOCOMMIT", "pool_pre_ping": False}
    )
    _AUTOCOMMIT[engine] = sibling

    @sa.event.listens_for(engine, "engine_disposed")
    def _dispose_sibling(_engine: Engine) -> None:
        sibling.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so BEGIN is ours (see _on_begin).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        # WAL: readers never block the writer, so `sqlite3 memtail.db` works during a run.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and
        # then writes can fail with SQLITE_BUSY instead of waiting, when another process
        # wrote in between. Read-only units opt out to stay concurrent.
        if conn.get_execution_options().get("readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def transaction(engine: Engine, *, readonly: bool = False) -> Iterator[Connection]:
    """One short transaction: commit on success, roll back on any exception."""
    target = engine.execution_options(readonly=True) if readonly else engine
    with target.begin() as conn:
        yield conn


@contextmanager
def one_statement(engine: Engine) -> Iterator[Connection]:
    """A unit of work that is one SQL statement, atomic by itself.

    On PostgreSQL it runs in autocommit: psycopg2 would otherwise spend a round trip on
    BEGIN and another on COMMIT around it, and on a worker host whose cores are all
    training each round trip waits about a millisecond for the server to be scheduled
    (measured by benchmarks/system_overhead.py). Engines from :func:`make_engine` run it
    on a sibling pool that is in autocommit already (measured: a claim took 3.4 ms of
    wall and 1.3 ms of client CPU through the shared pool, 2.1 ms and 0.7 ms through the
    sibling). SQLite keeps its usual transaction.
    """
    if not is_postgres(engine):
        with transaction(engine) as conn:
            yield conn
        return
    sibling = _AUTOCOMMIT.get(engine)
    if sibling is not None:
        with sibling.connect() as conn:
            yield conn
        return
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


def describe_database(url: str | sa.engine.URL) -> tuple[str, str | None]:
    """How to name a database to a user (SQLite's file, or the URL without any of its
    credentials), and for SQLite a shell command that queries it."""
    parsed = sa.engine.make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return str(
            parsed.database
        ), f"sqlite3 {parsed.database} 'SELECT * FROM experiment_progress'"
    return display_url(parsed), None


def is_postgres(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "postgresql"


class db_now_plus(FunctionElement):  # noqa: N801 - reads like the SQL function it renders
    """``now() + seconds`` evaluated by the database's clock, not the worker's.

    Leases and heartbeats compare timestamps written by many hosts; only the database's
    clock is shared by all of them.
    """

    type = sa.DateTime(timezone=True)
    inherit_cache = True

    def __init__(self, seconds: float | sa.ColumnElement[float]) -> None:
        if not isinstance(seconds, sa.ColumnElement):
            seconds = sa.literal(float(seconds))
        super().__init__(seconds)


@compiles(db_now_plus, "postgresql")
def _now_plus_pg(element: db_now_plus, compiler: Any, **kw: Any) -> str:
    (seconds,) = element.clauses
    return f"(now() + make_interval(secs => {compiler.process(seconds, **kw)}))"


@compiles(db_now_plus, "sqlite")
def _now_plus_sqlite(element: db_now_plus, compiler: Any, **kw: Any) -> str:
    # Same text format SQLAlchemy uses for DateTime on SQLite, so comparisons are exact.
    (seconds,) = element.clauses
    arg = compiler.process(seconds, **kw)
    return f"strftime('%Y-%m-%d %H:%M:%f000', 'now', ({arg}) || ' seconds')"


def is_transient(error: BaseException) -> bool:
    """A connection-level failure (server restart, failover, network blip), worth a retry.

    Constraint violations and programming errors are not: retrying cannot fix them.
    """
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError)


def with_retries(
    work: Callable[[], T],
    *,
    attempts: int = 8,
    first_delay: float = 0.5,
    max_delay: float = 15.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``work`` (one transaction) again after transient database errors.

    Bounded exponential backoff: 8 attempts wait about 1 minute in all, enough for a
    PostgreSQL restart or failover, short enough that a real outage still surfaces.
    ``work`` must be a whole transaction, so a retry never repeats half of one.
    """
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except sa.exc.DBAPIError as error:
            if attempt == attempts or not is_transient(error):
                raise
            log.warning("database unavailable (%s); retry %d in %.1fs", error.orig, attempt, delay)
            sleep(delay)
            delay = min(delay * 2, max_delay)
    raise AssertionError("unreachable")


def as_utc(value: datetime | None) -> datetime | None:
    """A timestamp read back as an aware UTC datetime: SQLite hands back naive UTC ones,
    PostgreSQL aware ones."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
