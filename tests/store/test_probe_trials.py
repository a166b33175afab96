"""A probe experiment's trials in the database, on PostgreSQL and SQLite.

Trial 0 (the feature trial) trains on every example and stores its features artifact
instead of an outcome row; the probe trials follow the contracts of any subsample trial
(subset and seed pure functions of (seed, t), one outcome row each) and can be claimed
or dispatched only once the features are stored. A feature trial that fails for good
fails the probe trials with it, so that a run waiting on them ends.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.records import FEATURE_TRIAL, Experiment
from memtail.specification import ExperimentKind
from memtail.stats import bits
from memtail.stats.subsets import subset_mask, training_seed
from memtail.status import TrialStatus
from memtail.store import dispatch, lifecycle, outcomes, reaper, trials
from memtail.store.artifacts import stage_artifact
from memtail.store.experiments import create_experiment
from memtail.store.outcomes import load_outcomes
from memtail.store.progress import feature_accuracy, progress
from memtail.store.retrieval import find_artifact
from memtail.store.tables import trial_outcomes
from memtail.store.tables import trials as trials_table
from tests.helpers import random_outcome, tiny_examples, tiny_spec

N_TRAIN, N_TEST, PROBES = 20, 10, 6


def _probe(engine: Engine, name: str = "tiny-probe") -> Experiment:
    spec = dataclasses.replace(tiny_spec(name, PROBES), kind=ExperimentKind.PROBE)
    return create_experiment(engine, spec, tiny_examples(N_TRAIN, N_TEST)).experiment


def _rows(engine: Engine, experiment_id: int) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(trials_table)
            .where(trials_table.c.experiment_id == experiment_id)
            .order_by(trials_table.c.trial_index)
        ).all()


def _feature_trial_done(engine: Engine, experiment: Experiment) -> None:
    rows = _rows(engine, experiment.id)
    claim = trials.claim(engine, rows[FEATURE_TRIAL].id, "w", 60)
    assert claim is not None
    staged = stage_artifact(engine, experiment.id, "features", [b"rows of features"])
    outcome = random_outcome(np.random.default_rng(0), N_TRAIN, N_TEST)
    outcomes.store_features(engine, claim, outcome, staged)


def test_a_probe_has_a_full_feature_trial_and_subsample_probe_trials(engine: Engine) -> None:
    exp = _probe(engine)
    assert exp.kind == ExperimentKind.PROBE and exp.target_trials == PROBES + 1
    rows = _rows(engine, exp.id)
    assert [r.trial_index for r in rows] == list(range(PROBES + 1))
    assert bits.unpack(rows[0].subset, N_TRAIN).all()
    for row in rows[1:]:
        mask = bits.unpack(row.subset, N_TRAIN)
        assert np.array_equal(mask, subset_mask(7, row.trial_index, N_TRAIN, exp.subset_size))
        assert row.seed == training_seed(7, row.trial_index)
    # Extending adds probe trials under the same contract.
    extended = lifecycle.extend(engine, exp, PROBES + 3)
    assert extended.target_trials == PROBES + 3 and extended.spec.trials == PROBES + 2
    last = _rows(engine, exp.id)[-1]
    assert last.trial_index == PROBES + 2
    assert np.array_equal(
        bits.unpack(last.subset, N_TRAIN), subset_mask(7, PROBES + 2, N_TRAIN, exp.subset_size)
    )


def test_probe_trials_wait_for_the_features(engine: Engine) -> None:
    exp = _probe(engine)
    rows = _rows(engine, exp.id)
    assert trials.claim(engine, rows[1].id, "w", 60) is None  # no features yet
    reserved = dispatch.reserve(engine, exp.id, window=10, redispatch_after=600)
    assert reserved == [rows[0].id]  # only the feature trial gets a message
    feature = trials.claim_next(engine, exp.id, "w", 60)
    assert feature is not None and feature.trial_index == FEATURE_TRIAL
    assert trials.claim_next(engine, exp.id, "w2", 60) is None  # still running
    staged = stage_artifact(engine, exp.id, "features", [b"x" * 100])
    assert find_artifact(engine, exp.id, "features") is None  # staged: invisible
    outcome = random_outcome(np.random.default_rng(1), N_TRAIN, N_TEST)
    outcomes.store_features(engine, feature, outcome, staged)

    artifact = find_artifact(engine, exp.id, "features")
    assert artifact is not None and artifact.size == 100
    # The feature trial stores no outcome row: it would count in every estimate.
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(sa.func.count()).where(trial_outcomes.c.experiment_id == exp.id)
        ).scalar_one()
    assert stored == 0
    assert feature_accuracy(engine, exp) == outcome.test_accuracy
    later = dispatch.reserve(engine, exp.id, window=10, redispatch_after=600)
    assert sorted(later) == sorted(r.id for r in rows[1:])
    claim = trials.claim(engine, rows[1].id, "w", 60)
    assert claim is not None and claim.trial_index == 1


def test_a_stale_feature_trial_stores_nothing(engine: Engine) -> None:
    exp = _probe(engine)
    first = trials.claim_next(engine, exp.id, "zombie", 0.01)
    assert first is not None
    staged = stage_artifact(engine, exp.id, "features", [b"old"])
    time.sleep(0.1)
    assert reaper.reap(engine, max_lost=3).requeued == 1  # its lease expired
    outcome = random_outcome(np.random.default_rng(2), N_TRAIN, N_TEST)
    with pytest.raises(trials.LeaseLost):
        outcomes.store_features(engine, first, outcome, staged)
    assert find_artifact(engine, exp.id, "features") is None
    assert _rows(engine, exp.id)[0].status == "pending"


def test_probe_outcomes_are_estimated_like_any_trials(engine: Engine) -> None:
    exp = _probe(engine)
    _feature_trial_done(engine, exp)
    rng = np.random.default_rng(3)
    while (claim := trials.claim_next(engine, exp.id, "w", 60)) is not None:
        outcomes.store(engine, claim, random_outcome(rng, N_TRAIN, N_TEST), N_TRAIN, N_TEST)
    loaded = load_outcomes(engine, exp)
    assert loaded.n_trials == PROBES
    assert loaded.masks.sum(axis=1).tolist() == [exp.subset_size] * PROBES
    report = progress(engine, exp)
    assert report.counts[TrialStatus.SUCCEEDED] == PROBES + 1
    # The models' accuracy describes the probes, not the feature network.
    assert report.test_accuracy is not None
    with engine.connect() as conn:
        probe_mean = conn.execute(
            sa.select(sa.func.avg(trials_table.c.test_accuracy)).where(
                trials_table.c.experiment_id == exp.id, trials_table.c.trial_index > 0
            )
        ).scalar_one()
    assert np.isclose(report.test_accuracy[0], probe_mean)


def test_a_failed_feature_trial_fails_its_probe_trials(engine: Engine) -> None:
    exp = _probe(engine)
    other = _probe(engine, "other-probe")
    for attempt in range(2):
        claim = trials.claim_next(engine, exp.id, "w", 60)
        assert claim is not None and claim.trial_index == FEATURE_TRIAL
        status = trials.fail(engine, claim, f"CUDA out of memory ({attempt})", max_attempts=2)
    assert status == "failed"
    result = reaper.reap(engine, max_lost=2)
    assert result.failed == PROBES
    rows = _rows(engine, exp.id)
    assert {r.status for r in rows} == {"failed"}
    assert "feature trial" in rows[1].error
    # Another probe's trials are untouched.
    assert {r.status for r in _rows(engine, other.id)} == {"pending"}
