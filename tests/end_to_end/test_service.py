"""End to end with real processes: the docker-compose.yml commands, run natively.

PostgreSQL (a database of its own), a private Redis server, `alembic upgrade head`, the
coordinator creating the experiment, a Celery trial worker, the estimator worker and
beat. The experiment runs to completion; the stored estimates must equal the estimator
recomputed from the stored outcomes, and the planted long-tail truth must show.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from memtail.stats.memorization import MemCounts
from memtail.stats.memorization import memorization as memorization_estimate
from memtail.store.engine import make_engine
from memtail.store.experiments import get_experiment
from memtail.store.outcomes import load_outcomes
from tests.processes import Procs, base_env, compose_command, private_redis, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.integration]

TRIALS = 48
SPEC = f"""
name = "e2e-longtail"
seed = 3
trials = {TRIALS}
subset_fraction = 0.7

[dataset]
name = "synthetic-longtail"
n_train = 300
n_test = 150
label_noise = 0.05
seed = 1

[model]
name = "mlp"
width = 64

[training]
epochs = 30
batch_size = 32
lr = 0.05
schedule = "onecycle"
weight_decay = 0.0
"""


def test_celery_end_to_end(pg_empty_url: str, tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC)
    with private_redis() as (redis_url, _stop, _start):
        env = base_env(
            pg_empty_url,
            redis_url,
            estimate_interval="2",
            coordinator_interval="1",
            heartbeat_seconds="2",
            lease_seconds="30",
            default_spec=str(spec_path),
        )
        # The migrate service: one shot, must succeed before anything else starts.
        migrate = subprocess.run(
            compose_command("migrate", env),
            cwd=Path(__file__).parents[2],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stderr
        procs = Procs(env, tmp_path)
        try:
            procs.start_service("coordinator")
            procs.start_service("worker")
            procs.start_service("estimator")
            procs.start_service("beat")
            engine = make_engine(pg_empty_url)

            def complete() -> bool:
                with engine.connect() as conn:
                    status = conn.execute(
                        sa.text("SELECT status FROM experiments WHERE name = 'e2e-longtail'")
                    ).scalar_one_or_none()
                return status == "complete"

            wait_for(complete, timeout=600, what="the experiment to complete", procs=procs)
            for proc in procs.started:
                assert proc.alive(), f"{proc.name} died:\n{proc.output()[-3000:]}"
        finally:
            procs.stop_all()
    # Only the estimator pays for scipy and numba, and it pays at start-up.
    logs = {proc.name: proc.output() for proc in procs.started}
    assert "preloaded scipy" in logs["estimator"]
    assert "preloaded" not in logs["worker"]
    # At compose's --loglevel INFO: one line per trial with its accuracies, one per estimate.
    trial_lines = re.findall(
        r"trial \d+: succeeded in [\d.]+s \(experiment \d+, index (\d+); train accuracy "
        r"[\d.]+, test accuracy [\d.]+\)",
        logs["worker"],
    )
    assert sorted(int(index) for index in trial_lines) == list(range(TRIALS))
    assert re.search(r"estimated experiment \d+ from \d+ trials in", logs["estimator"])
    assert re.search(
        rf"estimated experiment \d+ from {TRIALS} trials .*; complete", logs["estimator"]
    )

    experiment = get_experiment(engine, "e2e-longtail")
    with engine.connect() as conn:
        statuses = conn.execute(
            sa.text("SELECT status, count(*) FROM trials GROUP BY status")
        ).all()
        outcome_rows = conn.execute(sa.text("SELECT count(*) FROM trial_outcomes")).scalar_one()
        duplicates = conn.execute(
            sa.text(
                "SELECT count(*) FROM (SELECT trial_id FROM trial_outcomes GROUP BY trial_id "
                "HAVING count(*) > 1) d"
            )
        ).scalar_one()
        mem_rows = conn.execute(
            sa.text("SELECT * FROM memorization WHERE experiment_id = :e ORDER BY example_index"),
            {"e": experiment.id},
        ).all()
        attrs = (
            conn.execute(
                sa.text(
                    "SELECT attributes FROM examples WHERE experiment_id = :e AND split = 'train' "
                    "ORDER BY example_index"
                ),
                {"e": experiment.id},
            )
            .scalars()
            .all()
        )
        last_run = conn.execute(
            sa.text("SELECT trials_used, status FROM estimate_runs ORDER BY id DESC LIMIT 1")
        ).one()
    assert dict(statuses) == {"succeeded": TRIALS}
    assert outcome_rows == TRIALS and duplicates == 0
    assert last_run == (TRIALS, "succeeded")

    # Every train example has a row with interval columns, equal to the estimator's output
    # recomputed from the stored outcomes.
    outcomes = load_outcomes(engine, experiment)
    expected = memorization_estimate(
        MemCounts.from_trials(outcomes.masks, outcomes.train_correct), 0.95
    )
    assert len(mem_rows) == experiment.n_train == 300
    stored = np.array([np.nan if r.mem is None else r.mem for r in mem_rows])
    assert np.allclose(stored, expected.value, equal_nan=True)
    assert all(r.ci_low is not None and r.ci_low <= r.mem <= r.ci_high for r in mem_rows)

    # The planted truth: singletons and mislabelled examples are memorized, examples of
    # large subpopulations are not. Required margin: 0.3 in mean mem.
    singleton = np.array([a["singleton"] or a["noisy"] for a in attrs])
    large = np.array([a["subpopulation_size"] >= 10 and not a["noisy"] for a in attrs])
    tail_mem, head_mem = np.nanmean(stored[singleton]), np.nanmean(stored[large])
    print(
        f"mean mem: singletons/noisy {tail_mem:.3f} (n={singleton.sum()}), "
        f"large subpopulations {head_mem:.3f} (n={large.sum()})"
    )
    assert singleton.sum() >= 20 and large.sum() >= 50
    assert tail_mem - head_mem >= 0.3

    # Export round-trips through the CLI.
    out = tmp_path / "export.npz"
    result = subprocess.run(
        [
            str(Path(compose_command("coordinator")[0]).parent / "memtail"),
            "--database-url",
            pg_empty_url,
            "export",
            "e2e-longtail",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data = np.load(out)
    assert np.allclose(data["tr_mem"], stored, equal_nan=True)
    assert data["tr_labels"].shape == (300,) and data["tt_labels"].shape == (150,)
    with engine.connect() as conn:
        pairs = conn.execute(
            sa.text(
                "SELECT train_index, test_index, infl FROM high_influence_pairs "
                "ORDER BY train_index, test_index"
            )
        ).all()
    assert data["tr_idx"].tolist() == [p.train_index for p in pairs]
    assert np.allclose(data["infl"], [p.infl for p in pairs])
    assert np.all(data["mem"] >= 0.25) and np.all(data["infl"] >= 0.15)

    # The README's SQL cookbook runs as written against the finished experiment.
    results = run_cookbook(engine, "e2e-longtail")
    assert len(results) == len(cookbook_queries()) >= 8
    top = results[0]
    assert len(top) == 20 and all(r.ci_low <= r.mem <= r.ci_high for r in top)
    assert top[0].mem == np.nanmax(stored)
    assert len(results[1]) == len(pairs)
    compared = results[3][0]
    assert compared.both_memorized == compared.either_memorized == int((stored >= 0.25).sum())
    engine.dispose()


def cookbook_queries() -> list[str]:
    """The SQL blocks of the README's cookbook, in order."""
    import re

    text = (Path(__file__).parents[2] / "README.md").read_text()
    section = text.split("### SQL cookbook", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sql\n(.*?)```", section, re.S)]


def run_cookbook(engine: sa.engine.Engine, name: str) -> list[list[sa.Row]]:
    results = []
    with engine.connect() as conn:
        for query in cookbook_queries():
            query = query.replace("'digits-mlp'", f"'{name}'").replace("'digits-cnn'", f"'{name}'")
            results.append(conn.execute(sa.text(query.rstrip(";"))).all())
    return results
