"""Named binary artifacts of an experiment (features, checkpoints): written whole or not at
all, checked on read, streamed in chunks, deleted with their experiment.

Where the bytes live: in the database by default, as ``artifact_chunks`` rows of
``CHUNK_BYTES`` each, so an artifact is wherever the workers already are (SQLite for the
embedded run, PostgreSQL across hosts) with no new infrastructure; or, with
``MEMTAIL_ARTIFACTS`` naming a folder every worker mounts (a shared volume), in files
under it, for artifacts too large to want in the database.

How a write stays atomic: an ``artifacts`` row is inserted as ``writing`` (readers never
look at those), the chunks follow in short transactions of their own (or a temporary
file is written and renamed into place), and one last transaction marks the row
``complete`` with its size and sha256, replacing the previous complete artifact of that
name. A writer killed at any line leaves at most a ``writing`` row and its chunks, which
nothing reads and ``sweep`` removes. Reading one back is ``memtail.store.retrieval``'s
part: it verifies the size and sha256 of what it streamed.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from memtail.status import ArtifactStatus
from memtail.store.engine import db_now_plus, is_postgres, transaction
from memtail.store.tables import artifact_chunks, artifacts

#: Bytes per chunk row (and per read): large enough that per-row overhead vanishes, small
#: enough that a reader or writer holds little in memory.
CHUNK_BYTES = 8 * 2**20
#: An artifact still ``writing`` after this long lost its writer: a live writer of even
#: gigabytes of features finishes well within it (its trial's lease is kept meanwhile).
ABANDONED_SECONDS = 6 * 3600.0
# Suffix of a file being written under MEMTAIL_ARTIFACTS; renamed away once whole.
PARTIAL = ".partial"


@dataclass(frozen=True)
class Artifact:
    id: int
    experiment_id: int
    name: str
    size: int
    sha256: str
    #: The file under MEMTAIL_ARTIFACTS (relative to it), or None: chunks in the database.
    location: str | None


def _rechunk(parts: Iterable[bytes]) -> Iterator[bytes]:
    """The bytes of ``parts`` in pieces of exactly CHUNK_BYTES (the last one shorter)."""
    pending = bytearray()
    for part in parts:
        pending += part
        while len(pending) >= CHUNK_BYTES:
            yield bytes(pending[:CHUNK_BYTES])
            del pending[:CHUNK_BYTES]
    if pending:
        yield bytes(pending)


@dataclass(frozen=True)
class Staged:
    """An artifact whose bytes are all written but which nothing reads yet: ``complete``
    (in a transaction of the caller's choosing) makes it visible, ``discard`` drops it."""

    id: int
    size: int
    sha256: str
    location: str | None


def write_artifact(
    engine: Engine,
    experiment_id: int,
    name: str,
    parts: Iterable[bytes],
    *,
    folder: Path | None = None,
    writer: str = "",
) -> Artifact:
    """Write the bytes of ``parts`` as the experiment's artifact ``name``; it replaces the
    previous one of that name only once complete. ``folder``: MEMTAIL_ARTIFACTS (files
    there), or None (chunks in the database)."""
    staged = stage_artifact(engine, experiment_id, name, parts, folder=folder, writer=writer)
    try:
        with transaction(engine) as conn:
            return complete(conn, staged)
    except BaseException:
        discard(engine, staged, folder=folder)
        raise


def stage_artifact(
    engine: Engine,
    experiment_id: int,
    name: str,
    parts: Iterable[bytes],
    *,
    folder: Path | None = None,
    writer: str = "",
) -> Staged:
    """Write every byte of ``parts`` as a ``writing`` artifact, not yet visible to readers."""
    with transaction(engine) as conn:
        artifact_id = conn.execute(
            sa.insert(artifacts)
            .values(experiment_id=experiment_id, name=name, writer=writer[:255] or None)
            .returning(artifacts.c.id)
        ).scalar_one()
    digest, size = hashlib.sha256(), 0
    location: str | None = None
    try:
        if folder is None:
            for seq, chunk in enumerate(_rechunk(parts)):
                digest.update(chunk)
                size += len(chunk)
                with transaction(engine) as conn:
                    if is_postgres(conn):
                        # A chunk is invisible until the artifact completes (that commit
                        # waits for the disk as usual), and one lost in a crash belongs to
                        # an artifact the sweep removes: it need not wait for the disk.
                        conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                    conn.execute(
                        sa.insert(artifact_chunks).values(
                            artifact_id=artifact_id, seq=seq, data=chunk
                        )
                    )
            sha256 = digest.hexdigest()
        else:
            location = f"{experiment_folder(Path(), experiment_id)}/{artifact_id}-{_safe(name)}"
            size, sha256 = _write_file(folder / location, parts)
    except BaseException:
        # A failed write leaves nothing readable; a killed one is swept later.
        discard(engine, Staged(artifact_id, 0, "", location), folder=folder)
        raise
    return Staged(artifact_id, size, sha256, location)


def discard(engine: Engine, staged: Staged, *, folder: Path | None = None) -> None:
    """Drop a staged artifact that will not be completed (its rows and its file)."""
    with transaction(engine) as conn:
        _delete(
            conn, sa.and_(artifacts.c.id == staged.id, artifacts.c.status == ArtifactStatus.WRITING)
        )
    if folder is not None and staged.location is not None:
        (folder / staged.location).unlink(missing_ok=True)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def _write_file(path: Path, parts: Iterable[bytes]) -> tuple[int, str]:
    """Write to a temporary file beside ``path``, flush it to disk, rename it into place:
    a file at ``path`` is always whole. Its size and sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + PARTIAL)
    digest, size = hashlib.sha256(), 0
    try:
        with partial.open("wb") as file:
            for chunk in _rechunk(parts):
                digest.update(chunk)
                size += len(chunk)
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)  # a killed writer's is swept instead
        raise
    os.replace(partial, path)
    return size, digest.hexdigest()


def _delete(conn: Connection, which: sa.ColumnElement[bool]) -> int:
    """Delete the artifacts ``which`` selects with their chunks (children first, so that
    no foreign key setting is needed); how many artifacts."""
    ids = sa.select(artifacts.c.id).where(which).scalar_subquery()
    conn.execute(sa.delete(artifact_chunks).where(artifact_chunks.c.artifact_id.in_(ids)))
    return conn.execute(sa.delete(artifacts).where(which)).rowcount


def complete(conn: Connection, staged: Staged) -> Artifact:
    """Mark a staged artifact complete in the caller's transaction, replacing the
    previous complete one of its name (a trial's store can do this in its own)."""
    row = conn.execute(sa.select(artifacts).where(artifacts.c.id == staged.id)).one()
    _delete(
        conn,
        sa.and_(
            artifacts.c.experiment_id == row.experiment_id,
            artifacts.c.name == row.name,
            artifacts.c.status == ArtifactStatus.COMPLETE,
        ),
    )
    conn.execute(
        sa.update(artifacts)
        .where(artifacts.c.id == staged.id)
        .values(
            status=ArtifactStatus.COMPLETE,
            size=staged.size,
            sha256=staged.sha256,
            location=staged.location,
            completed_at=db_now_plus(0),
        )
    )
    return Artifact(
        staged.id, row.experiment_id, row.name, staged.size, staged.sha256, staged.location
    )


def sweep(engine: Engine, older_than_seconds: float, *, folder: Path | None = None) -> int:
    """Delete what writers that died left behind: artifacts still ``writing`` after
    ``older_than_seconds``, and partial files as old under ``folder``; how many artifacts."""
    if folder is not None and folder.is_dir():
        horizon = time.time() - older_than_seconds
        for partial in folder.glob(f"experiment-*/*{PARTIAL}"):
            if partial.stat().st_mtime < horizon:
                partial.unlink(missing_ok=True)
    with transaction(engine) as conn:
        return _delete(
            conn,
            sa.and_(
                artifacts.c.status == ArtifactStatus.WRITING,
                artifacts.c.created_at < db_now_plus(-older_than_seconds),
            ),
        )


def delete_named(conn: Connection, experiment_id: int, names: Iterable[str]) -> list[str]:
    """Delete the experiment's artifacts of these names (complete or not) in the caller's
    transaction; the files under MEMTAIL_ARTIFACTS they leave, for the caller to remove
    once it commits."""
    which = sa.and_(artifacts.c.experiment_id == experiment_id, artifacts.c.name.in_(list(names)))
    files = list(
        conn.execute(
            sa.select(artifacts.c.location).where(which, artifacts.c.location.is_not(None))
        ).scalars()
    )
    _delete(conn, which)
    return files


def rename(conn: Connection, experiment_id: int, old: str, new: str) -> None:
    """The complete artifact ``old`` becomes ``new`` (which must not exist), in the
    caller's transaction."""
    conn.execute(
        sa.update(artifacts)
        .where(
            artifacts.c.experiment_id == experiment_id,
            artifacts.c.name == old,
            artifacts.c.status == ArtifactStatus.COMPLETE,
        )
        .values(name=new)
    )


def delete_experiment_artifacts(conn: Connection, experiment_id: int) -> int:
    """Delete every artifact of an experiment, in the caller's transaction (files under
    MEMTAIL_ARTIFACTS are the caller's to remove: ``experiment_folder``)."""
    return _delete(conn, artifacts.c.experiment_id == experiment_id)


def experiment_folder(folder: Path, experiment_id: int) -> Path:
    """Where an experiment's artifact files live under MEMTAIL_ARTIFACTS."""
    return folder / f"experiment-{experiment_id}"
