"""Opening a memtail database that must already exist, with errors a user can act on.

Commands that read (status, top, pairs, ...) or add to an existing database must never
create an empty SQLite file, and must not die on a driver traceback: ``open_database``
checks that the database exists, is reachable, and holds memtail's schema at the
revision this code needs, and otherwise raises a ``DatabaseUnavailable`` whose one-line
message names the database it looked at and the command that fixes it.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.specification.rules import has_control_character
from memtail.store import migrate
from memtail.store.engine import describe_database, make_engine
from memtail.store.urls import display_url, without_secrets


class DatabaseUnavailable(RuntimeError):
    """The database cannot serve memtail; the message names it and the fix."""


def _parsed(url: str) -> sa.engine.URL:
    """``url`` parsed, with a dialect and driver this installation has, or a one-line error."""
    if has_control_character(url):
        # A newline would make a SQLite file of that name, and cut the error naming it.
        raise DatabaseUnavailable(
            f"{display_url(url)!r} contains a control character (e.g. a newline); give the "
            "URL without it (--database-url, MEMTAIL_DATABASE_URL)"
        )
    try:
        parsed = sa.engine.make_url(url)
        # The driver too: a dialect whose DBAPI module is missing (postgresql:// means
        # psycopg 3 to SQLAlchemy 2.1) would otherwise fail later, in a traceback.
        parsed.get_dialect().import_dbapi()
    except (sa.exc.NoSuchModuleError, ImportError) as error:
        raise DatabaseUnavailable(
            f"{display_url(url)} names a database this memtail cannot use ({error}); use "
            "sqlite:///FILE or postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    except sa.exc.ArgumentError:  # after NoSuchModuleError, its subclass
        raise DatabaseUnavailable(
            f"{display_url(url)!r} is not a database URL; use sqlite:///FILE or "
            "postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    return parsed


def upgrade(url: str) -> None:
    """Create or migrate the schema at ``url``; an unusable URL or server is a one-line
    ``DatabaseUnavailable`` naming it and the fix."""
    _parsed(url)
    try:
        migrate.upgrade(url)
    except sa.exc.DBAPIError as error:
        raise _unusable(url, error) from None
    except OSError as error:  # a SQLite file's folder cannot be made: a file in its path
        where, _ = describe_database(url)
        raise DatabaseUnavailable(
            f"cannot create the database at {where} ({error.strerror or error}); give a "
            "path in a folder you can write to (--database-url, MEMTAIL_DATABASE_URL)"
        ) from None


def _unusable(url: str, error: sa.exc.DBAPIError) -> DatabaseUnavailable:
    where, _ = describe_database(url)
    first = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
    # A driver may quote the DSN it was given, query parameters and all.
    first = without_secrets(first, url)
    return DatabaseUnavailable(
        f"cannot use the database at {where} ({first}); check that the server runs and "
        "the URL (--database-url, MEMTAIL_DATABASE_URL) is right"
    )


def open_database(url: str) -> Engine:
    """An engine on the existing memtail database at ``url`` (schema at head)."""
    parsed = _parsed(url)
    where, _ = describe_database(url)
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).is_file():
            raise DatabaseUnavailable(
                f"no memtail database at {where}; `memtail run` creates one there (or "
                "`memtail db upgrade`), or point --database-url / MEMTAIL_DATABASE_URL at yours"
            )
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                raise DatabaseUnavailable(
                    f"{where} has no memtail schema; create it with "
                    f"`memtail --database-url {_url_arg(url)} db upgrade`"
                )
            version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except sa.exc.DBAPIError as error:
        engine.dispose()
        raise _unusable(url, error) from None
    except DatabaseUnavailable:
        engine.dispose()
        raise
    head, known = migrate.revisions()
    if version != head:
        engine.dispose()
        if version in known:
            raise DatabaseUnavailable(
                f"{where} has schema revision {version} and this memtail needs {head}; "
                f"upgrade it with `memtail --database-url {_url_arg(url)} db upgrade`"
            )
        raise DatabaseUnavailable(
            f"{where} has schema revision {version!r}, which this memtail does not know; "
            "it was written by a newer memtail: upgrade memtail"
        )
    return engine


def _url_arg(url: str) -> str:
    """The URL as a user would pass it again, credentials hidden."""
    return display_url(url)
