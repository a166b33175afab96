"""The results schema: memtail's public SQL interface.

Alembic migrations in ``migrations/`` create these tables (a test checks that migrations
and this module agree); application code never calls ``create_all``. Names and columns
are a contract with analysts' SQL: add, never rename.

Per-example booleans are packed bits, least significant bit first (``memtail.stats.bits``), so
``get_bit(train_correct, i)`` on PostgreSQL reads example ``i``.
"""

from memtail.store.tables.blobs import artifact_chunks, artifacts
from memtail.store.tables.estimates import (
    PAIRS_VIEW,
    estimate_runs,
    estimator_locks,
    influence,
    memorization,
)
from memtail.store.tables.queue import examples, experiments, trial_outcomes, trials
from memtail.store.tables.schema import metadata, one_of

__all__ = [
    "PAIRS_VIEW",
    "artifact_chunks",
    "artifacts",
    "estimate_runs",
    "estimator_locks",
    "examples",
    "experiments",
    "influence",
    "memorization",
    "metadata",
    "one_of",
    "trial_outcomes",
    "trials",
]
