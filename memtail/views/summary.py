"""The short summary printed at the end of ``memtail run``."""

from __future__ import annotations

from memtail.stats.intervals import z_for
from memtail.store.engine import Engine, describe_database
from memtail.store.experiments import get_experiment
from memtail.store.progress import progress
from memtail.store.results import count_high_influence_pairs, latest_run, top_memorized
from memtail.views.text import format_progress, format_top


def print_summary(engine: Engine, experiment_id: int, database_url: str) -> None:
    experiment = get_experiment(engine, experiment_id)
    print()
    print(format_progress(progress(engine, experiment)))
    print()
    print("Most memorized training examples:")
    print(format_top(top_memorized(engine, experiment_id, 10)))
    pairs = count_high_influence_pairs(engine, experiment_id)
    run = latest_run(engine, experiment_id)
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
    where, query = describe_database(database_url)
    print()
    print(f"Results database: {where}")
    if query:
        print(f"  query it: {query}")
