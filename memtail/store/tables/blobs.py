"""Named binary artifacts of an experiment and, where the database keeps their bytes,
their chunks."""

from __future__ import annotations

import sqlalchemy as sa

from memtail.status import ArtifactStatus
from memtail.store.tables.schema import BigId, Timestamp, metadata, one_of

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column(
        "experiment_id",
        sa.Integer,
        sa.ForeignKey("experiments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", sa.String(200), nullable=False, comment="e.g. 'features'"),
    # memtail.status.ArtifactStatus says what each value means.
    sa.Column("status", sa.String(16), nullable=False, server_default=ArtifactStatus.WRITING),
    sa.Column("size", sa.BigInteger, nullable=True, comment="bytes, once complete"),
    sa.Column("sha256", sa.String(64), nullable=True, comment="hex digest, once complete"),
    sa.Column(
        "location",
        sa.Text,
        nullable=True,
        comment="file under MEMTAIL_ARTIFACTS; NULL: the bytes are artifact_chunks rows",
    ),
    sa.Column("writer", sa.String(255), nullable=True, comment="who wrote it, e.g. a worker"),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("completed_at", Timestamp, nullable=True),
    sa.CheckConstraint(one_of("status", ArtifactStatus), name="status"),
    # Readers ask for the one complete artifact of a name; at most one may exist.
    sa.Index(
        "ix_artifacts_complete_name",
        "experiment_id",
        "name",
        unique=True,
        postgresql_where=sa.text(f"status = '{ArtifactStatus.COMPLETE}'"),
        sqlite_where=sa.text(f"status = '{ArtifactStatus.COMPLETE}'"),
    ),
    comment="Named binary artifacts of an experiment (features, checkpoints)",
)


artifact_chunks = sa.Table(
    "artifact_chunks",
    metadata,
    sa.Column(
        "artifact_id", BigId, sa.ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("seq", sa.Integer, primary_key=True, comment="0, 1, ...: the chunk's place"),
    sa.Column("data", sa.LargeBinary, nullable=False, comment="up to 8 MiB of the artifact"),
    comment="The bytes of artifacts kept in the database, in order",
)
