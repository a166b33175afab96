"""Alembic migrations of the results schema; installed as ``memtail.migrations``."""
