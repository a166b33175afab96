"""What held-out models predicted: the classes of misclassified train examples are stored
with a trial's outcome (fenced like the rest) and read back per example as the class
models trained without it predict most often."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.stats import bits
from memtail.stats.outcomes import TrialOutcome
from memtail.store import outcomes, trials
from memtail.store.experiments import get_experiment, labels
from memtail.store.outcomes import held_out_predictions
from memtail.store.tables import trial_outcomes
from memtail.store.tables import trials as trials_table
from tests.helpers import make_experiment, run_all_trials


def _store_all(
    engine: Engine, experiment_id: int, predict: Callable[[np.ndarray], np.ndarray]
) -> None:
    """Store every trial with predictions ``predict(subset) -> classes`` (n_train,)."""
    exp = get_experiment(engine, experiment_id)
    y = labels(engine, experiment_id, "train")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(trials_table.c.id, trials_table.c.subset)
            .where(trials_table.c.experiment_id == experiment_id)
            .order_by(trials_table.c.id)
        ).all()
    for row in rows:
        subset = bits.unpack(row.subset, exp.n_train)
        predicted = predict(subset)
        correct = predicted == y
        claim = trials.claim(engine, row.id, "w", 60)
        assert claim is not None
        outcome = TrialOutcome(
            train_correct=correct,
            test_correct=np.ones(exp.n_test, dtype=bool),
            train_accuracy=1.0,
            test_accuracy=1.0,
            train_wrong_class=predicted[~correct],
        )
        outcomes.store(engine, claim, outcome, exp.n_train, exp.n_test)


def test_held_out_models_predictions_are_counted(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=30).experiment
    y = labels(engine, exp.id, "train")
    # Example 0: held-out models say (y0 + 1) % 3 in every trial; example 1: right when
    # held out; example 2: the wrong class depends on the trial's parity of subset size.
    wrong = (y[0] + 1) % 3

    def predict(subset: np.ndarray) -> np.ndarray:
        p = y.copy()
        if not subset[0]:
            p[0] = wrong
        if not subset[2]:
            p[2] = (y[2] + 1 + int(subset[:5].sum()) % 2) % 3
        return p

    _store_all(engine, exp.id, predict)
    said = held_out_predictions(engine, exp, np.array([0, 1, 2]))
    with engine.connect() as conn:
        subsets = [
            bits.unpack(s, exp.n_train)
            for s in conn.execute(
                sa.select(trials_table.c.subset).where(trials_table.c.experiment_id == exp.id)
            ).scalars()
        ]
    out = np.array([~s for s in subsets])
    assert said.trials.tolist() == out[:, :3].sum(axis=0).tolist()
    assert said.predicted[0] == wrong and said.share[0] == 1.0
    assert said.predicted[1] == y[1] and said.share[1] == 1.0
    twos = [(y[2] + 1 + int(s[:5].sum()) % 2) % 3 for s in subsets if not s[2]]
    values, counts = np.unique(twos, return_counts=True)
    best = values[counts == counts.max()].min()
    assert said.predicted[2] == best and said.share[2] == pytest.approx(counts.max() / len(twos))


def test_a_wrong_count_of_classes_is_refused_before_writing(engine: Engine) -> None:
    exp = make_experiment(engine).experiment
    claim = trials.claim(engine, _first(engine, exp.id), "w", 60)
    assert claim is not None
    correct = np.zeros(20, dtype=bool)
    outcome = TrialOutcome(
        train_correct=correct,
        test_correct=np.ones(10, dtype=bool),
        train_accuracy=0.0,
        test_accuracy=1.0,
        train_wrong_class=np.zeros(3, dtype=np.int64),
    )
    with pytest.raises(bits.PayloadError, match="3 classes for 20 misclassified"):
        outcomes.store(engine, claim, outcome, 20, 10)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(trial_outcomes)).scalar() == 0


def test_trials_without_predictions_are_left_out(engine: Engine) -> None:
    exp = make_experiment(engine, trials_=4).experiment
    run_all_trials(engine, exp.id, 20, 10)  # outcomes without predictions (older workers)
    said = held_out_predictions(engine, exp, np.array([0, 5]))
    assert said.trials.tolist() == [0, 0] and said.predicted.tolist() == [-1, -1]


def _first(engine: Engine, experiment_id: int) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.min(trials_table.c.id)).where(
                trials_table.c.experiment_id == experiment_id
            )
        ).scalar_one()
