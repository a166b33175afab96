"""A worker killed -9 while it writes a probe's features artifact.

The real service (coordinator, Celery worker, estimator, beat) on a per-test PostgreSQL
database and a private Redis; the fault injector pauses the feature trial's artifact write
halfway, after some chunk rows committed, and the test kills that process. Guarantees: no
reader sees an artifact meanwhile, the trial goes back to pending with the attempt
counted, the retry writes the features whole, the probe trials then all run, and the
killed writer's rows are only what the sweep removes.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from memtail.store.artifacts import sweep
from memtail.store.experiments import get_experiment
from memtail.store.retrieval import find_artifact
from memtail.work.features import FEATURES
from tests.faults.faultinject.faultcluster import cluster, spec_toml, tally
from tests.processes import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]

PROBES = 6


def _artifact_rows(engine: sa.Engine) -> list[tuple[str, int]]:
    """(status, chunk rows) of every features artifact."""
    with engine.connect() as conn:
        return [
            (row.status, int(row.chunks))
            for row in conn.execute(
                sa.text(
                    "SELECT a.status, (SELECT count(*) FROM artifact_chunks c "
                    "WHERE c.artifact_id = a.id) AS chunks FROM artifacts a "
                    "WHERE a.name = :n ORDER BY a.id"
                ),
                {"n": FEATURES},
            )
        ]


@pytest.mark.timeout(240)
def test_worker_killed_while_writing_features(pg_empty_url: str, tmp_path: Path) -> None:
    name = "faults-features"
    spec = spec_toml(name, PROBES).replace(
        "subset_fraction = 0.7", 'subset_fraction = 0.7\nkind = "probe"'
    )
    marks = tmp_path / "features"
    marks.mkdir()
    with cluster(pg_empty_url, tmp_path, name, spec) as c:
        c.start_all(
            concurrency=1,
            MEMTAIL_TEST_FEATURES_PAUSE="30",
            MEMTAIL_TEST_FEATURES_MARKS=str(marks),
        )
        wait_for(
            lambda: any(p.name.isdigit() for p in marks.iterdir()),
            timeout=120,
            what="the feature trial to write its features",
            procs=c.procs,
        )
        (writer,) = [int(p.name) for p in marks.iterdir() if p.name.isdigit()]
        experiment = get_experiment(c.engine, name)
        # Mid-write: chunk rows committed, but nothing a reader would see.
        rows = _artifact_rows(c.engine)
        assert rows and rows[0][0] == "writing" and rows[0][1] >= 1, rows
        assert find_artifact(c.engine, experiment.id, FEATURES) is None
        assert c.kill_pid(writer)
        time.sleep(1)
        assert c.trials()[0].status in ("running", "pending")  # until its lease lapses
        assert find_artifact(c.engine, experiment.id, FEATURES) is None

        c.wait_complete(timeout=180)
        c.assert_all_alive()
        trials = c.trials()
        artifact = find_artifact(c.engine, experiment.id, FEATURES)
        rows = _artifact_rows(c.engine)
        swept = sweep(c.engine, 0)
        after = _artifact_rows(c.engine)

    feature, probes = trials[0], trials[1:]
    assert feature.status == "succeeded" and feature.attempts == 2, feature
    assert "lease expired" in (feature.error or ""), feature
    assert feature.outcomes == 0  # the feature trial stores features, not outcomes
    figures = tally(probes)
    assert figures.statuses == {"succeeded": PROBES}
    assert figures.duplicates == 0 and figures.lost == 0
    assert artifact is not None and artifact.size > 0
    # The retry's artifact is complete; the killed writer's stays invisible until swept.
    assert sorted(status for status, _ in rows) == ["complete", "writing"]
    assert swept == 1 and [status for status, _ in after] == ["complete"]
    print(f"features kill -9: {rows} before the sweep, {after} after")
