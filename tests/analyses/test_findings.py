"""What the report and dashboard gather (memtail.analyses.findings and its store reads),
on experiments whose trials plant memorization and influence, on both databases."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.analyses.convergence import convergence, prefix_sizes
from memtail.analyses.findings import gather, gather_all
from memtail.store import outcomes, trials
from memtail.store.pairs import pair_summary
from memtail.store.results import typical_examples
from memtail.store.workers import worker_states
from memtail.views.pages import experiment_page
from tests.helpers import PLANTED_SIZES, make_experiment, planted, random_outcome

N_TRAIN, N_TEST, MEMORIZED = PLANTED_SIZES


def test_the_pairs_table_counts_the_view(engine: Engine) -> None:
    exp = planted(engine, "pairs")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT train_index, test_index FROM high_influence_pairs WHERE experiment_id = :e"
            ),
            {"e": exp.id},
        ).all()
    per_test: dict[int, int] = {}
    for _, test in rows:
        per_test[test] = per_test.get(test, 0) + 1
    summary = pair_summary(engine, exp.id)
    assert summary is not None and summary.trials == 60
    assert summary.pairs == len(rows) > 0
    assert summary.test_examples == len(per_test)
    assert summary.train_examples == len({train for train, _ in rows})
    assert summary.single_influencer == sum(1 for n in per_test.values() if n == 1)
    assert summary.influence_rows >= summary.pairs
    assert pair_summary(engine, make_experiment(engine, name="none").experiment.id) is None


def test_convergence_ends_at_the_stored_estimate(engine: Engine) -> None:
    exp = planted(engine, "converge")
    c = convergence(engine, exp)
    assert c is not None and c.trials[-1] == 60
    with engine.connect() as conn:
        memorized = conn.execute(
            sa.text("SELECT count(*) FROM memorization WHERE experiment_id = :e AND mem >= 0.25"),
            {"e": exp.id},
        ).scalar_one()
    assert c.memorized[-1] == memorized == MEMORIZED
    # More trials, narrower intervals: the planted examples' half-widths shrink.
    assert c.median_half_width[-1] < c.median_half_width[0]
    assert np.all(np.diff(c.worst_case) < 0)
    assert prefix_sizes(0).size == 0 and prefix_sizes(3).tolist() == [3]
    assert prefix_sizes(400).tolist()[-1] == 400 and len(prefix_sizes(400)) == 12


def test_typical_examples_are_the_least_memorized_of_their_class(engine: Engine) -> None:
    exp = planted(engine, "typical")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT m.example_index, e.label, m.mem, m.ci_high - m.ci_low AS w "
                "FROM memorization m JOIN examples e ON e.experiment_id = m.experiment_id AND "
                "e.split = 'train' AND e.example_index = m.example_index "
                "WHERE m.experiment_id = :e AND m.mem IS NOT NULL"
            ),
            {"e": exp.id},
        ).all()
    chosen = typical_examples(engine, exp.id, [0, 2], per_class=2)
    assert [r.label for r in chosen] == [0, 0, 2, 2]
    for label in (0, 2):
        mine = sorted((abs(r.mem), r.w, r.example_index) for r in rows if r.label == label)
        assert [r.example_index for r in chosen if r.label == label] == [m[2] for m in mine[:2]]
    assert typical_examples(engine, exp.id, []) == []


def test_workers_are_known_by_their_claims(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=3).experiment
    with engine.connect() as conn:
        ids = (
            conn.execute(
                sa.text("SELECT id FROM trials WHERE experiment_id = :e ORDER BY id"), {"e": exp.id}
            )
            .scalars()
            .all()
        )
    held = trials.claim(engine, ids[0], "gpu-7", 60)
    assert held is not None
    other = trials.claim(engine, ids[1], "gpu-8", 60)
    assert other is not None
    outcomes.store(engine, other, random_outcome(np.random.default_rng(0), 20, 10), 20, 10)
    states = {w.worker: w for w in worker_states(engine)}
    assert set(states) == {"gpu-7", "gpu-8"}
    assert states["gpu-7"].current == (exp.name, 0) and states["gpu-7"].last_seen is not None
    assert states["gpu-7"].succeeded == 0
    assert states["gpu-8"].current is None and states["gpu-8"].succeeded == 1


def test_gathered_pages_have_every_section_with_data(engine: Engine) -> None:
    exp = planted(engine, "page")
    found = gather(engine, exp)
    assert found.estimated and found.stability is not None and found.stability.trials == 60
    assert found.depth is None and found.utility is None  # no probe, no removal arms
    assert {r.example_index for r in found.top[:MEMORIZED]} == set(range(MEMORIZED))
    page = experiment_page(found, None)  # no images: tables instead of grids
    keys = [s.key for s in page.sections]
    assert keys == [
        "card",
        "pairs-table",
        "memorization",
        "influence",
        "convergence",
        "examples",
        "pair-examples",
        "stability",
    ]
    examples = next(s for s in page.sections if s.key == "examples")
    assert not examples.images and len(examples.tables[0].rows) == len(found.top)
    assert all(s.trials == 60 for s in page.sections if s.key != "card")
    empty = make_experiment(engine, name="empty").experiment
    bare = experiment_page(gather(engine, empty), None)
    assert [s.key for s in bare.sections] == ["card"]
    both = gather_all(engine, [exp, planted(engine, "page-b", seed=1)])
    (pair,) = both.comparisons
    assert pair.comparison is not None and pair.trials == (60, 60)
