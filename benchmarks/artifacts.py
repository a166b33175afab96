"""The artifact benchmark: MB/s writing and reading an artifact, in PostgreSQL, SQLite and a
folder, side by side.

An artifact of ``--mb`` megabytes (float16 values, as features are stored) is written
through ``memtail.store.artifacts`` in parts of 1 MB, as a feature trial would hand them
over, then read back and checked (size and sha256), ``--repeat`` times per place, the
places in turn. Printed per place: the median MB/s of writing and of reading; last, the
ratios of PostgreSQL to a local folder. Needs a PostgreSQL server; run from the
repository root:

    python benchmarks/artifacts.py
    python benchmarks/artifacts.py --mb 1024 --pg postgresql+psycopg2://postgres@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import ADMIN_URL, scratch_database  # noqa: E402

from memtail.records import ExampleSet  # noqa: E402
from memtail.specification import DatasetSpec, ExperimentSpec  # noqa: E402
from memtail.store import artifacts, migrate, retrieval  # noqa: E402
from memtail.store.engine import Engine, make_engine  # noqa: E402
from memtail.store.experiments import create_experiment  # noqa: E402

MB = 2**20


def _parts(block: bytes, count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield block


def _owner(engine: Engine) -> int:
    spec = ExperimentSpec(name="artifacts", dataset=DatasetSpec(name="synthetic-longtail"))
    labels = np.arange(10) % 2
    return create_experiment(engine, spec, ExampleSet(labels, labels)).experiment.id


def _measure(engine: Engine, owner: int, mb: int, folder: Path | None) -> tuple[float, float]:
    """(write MB/s, read MB/s) of one artifact of ``mb`` megabytes."""
    block = np.random.default_rng(0).standard_normal(MB // 2).astype(np.float16).tobytes()
    started = time.perf_counter()
    written = artifacts.write_artifact(engine, owner, "bench", _parts(block, mb), folder=folder)
    wrote = time.perf_counter() - started
    started = time.perf_counter()
    size = sum(len(c) for c in retrieval.read_artifact(engine, owner, "bench", folder=folder))
    read = time.perf_counter() - started
    assert size == written.size == mb * MB
    return mb / wrote, mb / read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256, help="artifact size in MB")
    parser.add_argument("--repeat", type=int, default=3, help="runs per place")
    parser.add_argument("--pg", default=ADMIN_URL, help="PostgreSQL maintenance URL")
    args = parser.parse_args()
    with scratch_database(args.pg) as pg_url, tempfile.TemporaryDirectory() as scratch:
        sqlite_url = f"sqlite:///{Path(scratch) / 'bench.db'}"
        migrate.upgrade(sqlite_url)
        places = {
            "postgresql": (make_engine(pg_url), None),
            "sqlite": (make_engine(sqlite_url), None),
            "folder": (make_engine(sqlite_url), Path(scratch) / "artifacts"),
        }
        owners = {name: _owner(engine) for name, (engine, _) in places.items() if name != "folder"}
        owners["folder"] = owners["sqlite"]
        speeds: dict[str, list[tuple[float, float]]] = {name: [] for name in places}
        for _ in range(args.repeat):  # the places in turn, so that drift hits all alike
            for name, (engine, folder) in places.items():
                speeds[name].append(_measure(engine, owners[name], args.mb, folder))
        medians = {}
        for name, runs in speeds.items():
            write = statistics.median(w for w, _ in runs)
            read = statistics.median(r for _, r in runs)
            medians[name] = (write, read)
            print(f"{name:>10}: write {write:7.1f} MB/s, read {read:7.1f} MB/s "
                  f"({args.mb} MB, median of {args.repeat})")  # fmt: skip
        pg, local = medians["postgresql"], medians["folder"]
        print(f"postgresql / folder: write {pg[0] / local[0]:.2f}x, read {pg[1] / local[1]:.2f}x")


if __name__ == "__main__":
    main()
