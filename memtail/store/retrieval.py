"""Reading an artifact back: the complete one of a name, streamed chunk by chunk from the
database or its file under MEMTAIL_ARTIFACTS, and checked once every byte was read: its
size and sha256 must be those recorded when it was written, else ``ArtifactCorrupt``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from memtail.status import ArtifactStatus
from memtail.store.artifacts import CHUNK_BYTES, Artifact
from memtail.store.engine import is_postgres, transaction
from memtail.store.tables import artifact_chunks, artifacts


class ArtifactMissing(LookupError):
    """No complete artifact of that name; the message says which and of what."""


class ArtifactCorrupt(RuntimeError):
    """An artifact's bytes do not match the size or checksum recorded when it was written."""


def find_artifact(engine: Engine, experiment_id: int, name: str) -> Artifact | None:
    with transaction(engine, readonly=True) as conn:
        row = conn.execute(
            sa.select(artifacts).where(
                artifacts.c.experiment_id == experiment_id,
                artifacts.c.name == name,
                artifacts.c.status == ArtifactStatus.COMPLETE,
            )
        ).one_or_none()
    if row is None:
        return None
    return Artifact(row.id, row.experiment_id, row.name, row.size, row.sha256, row.location)


def read_artifact(
    engine: Engine, experiment_id: int, name: str, *, folder: Path | None = None
) -> Iterator[bytes]:
    """Stream the complete artifact ``name`` chunk by chunk; once every byte was read, its
    size and sha256 are checked (ArtifactCorrupt if they differ from the record)."""
    artifact = find_artifact(engine, experiment_id, name)
    if artifact is None:
        raise ArtifactMissing(f"experiment {experiment_id} has no artifact {name!r}")
    digest, size = hashlib.sha256(), 0
    for chunk in _chunks(engine, artifact, folder):
        digest.update(chunk)
        size += len(chunk)
        yield chunk
    if (size, digest.hexdigest()) != (artifact.size, artifact.sha256):
        raise ArtifactCorrupt(
            f"artifact {name!r} of experiment {experiment_id} is damaged: {size} bytes with "
            f"sha256 {digest.hexdigest()[:12]}... where {artifact.size} bytes with "
            f"{artifact.sha256[:12]}... were written; delete and recompute it"
        )


def _chunks(engine: Engine, artifact: Artifact, folder: Path | None) -> Iterator[bytes]:
    if artifact.location is not None:
        if folder is None:
            raise ArtifactMissing(
                f"artifact {artifact.name!r} is a file under MEMTAIL_ARTIFACTS, which is not set"
            )
        path = folder / artifact.location
        try:
            file = path.open("rb")
        except FileNotFoundError:
            raise ArtifactMissing(f"artifact {artifact.name!r}: {path} is missing") from None
        with file:
            while chunk := file.read(CHUNK_BYTES):
                yield chunk
        return
    seq = 0
    while True:
        # One chunk per short transaction: memory stays at one chunk, and no read holds a
        # snapshot open for the whole artifact.
        with transaction(engine, readonly=True) as conn:
            row = conn.execute(
                sa.select(*_chunk_columns(conn)).where(
                    artifact_chunks.c.artifact_id == artifact.id, artifact_chunks.c.seq == seq
                )
            ).one_or_none()
        if row is None:
            return
        if row.kind == "text":
            raise ArtifactCorrupt(
                f"artifact {artifact.name!r} of experiment {artifact.experiment_id} is damaged: "
                f"chunk {seq} is stored as text, not bytes; delete and recompute it"
            )
        yield bytes(row.data)
        seq += 1


def _chunk_columns(conn: Connection) -> tuple[sa.ColumnElement, sa.ColumnElement]:
    """(kind, data) of a chunk row. SQLite keeps a value of any type in any column, and a
    chunk written as text by anything but memtail reads back as str (or fails to decode
    as UTF-8): its storage class is asked for, its bytes read as a blob."""
    data = artifact_chunks.c.data
    if is_postgres(conn):
        return sa.literal("blob").label("kind"), data.label("data")
    return sa.func.typeof(data).label("kind"), sa.cast(data, sa.LargeBinary).label("data")
