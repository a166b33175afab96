"""Run the Alembic migrations programmatically (``memtail db upgrade``, the tests).

The migrations live in ``migrations/`` at the repository's top level and install with
the package as ``memtail.migrations``, so they are found the same way from a checkout
(an editable install maps the name to the folder) and from a wheel. ``alembic upgrade
head`` from the repository root does the same through ``[tool.alembic]`` in
pyproject.toml.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("memtail.migrations")))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate to ``revision``; a SQLite file's folder is created first."""
    _sqlite_folder(database_url)
    command.upgrade(alembic_config(database_url), revision)


def revisions() -> tuple[str, set[str]]:
    """The head revision this code migrates to, and every revision it knows."""
    script = ScriptDirectory.from_config(alembic_config(""))
    return script.get_current_head() or "", {rev.revision for rev in script.walk_revisions()}


def _sqlite_folder(database_url: str) -> None:
    url = make_url(database_url)
    if url.drivername.startswith("sqlite") and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)
