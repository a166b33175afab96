"""Lost claims (the worker died, no error) are counted and bounded apart from failures,
and `retry` puts failed trials back, fenced: on real PostgreSQL and SQLite."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.cli.main import main
from memtail.records import Claim
from memtail.status import ExperimentStatus, TrialStatus
from memtail.store import lifecycle, outcomes, reaper, trials
from memtail.store.experiments import get_experiment
from memtail.store.progress import progress
from memtail.store.tables import trials as trials_table
from memtail.views.rows import progress_record
from memtail.views.text import format_progress
from tests.helpers import expire_lease, make_experiment, random_outcome

N_TRAIN, N_TEST = 20, 10


def _row(engine: Engine, trial_id: int) -> sa.Row:
    with engine.connect() as conn:
        return conn.execute(sa.select(trials_table).where(trials_table.c.id == trial_id)).one()


def _claim(engine: Engine, experiment_id: int, worker: str = "w") -> Claim:
    claim = trials.claim_next(engine, experiment_id, worker, 60)
    assert claim is not None
    return claim


def test_kills_are_lost_claims_not_failed_attempts(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=1).experiment
    # Five deaths, each in a different way a kill shows up, with max_attempts = 3.
    for kill in range(5):
        claim = _claim(engine, exp.id, f"local:1:{kill}")
        if kill % 3 == 0:
            expire_lease(engine, claim.trial_id)
            assert reaper.reap(engine, max_lost=20).requeued == 1
        elif kill % 3 == 1:
            died = f"local worker local:1:{kill} died (exit code -9) under it"
            released = reaper.release_running(
                engine, exp.id, f"local:1:{kill}", exact=True, died=died, max_lost=20
            )
            assert released == 1
        else:  # `memtail run` itself was killed: the next run releases its trials
            assert reaper.release_running(engine, exp.id, "local:", max_lost=20) == 1
    row = _row(engine, claim.trial_id)
    assert (row.status, row.attempts, row.lost, row.preemptions) == ("pending", 5, 5, 0)
    # `memtail status` says so, apart from failures.
    seen = progress(engine, exp)
    assert (seen.lost, seen.counts[TrialStatus.FAILED], seen.preemptions) == (5, 0, 0)
    assert "lost: 5 claims whose worker died under them" in format_progress(seen)
    assert progress_record(seen)["lost_claims"] == 5
    # Real errors still get all three attempts, and fail for good after them.
    statuses = [trials.fail(engine, _claim(engine, exp.id), "boom", 3) for _ in range(3)]
    assert statuses == ["pending", "pending", "failed"]
    assert _row(engine, claim.trial_id).error == "boom"


def test_lost_too_often_fails_with_the_reason(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=1).experiment
    for n in range(1, 5):
        claim = _claim(engine, exp.id)
        expire_lease(engine, claim.trial_id)
        result = reaper.reap(engine, max_lost=4)
        assert result == (reaper.ReapResult(0, 1) if n == 4 else reaper.ReapResult(1, 0))
    row = _row(engine, claim.trial_id)
    assert row.status == "failed" and row.lost == 4 and row.finished_at is not None
    assert row.error.startswith("lost 4 times") and "MEMTAIL_MAX_LOST" in row.error
    assert "lease expired (worker w stopped heartbeating)" in row.error
    assert trials.claim(engine, claim.trial_id, "w", 60) is None


def _failed_for_good(engine: Engine, experiment_id: int) -> Claim:
    for _ in range(2):
        claim = _claim(engine, experiment_id)
        assert trials.fail(engine, claim, "CUDA out of memory", max_attempts=2) is not None
    assert _row(engine, claim.trial_id).status == "failed"
    return claim


def test_retry_requeues_failed_trials_with_their_attempts_again(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=2, n_train=N_TRAIN, n_test=N_TEST).experiment
    failed = _failed_for_good(engine, exp.id)
    other = _claim(engine, exp.id)  # running: retry must leave it alone
    assert lifecycle.retry_failed(engine, exp) == 1
    row = _row(engine, failed.trial_id)
    assert (row.status, row.attempts, row.retried_attempts) == ("pending", 2, 2)
    assert row.error == "CUDA out of memory" and row.finished_at is None
    assert _row(engine, other.trial_id).status == "running"
    # The bound starts over: two more failures before it fails for good again.
    statuses = [
        trials.fail(engine, _claim(engine, exp.id), "again", max_attempts=2) for _ in range(2)
    ]
    assert statuses == ["pending", "failed"]
    assert _row(engine, failed.trial_id).attempts == 4  # monotonic: fencing holds
    assert lifecycle.retry_failed(engine, exp) == 1
    assert lifecycle.retry_failed(engine, exp) == 0  # nothing failed left


def test_a_zombie_of_a_retried_trial_cannot_store(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=1, n_train=N_TRAIN, n_test=N_TEST).experiment
    zombie = _claim(engine, exp.id)
    expire_lease(engine, zombie.trial_id)
    reaper.reap(engine, max_lost=1)  # lost once too often: failed, the zombie still trains
    assert _row(engine, zombie.trial_id).status == "failed"
    assert lifecycle.retry_failed(engine, exp) == 1
    outcome = random_outcome(np.random.default_rng(0), N_TRAIN, N_TEST)
    with pytest.raises(trials.LeaseLost):  # retried but not claimed yet
        outcomes.store(engine, zombie, outcome, N_TRAIN, N_TEST)
    current = _claim(engine, exp.id)
    assert current.attempt == zombie.attempt + 1
    with pytest.raises(trials.LeaseLost):
        outcomes.store(engine, zombie, outcome, N_TRAIN, N_TEST)
    with pytest.raises(trials.LeaseLost):
        trials.heartbeat(engine, zombie, 60)
    outcomes.store(engine, current, outcome, N_TRAIN, N_TEST)
    assert trials.status_counts(engine, exp.id)[TrialStatus.SUCCEEDED] == 1


def test_retry_makes_a_complete_experiment_active(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=1).experiment
    _failed_for_good(engine, exp.id)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"UPDATE experiments SET status = '{ExperimentStatus.COMPLETE}' WHERE id = {exp.id}"
        )
    assert lifecycle.retry_failed(engine, exp) == 1
    assert get_experiment(engine, exp.id).status == ExperimentStatus.ACTIVE
    assert trials.claim_next(engine, exp.id, "w", 60) is not None


def _cli(url: str, *argv: str) -> int:
    return main(["--database-url", url, *argv])


def test_the_retry_command(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    url = engine.url.render_as_string(hide_password=False)
    exp = make_experiment(engine, trials_=3).experiment
    _failed_for_good(engine, exp.id)
    expired = _claim(engine, exp.id)
    expire_lease(engine, expired.trial_id)
    assert _cli(url, "experiment", "retry", "tiny", "--failed") == 0
    assert "re-queued 1 failed trial of 'tiny'" in capsys.readouterr().out
    assert _row(engine, expired.trial_id).status == "running"  # --failed: leases left alone
    _failed_for_good(engine, exp.id)
    assert _cli(url, "experiment", "retry", "tiny") == 0
    out = capsys.readouterr().out
    assert "re-queued 1 failed trial" in out and "freed 1 expired lease" in out
    assert _row(engine, expired.trial_id).lost == 1
    assert trials.status_counts(engine, exp.id)[TrialStatus.PENDING] == 3


def test_retry_of_an_unknown_experiment_is_one_line(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    assert _cli(url, "experiment", "retry", "nope") == 2
    err = capsys.readouterr().err
    assert err.startswith("memtail: error: ") and err.count("\n") == 1 and "nope" in err
