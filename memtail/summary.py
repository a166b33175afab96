"""The short summary printed at the end of ``memtail run``."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from memtail.db.engine import transaction
from memtail.db.tables import estimate_runs
from memtail.experiments import get_experiment
from memtail.intervals import z_for
from memtail.report import format_progress, format_top, progress, top_memorized


def print_summary(engine: Engine, experiment_id: int, database_url: str) -> None:
    experiment = get_experiment(engine, experiment_id)
    print()
    print(format_progress(progress(engine, experiment)))
    print()
    print("Most memorized training examples:")
    print(format_top(top_memorized(engine, experiment_id, 10)))
    with transaction(engine, readonly=True) as conn:
        pairs = conn.execute(
            sa.text("SELECT count(*) FROM high_influence_pairs WHERE experiment_id = :e"),
            {"e": experiment_id},
        ).scalar_one()
        run = conn.execute(
            sa.select(estimate_runs)
            .where(
                estimate_runs.c.experiment_id == experiment_id,
                estimate_runs.c.status == "succeeded",
            )
            .order_by(estimate_runs.c.id.desc())
            .limit(1)
        ).one_or_none()
    rule = experiment.spec.estimate
    print()
    print(
        f"High-influence pairs (mem >= {rule.mem_threshold}, infl >= {rule.infl_threshold}, "
        f"same class): {pairs}"
    )
    if run is not None:
        print(
            f"  influence table: {run.influence_rows} pairs with infl >= {rule.infl_threshold}"
            f" of {run.pairs_examined} examined; {run.expected_false_pairs:.1f} expected by "
            "chance alone"
        )
        k = run.trials_used
        p = experiment.subset_size / experiment.n_train
        # Worst case (p_in = p_out = 1/2) half-width of a difference of two proportions.
        half = z_for(rule.confidence) * (0.25 / (p * k) + 0.25 / ((1 - p) * k)) ** 0.5
        print(f"  with {k} trials a {rule.confidence:.0%} interval is at most +-{half:.3f} wide")
    url = make_url(database_url)
    where = url.database if url.drivername.startswith("sqlite") else url.render_as_string()
    print()
    print(f"Results database: {where}")
    if url.drivername.startswith("sqlite"):
        print(f"  query it: sqlite3 {where} 'SELECT * FROM experiment_progress'")
