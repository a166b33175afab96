"""The periodic estimator against real databases: numbers, atomic replacement, views."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.stats import bits
from memtail.stats.influence import PairRule, influence_pairs
from memtail.stats.memorization import MemCounts
from memtail.stats.memorization import memorization as memorization_estimate
from memtail.store import estimate_runs as run_store
from memtail.store.experiments import create_experiment
from memtail.store.outcomes import load_outcomes
from memtail.store.tables import estimate_runs, experiments, influence, memorization
from memtail.work import estimator
from tests.helpers import (
    N_TEST,
    N_TRAIN,
    make_experiment,
    run_all_trials,
    store_planted,
    tiny_examples,
    tiny_spec,
)


def _table(engine: Engine, table: sa.Table, order: str) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(sa.select(table).order_by(sa.text(order))).all()


def test_estimate_matches_the_estimator_on_stored_outcomes(engine: Engine) -> None:
    exp = make_experiment(engine, n_train=40, n_test=30, trials_=30, infl_threshold=0.1).experiment
    run_all_trials(engine, exp.id, 40, 30)
    summary = estimator.estimate_experiment(engine, exp.id)
    assert summary is not None and summary.trials_used == 30 and summary.complete

    outcomes = load_outcomes(engine, exp)
    assert outcomes.masks.shape == (30, 40) and outcomes.masks.sum(axis=1).tolist() == [28] * 30
    expected = memorization_estimate(
        MemCounts.from_trials(outcomes.masks, outcomes.train_correct), 0.95
    )
    rows = _table(engine, memorization, "example_index")
    assert len(rows) == 40
    for i, row in enumerate(rows):
        assert row.n_in == expected.n_in[i] and row.n_out == expected.n_out[i]
        assert row.hits_in == expected.hits_in[i] and row.n_trials == 30
        if expected.defined[i]:
            assert row.mem == pytest.approx(expected.value[i])
            assert row.ci_low == pytest.approx(expected.ci_low[i])
            assert row.ci_high == pytest.approx(expected.ci_high[i])
            assert row.ci_low <= row.mem <= row.ci_high
        else:
            assert row.mem is None and row.ci_low is None
    train_labels = np.array([r.label for r in _examples(engine, "train")])
    test_labels = np.array([r.label for r in _examples(engine, "test")])
    pairs = influence_pairs(
        outcomes.masks,
        outcomes.test_correct,
        PairRule(threshold=0.1, same_class=True),
        train_labels=train_labels,
        test_labels=test_labels,
    )
    stored = _table(engine, influence, "train_index, test_index")
    assert len(pairs) > 0 and len(stored) == len(pairs)
    assert [(r.train_index, r.test_index) for r in stored] == list(
        zip(pairs.train_index.tolist(), pairs.test_index.tolist(), strict=True)
    )
    assert np.allclose([r.infl for r in stored], pairs.infl)
    assert all(train_labels[r.train_index] == test_labels[r.test_index] for r in stored)

    run = _table(engine, estimate_runs, "id")[-1]
    assert run.status == "succeeded" and run.trials_used == 30
    assert run.memorization_rows == 40 and run.influence_rows == len(pairs)
    assert run.pairs_examined == pairs.pairs_examined
    assert run.expected_false_pairs == pytest.approx(pairs.expected_null_passes)
    with engine.connect() as conn:
        assert conn.execute(sa.select(experiments.c.status)).scalar_one() == "complete"
        progress = conn.execute(sa.text("SELECT * FROM experiment_progress")).one()
    assert (progress.succeeded, progress.pending, progress.last_estimate_trials) == (30, 0, 30)
    # Nothing new: the next periodic run skips.
    assert estimator.estimate_experiment(engine, exp.id) is None


def _examples(engine: Engine, split: str) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT label FROM examples WHERE split = :s ORDER BY example_index"),
            {"s": split},
        ).all()


def test_high_influence_pairs_view_applies_the_papers_rule(engine: Engine) -> None:
    exp = make_experiment(engine, n_train=40, n_test=30, trials_=30, infl_threshold=0.1).experiment
    run_all_trials(engine, exp.id, 40, 30)
    estimator.estimate_experiment(engine, exp.id)
    with engine.connect() as conn:
        view = conn.execute(
            sa.text("SELECT * FROM high_influence_pairs ORDER BY train_index, test_index")
        ).all()
        expected = conn.execute(
            sa.text(
                """
                SELECT i.train_index, i.test_index FROM influence i
                JOIN memorization m ON m.experiment_id = i.experiment_id
                 AND m.example_index = i.train_index
                WHERE m.mem >= 0.25 AND i.infl >= 0.1
                ORDER BY i.train_index, i.test_index
                """
            )
        ).all()
    assert [(r.train_index, r.test_index) for r in view] == [tuple(r) for r in expected]
    for row in view:
        assert row.train_label == row.test_label and row.experiment == "tiny"
        assert row.mem >= 0.25 and row.infl >= 0.1
        assert row.train_source == f"train-{row.train_index}.png"


def test_a_false_discovery_level_keeps_only_pairs_under_it(engine: Engine) -> None:
    # Two experiments with the same subsets and outcomes (same seed, planted influence of
    # train example 0), one with estimate.fdr = 0.05: its view is the other's rows with a
    # q-value at most 0.05, the planted pairs among them, the chance pairs not.
    names = {"open": 0.0, "strict": 0.05}
    for name, fdr in names.items():
        exp = create_experiment(
            engine,
            tiny_spec(name, trials_=60, infl_threshold=0.1, fdr=fdr),
            tiny_examples(N_TRAIN, N_TEST),
        ).experiment
        store_planted(engine, exp)
        estimator.estimate_experiment(engine, exp.id)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT experiment, train_index, test_index, q_value FROM high_influence_pairs "
                "ORDER BY experiment, train_index, test_index"
            )
        ).all()
        stored = conn.execute(sa.select(influence.c.q_value, influence.c.p_value)).all()
        runs = conn.execute(sa.select(estimate_runs.c.q_exact_below)).scalars().all()
        fdr = dict(conn.execute(sa.select(experiments.c.name, experiments.c.fdr)).all())
    assert fdr == {"open": None, "strict": 0.05} and runs == [0.1, 0.1]
    assert all(0 < r.p_value <= r.q_value <= 1 for r in stored)
    view = {name: [r[1:] for r in rows if r.experiment == name] for name in names}
    assert view["strict"] == [r for r in view["open"] if r[2] <= 0.05]
    assert {r[0] for r in view["strict"]} == {0}  # only the planted influencer survives
    assert len(view["strict"]) >= 2 and len(view["open"]) > len(view["strict"])


def test_crash_mid_replacement_keeps_previous_estimate(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = make_experiment(engine, n_train=40, n_test=30, trials_=30).experiment
    run_all_trials(engine, exp.id, 40, 30)
    estimator.estimate_experiment(engine, exp.id)
    before = _table(engine, memorization, "example_index")
    before_pairs = _table(engine, influence, "train_index, test_index")

    def crash(*args: object) -> list[dict]:
        raise RuntimeError("killed mid-write")

    # Memorization rows are already deleted and re-inserted when influence rows crash.
    monkeypatch.setattr(run_store, "_influence_rows", crash)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        estimator.estimate_experiment(engine, exp.id, force=True)
    assert _table(engine, memorization, "example_index") == before
    assert _table(engine, influence, "train_index, test_index") == before_pairs
    runs = _table(engine, estimate_runs, "id")
    assert [r.status for r in runs] == ["succeeded", "failed"]
    assert "killed mid-write" in runs[-1].error

    monkeypatch.undo()
    assert estimator.estimate_experiment(engine, exp.id, force=True) is not None


def test_an_estimator_without_its_gpu_records_why(engine: Engine) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has the GPU whose absence the test is about")
    exp = make_experiment(engine, n_train=40, n_test=30, trials_=30).experiment
    run_all_trials(engine, exp.id, 40, 30)
    with pytest.raises(RuntimeError, match="torch sees no CUDA device"):
        estimator.estimate_experiment(engine, exp.id, device="cuda")
    run = _table(engine, estimate_runs, "id")[-1]
    assert run.status == "failed" and "torch sees no CUDA device" in run.error
    # The CPU scan then works on the same outcomes.
    assert estimator.estimate_experiment(engine, exp.id, device="auto") is not None


def test_examples_never_out_get_null_estimates(engine: Engine) -> None:
    # m = n - 1 with 2 trials: most examples are in every subset, so n_out = 0 for them.
    from dataclasses import replace

    from memtail.store.experiments import create_experiment
    from tests.helpers import tiny_examples, tiny_spec

    spec = replace(tiny_spec(trials_=2), subset_size=19)
    exp = create_experiment(engine, spec, tiny_examples()).experiment
    run_all_trials(engine, exp.id, 20, 10)
    estimator.estimate_experiment(engine, exp.id)
    rows = _table(engine, memorization, "example_index")
    never_out = [r for r in rows if r.n_out == 0]
    assert len(never_out) >= 16
    assert all(r.mem is None and r.ci_low is None and r.acc_out is None for r in never_out)
    assert all(r.n_in == 2 and r.acc_in is not None for r in never_out)


@pytest.mark.postgres
def test_get_bit_reads_one_trial_outcome(pg_engine: Engine) -> None:
    exp = make_experiment(pg_engine).experiment
    run_all_trials(pg_engine, exp.id, 20, 10)
    with pg_engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT trial_id, train_correct FROM trial_outcomes LIMIT 1")
        ).one()
        via_sql = (
            conn.execute(
                sa.text(
                    "SELECT get_bit(train_correct, i) FROM trial_outcomes, "
                    "generate_series(0, 19) i WHERE trial_id = :t ORDER BY i"
                ),
                {"t": row.trial_id},
            )
            .scalars()
            .all()
        )
    assert np.array_equal(np.array(via_sql, dtype=bool), bits.unpack(row.train_correct, 20))


@pytest.mark.postgres
def test_only_one_estimator_per_experiment(pg_engine: Engine) -> None:
    exp = make_experiment(pg_engine).experiment
    run_all_trials(pg_engine, exp.id, 20, 10)
    with run_store.exclusive(pg_engine, exp.id):
        # Another process holds this experiment's estimator lock: this run says who.
        busy = rf"experiment {exp.id} is being estimated by another estimator \(PostgreSQL"
        with pytest.raises(run_store.EstimatorBusy, match=busy):
            estimator.estimate_experiment(pg_engine, exp.id)
        assert estimator.estimate_all(pg_engine) == []  # the periodic run skips it, logged
    assert estimator.estimate_experiment(pg_engine, exp.id) is not None


@pytest.mark.postgres
def test_an_analyst_cannot_stop_the_estimator(pg_url: str, pg_engine: Engine) -> None:
    from tests.conftest import granted_analyst

    exp = make_experiment(pg_engine).experiment
    run_all_trials(pg_engine, exp.id, 20, 10)
    with pg_engine.connect() as analyst:
        analyst.execute(sa.text(f'SET ROLE "{granted_analyst(pg_engine)}"'))
        # Advisory locks are anyone's: holding every key the estimator once used changes
        # nothing now.
        analyst.execute(sa.select(sa.func.pg_advisory_lock(0x6D74, exp.id)))
        analyst.execute(sa.select(sa.func.pg_advisory_lock(exp.id)))
        # The estimator's own lock needs UPDATE on estimator_locks, which analysts lack.
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            analyst.execute(sa.text("SELECT * FROM estimator_locks FOR UPDATE"))
        analyst.rollback()
        assert estimator.estimate_experiment(pg_engine, exp.id) is not None
