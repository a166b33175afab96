"""Revisions, applied in order (alembic ignores this file)."""
