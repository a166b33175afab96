"""The embedded run behind ``memtail run``: one SQLite file and local worker processes.

A single SQLite file is the database, and local worker processes (one per core, one torch
thread each, ``memtail.work.pool``, driven by ``memtail.work.session``) pull trials with
the same claim, train, store and estimate code the Celery workers use. Re-running the
same command resumes: the experiment already exists and only unfinished trials run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from memtail.config import Settings


def embedded_settings(settings: Settings, out: Path) -> Settings:
    """``settings`` with the database in ``out/memtail.db`` when none was chosen (by flag
    or MEMTAIL_DATABASE_URL): the embedded run keeps its database next to its plots."""
    if settings.database_url != Settings().database_url:
        return settings
    out.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(settings, database_url=f"sqlite:///{out / 'memtail.db'}")
