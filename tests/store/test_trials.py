"""The trial lifecycle against real PostgreSQL and SQLite: claim, fence, fail, reap."""

from __future__ import annotations

import time

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.records import Claim
from memtail.specification import SpecError
from memtail.stats import bits
from memtail.stats.outcomes import TrialOutcome
from memtail.stats.subsets import subset_mask, training_seed
from memtail.store import outcomes, reaper, trials
from memtail.store.engine import one_statement, with_retries
from memtail.store.experiments import create_experiment, get_experiment
from memtail.store.tables import examples, experiments, trial_outcomes
from memtail.store.tables import trials as trials_table
from tests.helpers import expire_lease, make_experiment, random_outcome, tiny_examples, tiny_spec


def _count(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def _trial(engine: Engine, trial_id: int) -> sa.Row:
    with engine.connect() as conn:
        return conn.execute(sa.select(trials_table).where(trials_table.c.id == trial_id)).one()


def _first_trial_id(engine: Engine, experiment_id: int) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.min(trials_table.c.id)).where(
                trials_table.c.experiment_id == experiment_id
            )
        ).scalar_one()


def test_create_writes_everything_once(engine: Engine) -> None:
    created = make_experiment(engine)
    assert created.created
    exp = created.experiment
    assert (exp.n_train, exp.n_test, exp.subset_size, exp.target_trials) == (20, 10, 14, 12)
    assert _count(engine, examples) == 30
    assert _count(engine, trials_table) == 12
    with engine.connect() as conn:
        rows = conn.execute(sa.select(trials_table).order_by(trials_table.c.trial_index)).all()
    for row in rows:
        mask = bits.unpack(row.subset, 20)
        assert mask.sum() == 14
        assert np.array_equal(mask, subset_mask(7, row.trial_index, 20, 14))
        assert row.seed == training_seed(7, row.trial_index)
        assert row.status == "pending" and row.attempts == 0
    # Same spec again: a no-op that says so.
    again = make_experiment(engine)
    assert not again.created and again.experiment.id == exp.id
    assert _count(engine, trials_table) == 12


def test_name_clash_with_different_spec_writes_nothing(engine: Engine) -> None:
    make_experiment(engine)
    # The fields that differ are named, with both values, so a changed default is plain.
    with pytest.raises(
        SpecError, match=r"'name'.*already exists with a different spec \(trials: 12 stored, 13"
    ):
        create_experiment(engine, tiny_spec(trials_=13), tiny_examples())
    assert _count(engine, trials_table) == 12
    assert _count(engine, experiments) == 1


def test_subset_size_out_of_range_writes_nothing(engine: Engine) -> None:
    from dataclasses import replace

    spec = replace(tiny_spec(), subset_size=20)
    with pytest.raises(SpecError, match="'subset_size'.*0 < m < n_train"):
        create_experiment(engine, spec, tiny_examples())
    assert _count(engine, experiments) == 0


def test_claim_is_exclusive_and_store_is_fenced(engine: Engine) -> None:
    exp = make_experiment(engine).experiment
    trial_id = _first_trial_id(engine, exp.id)
    first = trials.claim(engine, trial_id, "w1", lease_seconds=60)
    assert first is not None and first.attempt == 1
    # A duplicate message or a racing worker finds the trial taken.
    assert trials.claim(engine, trial_id, "w2", lease_seconds=60) is None
    trials.heartbeat(engine, first, lease_seconds=60)

    # w1 stops heartbeating: its lease runs out, the reaper frees the trial, w2 claims it.
    expire_lease(engine, trial_id)
    assert reaper.reap(engine, max_lost=3) == reaper.ReapResult(requeued=1, failed=0)
    second = trials.claim(engine, trial_id, "w2", lease_seconds=60)
    assert second is not None and second.attempt == 2

    rng = np.random.default_rng(0)
    zombie_result = random_outcome(rng, 20, 10)
    with pytest.raises(trials.LeaseLost):
        trials.heartbeat(engine, first, lease_seconds=60)
    with pytest.raises(trials.LeaseLost):
        outcomes.store(engine, first, zombie_result, 20, 10)
    assert _count(engine, trial_outcomes) == 0

    fresh = random_outcome(rng, 20, 10)
    outcomes.store(engine, second, fresh, 20, 10)
    row = _trial(engine, trial_id)
    assert row.status == "succeeded" and row.attempts == 2
    with engine.connect() as conn:
        out = conn.execute(sa.select(trial_outcomes)).one()
    assert out.attempt == 2
    assert np.array_equal(bits.unpack(out.train_correct, 20), fresh.train_correct)
    # A late duplicate store of the same claim cannot add a second row.
    with pytest.raises(trials.LeaseLost):
        outcomes.store(engine, second, fresh, 20, 10)
    assert _count(engine, trial_outcomes) == 1


def test_wrong_payload_length_is_rejected_and_nothing_written(engine: Engine) -> None:
    exp = make_experiment(engine).experiment
    trial_id = _first_trial_id(engine, exp.id)
    claim = trials.claim(engine, trial_id, "w1", 60)
    assert claim is not None
    bad = TrialOutcome(
        train_correct=np.ones(19, dtype=bool),
        test_correct=np.ones(10, dtype=bool),
        train_accuracy=1.0,
        test_accuracy=1.0,
    )
    with pytest.raises(bits.PayloadError, match="train_correct: shape"):
        outcomes.store(engine, claim, bad, 20, 10)
    assert _trial(engine, trial_id).status == "running"
    assert _count(engine, trial_outcomes) == 0


def test_margins_are_stored_as_float16(engine: Engine) -> None:
    exp = make_experiment(engine).experiment
    claim = trials.claim(engine, _first_trial_id(engine, exp.id), "w1", 60)
    assert claim is not None
    margin = np.linspace(-3, 3, 20).astype(np.float16)
    outcome = TrialOutcome(
        train_correct=margin > 0,
        test_correct=np.ones(10, dtype=bool),
        train_accuracy=0.5,
        test_accuracy=1.0,
        train_margin=margin,
        test_margin=np.zeros(10),
    )
    outcomes.store(engine, claim, outcome, 20, 10)
    with engine.connect() as conn:
        out = conn.execute(sa.select(trial_outcomes)).one()
    assert np.array_equal(np.frombuffer(out.train_margin, dtype="<f2"), margin)
    assert len(out.test_margin) == 20


def test_failures_retry_then_fail_with_reason(engine: Engine) -> None:
    exp = make_experiment(engine).experiment
    trial_id = _first_trial_id(engine, exp.id)
    statuses = []
    for attempt in range(1, 4):
        claim = trials.claim(engine, trial_id, "w1", 60)
        assert claim is not None and claim.attempt == attempt
        statuses.append(trials.fail(engine, claim, f"boom {attempt}", max_attempts=3))
    assert statuses == ["pending", "pending", "failed"]
    row = _trial(engine, trial_id)
    assert row.status == "failed" and row.error == "boom 3" and row.finished_at is not None
    assert trials.claim(engine, trial_id, "w1", 60) is None


def test_reaper_fails_trials_out_of_attempts(engine: Engine) -> None:
    exp = make_experiment(engine).experiment
    trial_id = _first_trial_id(engine, exp.id)
    claim = trials.claim(engine, trial_id, "w1", 60)
    assert claim is not None
    assert reaper.reap(engine, max_lost=1) == reaper.ReapResult(0, 0)  # lease still valid
    expire_lease(engine, trial_id)
    assert reaper.reap(engine, max_lost=1) == reaper.ReapResult(requeued=0, failed=1)
    row = _trial(engine, trial_id)
    assert row.status == "failed" and "lease expired (worker w1" in row.error


def test_real_lease_expiry_by_database_clock(engine: Engine) -> None:
    exp = make_experiment(engine).experiment
    trial_id = _first_trial_id(engine, exp.id)
    assert trials.claim(engine, trial_id, "w1", lease_seconds=0.2) is not None
    assert reaper.reap(engine, 3).requeued == 0
    time.sleep(1.2)
    assert reaper.reap(engine, 3).requeued == 1
    assert _trial(engine, trial_id).status == "pending"


def test_experiment_lookup(engine: Engine) -> None:
    exp = make_experiment(engine).experiment
    assert get_experiment(engine, "tiny").id == exp.id
    assert get_experiment(engine, exp.id).spec == tiny_spec()


def test_claim_next_takes_pending_trials_in_order(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=3).experiment
    claims = [trials.claim_next(engine, exp.id, "w", 60) for _ in range(4)]
    assert [c.trial_index for c in claims[:3] if c] == [0, 1, 2]
    assert claims[3] is None


@pytest.mark.postgres
def test_reaper_waits_a_lease_after_a_server_restart(pg_engine: Engine) -> None:
    exp = make_experiment(pg_engine).experiment
    trial_id = _first_trial_id(pg_engine, exp.id)
    assert trials.claim(pg_engine, trial_id, "w1", 60) is not None
    expire_lease(pg_engine, trial_id)
    # The server has been up for less than "a year-long lease": nothing is reaped, since
    # the worker may only have been unable to heartbeat while the server was down.
    assert reaper.reap(pg_engine, 3, grace_after_restart=3e7) == reaper.ReapResult(0, 0)
    assert reaper.reap(pg_engine, 3, grace_after_restart=0) == reaper.ReapResult(1, 0)


@pytest.mark.postgres
def test_single_statements_survive_a_dropped_connection_with_one_retry(pg_engine: Engine) -> None:
    # Hot statements run on an autocommit pool without pre-ping; a connection the server
    # dropped must cost one retry, not a crashed worker, and the retry must succeed.
    exp = make_experiment(pg_engine, trials_=3).experiment
    with one_statement(pg_engine) as conn:
        assert conn.connection.driver_connection.autocommit  # type: ignore[union-attr]
        backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    with pg_engine.connect() as admin:
        admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    attempts: list[int] = []

    def claim() -> Claim | None:
        attempts.append(1)
        return trials.claim_next(pg_engine, exp.id, "w", 60)

    first = with_retries(claim, first_delay=0.01)
    assert first is not None and first.trial_index == 0
    assert len(attempts) == 2
    # The claim committed by itself, with no transaction left open on the connection.
    assert _trial(pg_engine, first.trial_id).status == "running"


def test_release_running_only_touches_the_named_workers(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=3).experiment
    local = trials.claim_next(engine, exp.id, "local:123:0", 60)
    celery = trials.claim_next(engine, exp.id, "gpu-host:77", 60)
    assert local is not None and celery is not None
    assert reaper.release_running(engine, exp.id, worker_prefix="local:", max_lost=20) == 1
    assert _trial(engine, local.trial_id).status == "pending"
    assert _trial(engine, celery.trial_id).status == "running"
