"""An experiment's life on both databases: extend, pause and resume, delete."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.analyses.removal import create_removal
from memtail.specification import SpecError
from memtail.stats import bits
from memtail.stats.subsets import subset_mask, training_seed
from memtail.status import ExperimentStatus, TrialStatus
from memtail.store import lifecycle, reaper, trials
from memtail.store.experiments import find_experiment, get_experiment
from memtail.store.tables import metadata
from memtail.work.estimator import estimate_experiment
from tests.helpers import make_experiment, planted, run_all_trials, store_planted


def _trials(engine: Engine, experiment_id: int) -> list[sa.Row]:
    table = metadata.tables["trials"]
    with engine.connect() as conn:
        return conn.execute(
            sa.select(table.c.trial_index, table.c.seed, table.c.subset, table.c.status)
            .where(table.c.experiment_id == experiment_id)
            .order_by(table.c.trial_index)
        ).all()


def test_extend_adds_trials_that_follow_from_seed_and_index(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=4).experiment
    run_all_trials(engine, exp.id, 20, 10)
    assert estimate_experiment(engine, exp.id).trials_used == 4
    assert get_experiment(engine, exp.id).status == ExperimentStatus.COMPLETE

    grown = lifecycle.extend(engine, exp, 7)
    # Complete, then extended: active again, with the stored spec saying 7.
    assert (grown.target_trials, grown.spec.trials, grown.status) == (7, 7, "active")
    assert grown.spec_hash == grown.spec.spec_hash() != exp.spec_hash
    rows = _trials(engine, exp.id)
    assert [r.trial_index for r in rows] == list(range(7))
    assert [r.status for r in rows] == ["succeeded"] * 4 + ["pending"] * 3
    for row in rows[4:]:
        assert row.seed == training_seed(exp.seed, row.trial_index)
        mask = subset_mask(exp.seed, row.trial_index, exp.n_train, exp.subset_size)
        assert bytes(row.subset) == bits.pack(mask)
    # The estimate folds the new trials in once they ran.
    run_all_trials(engine, exp.id, 20, 10, seed=1)
    assert estimate_experiment(engine, exp.id).trials_used == 7

    with pytest.raises(SpecError, match="has 7 trials; extending needs more than that"):
        lifecycle.extend(engine, grown, 7)
    # A stale copy cannot extend twice: the write is fenced by the trial count it saw.
    with pytest.raises(lifecycle.ConcurrentChange):
        lifecycle.extend(engine, exp, 9)
    assert len(_trials(engine, exp.id)) == 7


def test_extending_a_removal_arm_keeps_its_one_subset(engine: Engine) -> None:
    source = planted(engine, "source")
    arm = create_removal(engine, source, trials_per_arm=2)[1]
    grown = lifecycle.extend(engine, arm, 3)
    subsets = {bytes(r.subset) for r in _trials(engine, arm.id)}
    assert len(subsets) == 1 and grown.target_trials == 3


def test_a_paused_experiment_is_not_claimed_until_resumed(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=3).experiment
    paused = lifecycle.set_paused(engine, exp, True)
    assert paused.status == ExperimentStatus.PAUSED
    assert trials.claim_next(engine, exp.id, "w", 60) is None
    resumed = lifecycle.set_paused(engine, exp, False)
    assert resumed.status == ExperimentStatus.ACTIVE
    claim = trials.claim_next(engine, exp.id, "w", 60)
    assert claim is not None and claim.trial_index == 0
    # Pausing a complete experiment changes nothing.
    run_all_trials(engine, exp.id, 20, 10)
    reaper.release_running(engine, exp.id, "w", max_lost=20)
    run_all_trials(engine, exp.id, 20, 10)
    estimate_experiment(engine, exp.id)
    done = get_experiment(engine, exp.id)
    assert lifecycle.set_paused(engine, done, True).status == ExperimentStatus.COMPLETE
    assert trials.status_counts(engine, exp.id)[TrialStatus.SUCCEEDED] == 3


def test_delete_removes_every_row_of_one_experiment(engine: Engine) -> None:
    keep = make_experiment(engine, name="keep", trials_=3).experiment
    run_all_trials(engine, keep.id, 20, 10)
    source = planted(engine, "source")
    estimate_experiment(engine, source.id, force=True)
    for arm in create_removal(engine, source, trials_per_arm=2):
        store_planted(engine, arm)

    def rows() -> dict[str, int]:
        with engine.connect() as conn:
            return {
                name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for name, table in metadata.tables.items()
            }

    before = rows()
    deleted = lifecycle.delete(engine, source)
    after = rows()
    assert find_experiment(engine, "source") is None
    assert deleted == sum(before.values()) - sum(after.values()) > 0
    assert after["memorization"] == 0 and after["influence"] == 0  # only source had them
    assert find_experiment(engine, "keep") is not None
    assert after["trials"] == 3 + 3 * 2  # keep's, and the arms'
