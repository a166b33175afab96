"""Batch claims against real PostgreSQL and SQLite: up to B trials in one statement, each
its own fenced claim, and never one trial to two claimants."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.records import Claim
from memtail.stats import bits
from memtail.store import outcomes, reaper, trials
from memtail.store.engine import db_now_plus, with_retries
from memtail.store.tables import trial_outcomes
from memtail.store.tables import trials as trials_table
from tests.helpers import expire_lease, make_experiment, random_outcome


def test_claims_up_to_the_limit_lowest_index_first(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=7).experiment
    first = trials.claim_batch(engine, exp.id, "w1", 60, limit=3)
    assert [c.trial_index for c in first] == [0, 1, 2]
    assert all(c.attempt == 1 and c.worker == "w1" for c in first)
    second = trials.claim_batch(engine, exp.id, "w2", 60, limit=10)
    assert [c.trial_index for c in second] == [3, 4, 5, 6]
    assert trials.claim_batch(engine, exp.id, "w3", 60, limit=4) == []
    with pytest.raises(ValueError, match="limit"):
        trials.claim_batch(engine, exp.id, "w3", 60, limit=0)


def test_each_claim_of_a_batch_is_fenced_on_its_own(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=3).experiment
    batch = trials.claim_batch(engine, exp.id, "w1", 60, limit=3)
    assert trials.heartbeat_many(engine, batch, 60) == []
    # One member's lease runs out and another worker takes that trial.
    expire_lease(engine, batch[1].trial_id)
    assert reaper.reap(engine, max_lost=3).requeued == 1
    retaken = trials.claim_batch(engine, exp.id, "w2", 60, limit=3)
    assert [(c.trial_index, c.attempt) for c in retaken] == [(1, 2)]
    assert trials.heartbeat_many(engine, batch, 60) == [batch[1]]
    rng = np.random.default_rng(0)
    with pytest.raises(trials.LeaseLost):
        outcomes.store(engine, batch[1], random_outcome(rng, 20, 10), 20, 10)
    for claim in (batch[0], batch[2], retaken[0]):
        outcomes.store(engine, claim, random_outcome(rng, 20, 10), 20, 10)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(trial_outcomes.c.trial_id, trial_outcomes.c.attempt)).all()
    assert sorted(stored) == sorted(
        [(batch[0].trial_id, 1), (batch[2].trial_id, 1), (batch[1].trial_id, 2)]
    )


def test_undispatched_only_leaves_trials_with_a_message(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=4).experiment
    with engine.begin() as conn:
        conn.execute(
            sa.update(trials_table)
            .where(trials_table.c.experiment_id == exp.id, trials_table.c.trial_index < 2)
            .values(dispatched_at=db_now_plus(0))
        )
    batch = trials.claim_batch(engine, exp.id, "w", 60, limit=4, undispatched_only=True)
    assert [c.trial_index for c in batch] == [2, 3]


@pytest.mark.postgres
def test_racing_batch_claims_hand_each_trial_out_once(pg_engine: Engine) -> None:
    """Six threads claim batches of up to 7 of 400 trials as fast as they can."""
    exp = make_experiment(pg_engine, trials_=400).experiment
    got: list[Claim] = []
    lock = threading.Lock()
    sizes: list[int] = []

    def claimant(name: str) -> None:
        while True:
            batch = with_retries(lambda: trials.claim_batch(pg_engine, exp.id, name, 60, limit=7))
            if not batch:
                return
            with lock:
                got.extend(batch)
                sizes.append(len(batch))

    threads = [threading.Thread(target=claimant, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = Counter(c.trial_id for c in got)
    assert len(counts) == 400 and set(counts.values()) == {1}
    assert max(sizes) <= 7
    with pg_engine.connect() as conn:
        rows = conn.execute(
            sa.select(trials_table.c.attempts, trials_table.c.worker).where(
                trials_table.c.experiment_id == exp.id
            )
        ).all()
    assert {row.attempts for row in rows} == {1}
    owners = {c.trial_id: c.worker for c in got}
    assert Counter(owners.values()) == Counter(row.worker for row in rows)


def test_a_batch_stores_in_one_transaction_each_row_fenced(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=4).experiment
    batch = trials.claim_batch(engine, exp.id, "w1", 60, limit=4)
    expire_lease(engine, batch[2].trial_id)
    reaper.reap(engine, max_lost=3)
    rng = np.random.default_rng(1)
    results = [(claim, random_outcome(rng, 20, 10)) for claim in batch]
    assert outcomes.store_many(engine, results, 20, 10) == [batch[2]]
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(trial_outcomes.c.trial_id, trial_outcomes.c.train_correct)
        ).all()
        statuses = dict(
            conn.execute(sa.select(trials_table.c.trial_index, trials_table.c.status)).all()
        )
    by_trial = {row.trial_id: bytes(row.train_correct) for row in stored}
    assert set(by_trial) == {batch[i].trial_id for i in (0, 1, 3)}
    for claim, outcome in results:
        if claim.trial_id in by_trial:
            assert by_trial[claim.trial_id] == bits.pack(outcome.train_correct)
    assert statuses == {0: "succeeded", 1: "succeeded", 2: "pending", 3: "succeeded"}
    # A late duplicate of the same batch stores nothing more.
    assert outcomes.store_many(engine, results[:2], 20, 10) == batch[:2]


def test_one_malformed_payload_writes_nothing_of_the_batch(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=2).experiment
    batch = trials.claim_batch(engine, exp.id, "w1", 60, limit=2)
    rng = np.random.default_rng(2)
    good, bad = random_outcome(rng, 20, 10), random_outcome(rng, 19, 10)
    with pytest.raises(bits.PayloadError):
        outcomes.store_many(engine, [(batch[0], good), (batch[1], bad)], 20, 10)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(trial_outcomes)).scalar() == 0
        assert set(conn.execute(sa.select(trials_table.c.status)).scalars()) == {"running"}
