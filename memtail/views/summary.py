"""The short summary printed at the end of ``memtail run``, with what to run next."""

from __future__ import annotations

from memtail.config import DEFAULT_DATABASE_URL
from memtail.stats.intervals import worst_case_half_width
from memtail.store.engine import Engine, describe_database
from memtail.store.experiments import get_experiment
from memtail.store.pairs import high_influence_pairs
from memtail.store.progress import progress
from memtail.store.results import latest_run, top_memorized
from memtail.store.urls import display_url
from memtail.views.text import (
    format_pairs,
    format_progress,
    format_top,
    mem_confidence,
    pairs_count,
)

#: Pairs the summary lists; `memtail pairs` lists more.
SUMMARY_PAIRS = 10


def print_summary(engine: Engine, experiment_id: int, database_url: str) -> None:
    experiment = get_experiment(engine, experiment_id)
    state = progress(engine, experiment)
    print()
    print(format_progress(state))
    print()
    print("Most memorized training examples:")
    print(format_top(top_memorized(engine, experiment_id, 10), mem_confidence(state)))
    run = latest_run(engine, experiment_id)
    rule = experiment.spec.estimate
    print()
    print(
        f"High-influence pairs: mem >= {rule.mem_threshold}, infl >= {rule.infl_threshold}, "
        "same class (the paper's rule)"
    )
    if run is None:
        print("  none yet: no estimate has run")
    else:
        shown = high_influence_pairs(engine, experiment_id, SUMMARY_PAIRS)
        if shown:
            print(_indent(format_pairs(shown, run.q_exact_below)))
            rest = state.pairs > len(shown)
            more = f"; `memtail pairs {experiment.name}` lists them all" if rest else ""
            print(f"  the {len(shown)} strongest of {state.pairs}{more}")
        else:
            print("  none passes the rule")
        print(f"  {pairs_count(state)}")
        k = run.trials_used
        in_fraction = experiment.subset_size / experiment.n_train
        half = worst_case_half_width(k, in_fraction, rule.confidence)
        print(
            f"  {run.pairs_examined} pairs examined; with {k} trials a {rule.confidence:.0%} "
            f"interval is at most +-{half:.3f} wide"
        )
    where, query = describe_database(database_url)
    print()
    print(f"Results database: {where}")
    if query:
        print(f"  query it: {query}")


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def _url_option(database_url: str) -> str:
    # They find this database by default only where `memtail run` puts it by default.
    shown = display_url(database_url)
    return "" if database_url == DEFAULT_DATABASE_URL else f" --database-url {shown}"


def next_steps(database_url: str, name: str) -> str:
    """The commands to run next, as the last line of ``memtail run``."""
    url = _url_option(database_url)
    return f"Next: memtail{url} status | memtail{url} top {name} | memtail{url} pairs {name}"


def dashboard_hint(database_url: str) -> str:
    """How to watch these results live, as a line of ``memtail run``'s summary."""
    url = _url_option(database_url)
    return f"  live view: `memtail{url} dashboard`, then open http://127.0.0.1:8050/"
