"""artifacts and artifact_chunks: named binary artifacts of an experiment.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Features of a probe's feature model, and training checkpoints, are more than outcome bits.
An artifact row is written ``writing`` and marked ``complete`` (with its size and sha256)
only once every byte is stored, so readers never see half of one; its bytes are chunk rows
in the database, or a file under MEMTAIL_ARTIFACTS (``location``). Both go with their
experiment. Analysts do not read them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from memtail.status import ArtifactStatus
from memtail.store.tables import one_of

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("id", BigId, nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False, comment="e.g. 'features'"),
        sa.Column(
            "status", sa.String(length=16), server_default=ArtifactStatus.WRITING, nullable=False
        ),
        sa.Column("size", sa.BigInteger(), nullable=True, comment="bytes, once complete"),
        sa.Column(
            "sha256", sa.String(length=64), nullable=True, comment="hex digest, once complete"
        ),
        sa.Column(
            "location",
            sa.Text(),
            nullable=True,
            comment="file under MEMTAIL_ARTIFACTS; NULL: the bytes are artifact_chunks rows",
        ),
        sa.Column(
            "writer",
            sa.String(length=255),
            nullable=True,
            comment="who wrote it, e.g. a worker",
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(one_of("status", ArtifactStatus), name=op.f("ck_artifacts_status")),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_artifacts_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        comment="Named binary artifacts of an experiment (features, checkpoints)",
    )
    op.create_index(
        "ix_artifacts_complete_name",
        "artifacts",
        ["experiment_id", "name"],
        unique=True,
        postgresql_where=sa.text(f"status = '{ArtifactStatus.COMPLETE}'"),
        sqlite_where=sa.text(f"status = '{ArtifactStatus.COMPLETE}'"),
    )
    op.create_table(
        "artifact_chunks",
        sa.Column("artifact_id", BigId, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False, comment="0, 1, ...: the chunk's place"),
        sa.Column("data", sa.LargeBinary(), nullable=False, comment="up to 8 MiB of the artifact"),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["artifacts.id"],
            name=op.f("fk_artifact_chunks_artifact_id_artifacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("artifact_id", "seq", name=op.f("pk_artifact_chunks")),
        comment="The bytes of artifacts kept in the database, in order",
    )
    if op.get_bind().dialect.name == "postgresql":
        # Artifacts are mostly incompressible (float features and weights): compressing
        # their chunks would cost CPU on every write for little space.
        op.execute("ALTER TABLE artifact_chunks ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("artifact_chunks")
    op.drop_index("ix_artifacts_complete_name", table_name="artifacts")
    op.drop_table("artifacts")
