"""Run the Alembic migrations programmatically (``memtail db upgrade``, the tests).

The migrations live in ``migrations/`` at the repository's top level and install with
the package as ``memtail.migrations``, so they are found the same way from a checkout
(an editable install maps the name to the folder) and from a wheel. ``alembic upgrade
head`` from the repository root does the same through ``[tool.alembic]`` in
pyproject.toml.
"""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("memtail.migrations")))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)
