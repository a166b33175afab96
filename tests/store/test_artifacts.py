"""Artifacts on both databases and in a folder: whole or invisible, checked on read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.status import ArtifactStatus
from memtail.store import artifacts, lifecycle, retrieval
from memtail.store.tables import artifact_chunks
from memtail.store.tables import artifacts as artifacts_table
from tests.helpers import make_experiment
from tests.processes import wait_for


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Many chunks from little data: every path through the chunking runs.
    monkeypatch.setattr(artifacts, "CHUNK_BYTES", 1000)
    monkeypatch.setattr(retrieval, "CHUNK_BYTES", 1000)


def _parts(data: bytes) -> Iterator[bytes]:
    """Uneven pieces, as a writer computing features batch by batch would give."""
    at, rng = 0, np.random.default_rng(0)
    while at < len(data):
        step = int(rng.integers(1, 2500))
        yield data[at : at + step]
        at += step


def _rows(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(sa.select(sa.func.count()).select_from(artifacts_table)).scalar_one(),
            conn.execute(sa.select(sa.func.count()).select_from(artifact_chunks)).scalar_one(),
        )


@pytest.mark.parametrize("where", ["database", "folder"])
def test_round_trip_replace_and_delete(engine: Engine, tmp_path: Path, where: str) -> None:
    folder = tmp_path / "shared" if where == "folder" else None
    exp = make_experiment(engine).experiment
    data = np.random.default_rng(1).bytes(12_345)
    written = artifacts.write_artifact(engine, exp.id, "features", _parts(data), folder=folder)
    assert (written.size, len(written.sha256)) == (len(data), 64)
    assert retrieval.find_artifact(engine, exp.id, "features") == written
    read = b"".join(retrieval.read_artifact(engine, exp.id, "features", folder=folder))
    assert read == data
    if folder is None:
        assert _rows(engine) == (1, 13)  # 12,345 bytes in chunks of 1,000
    else:
        assert (folder / written.location).read_bytes() == data
        assert _rows(engine) == (1, 0)
    # A second write of the name replaces the first only once it is whole.
    newer = artifacts.write_artifact(engine, exp.id, "features", [b"x" * 2500], folder=folder)
    assert retrieval.find_artifact(engine, exp.id, "features") == newer
    assert b"".join(retrieval.read_artifact(engine, exp.id, "features", folder=folder)) == (
        b"x" * 2500
    )
    assert _rows(engine)[0] == 1
    # Deleted with their experiment.
    lifecycle.delete(engine, exp)
    assert _rows(engine) == (0, 0)
    with pytest.raises(retrieval.ArtifactMissing, match="has no artifact 'features'"):
        next(retrieval.read_artifact(engine, exp.id, "features", folder=folder))


@pytest.mark.parametrize("where", ["database", "folder"])
def test_a_damaged_artifact_is_refused(engine: Engine, tmp_path: Path, where: str) -> None:
    folder = tmp_path / "shared" if where == "folder" else None
    exp = make_experiment(engine).experiment
    data = bytes(range(256)) * 20
    written = artifacts.write_artifact(engine, exp.id, "features", [data], folder=folder)
    if folder is None:
        with engine.begin() as conn:
            conn.execute(
                sa.update(artifact_chunks)
                .where(artifact_chunks.c.artifact_id == written.id, artifact_chunks.c.seq == 2)
                .values(data=b"\0" * 1000)
            )
    else:
        path = folder / written.location
        path.write_bytes(path.read_bytes()[:-1])  # truncated
    with pytest.raises(retrieval.ArtifactCorrupt) as damaged:
        b"".join(retrieval.read_artifact(engine, exp.id, "features", folder=folder))
    message = str(damaged.value)
    assert "artifact 'features' of experiment" in message and "is damaged" in message
    assert "\n" not in message


def test_a_failed_write_leaves_nothing(engine: Engine, tmp_path: Path) -> None:
    exp = make_experiment(engine).experiment

    def broken() -> Iterator[bytes]:
        yield b"a" * 5000
        raise RuntimeError("the feature model ran out of memory")

    for folder in (None, tmp_path / "shared"):
        with pytest.raises(RuntimeError, match="out of memory"):
            artifacts.write_artifact(engine, exp.id, "features", broken(), folder=folder)
        assert retrieval.find_artifact(engine, exp.id, "features") is None
        assert _rows(engine) == (0, 0)
    assert not [p for p in (tmp_path / "shared").rglob("*") if p.is_file()]


WRITER = """
import sys, time
from pathlib import Path
from memtail.store import artifacts
from memtail.store.engine import make_engine

url, experiment, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def parts():
    for _ in range(3):
        yield b"f" * 1500
    print("written", flush=True)
    time.sleep(600)  # killed here, mid-write
    yield b"never"

artifacts.CHUNK_BYTES = 1000
artifacts.write_artifact(make_engine(url), experiment, "features", parts(),
                         folder=Path(folder) if folder else None)
"""


@pytest.mark.parametrize("where", ["database", "folder"])
def test_a_writer_killed_mid_write_leaves_nothing_visible(
    engine: Engine, db_url: str, tmp_path: Path, where: str
) -> None:
    folder = tmp_path / "shared" if where == "folder" else None
    exp = make_experiment(engine).experiment
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, db_url, str(exp.id), str(folder or "")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "written"
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(30)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert retrieval.find_artifact(engine, exp.id, "features") is None
    with engine.connect() as conn:
        status = conn.execute(sa.select(artifacts_table.c.status)).scalars().all()
    assert status == [ArtifactStatus.WRITING]  # only the dead writer's, which nothing reads
    if folder is not None:
        assert [p.suffix for p in folder.rglob("*") if p.is_file()] == [artifacts.PARTIAL]
    assert artifacts.sweep(engine, older_than_seconds=3600, folder=folder) == 0  # too young
    time.sleep(1.1)
    wait_for(lambda: artifacts.sweep(engine, 1.0, folder=folder) == 1, 10, "the sweep")
    assert _rows(engine) == (0, 0)
    if folder is not None:
        assert not [p for p in folder.rglob("*") if p.is_file()]
