"""Reading trial outcomes back: every succeeded trial of an experiment, packed for the
estimator; and what held-out models predicted for chosen train examples, for the report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.records import Experiment
from memtail.stats import bits
from memtail.stats.bits import TrialBits
from memtail.stats.outcomes import TrialOutcomes
from memtail.store.engine import transaction
from memtail.store.experiments import labels
from memtail.store.tables import trial_outcomes, trials


def load_outcomes(engine: Engine, experiment: Experiment) -> TrialOutcomes:
    """Read every succeeded trial's subset and correctness bits (one read), transposed
    to per-example trial words for the estimator (no (k, n) bool matrix is built)."""
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            sa.select(
                trial_outcomes.c.trial_id,
                trials.c.subset,
                trial_outcomes.c.train_correct,
                trial_outcomes.c.test_correct,
            )
            .join(trials, trials.c.id == trial_outcomes.c.trial_id)
            .where(trial_outcomes.c.experiment_id == experiment.id)
            .order_by(trial_outcomes.c.trial_id)
        ).all()
    n_train, n_test = experiment.n_train, experiment.n_test
    return TrialOutcomes(
        trial_ids=np.array([row.trial_id for row in rows], dtype=np.int64),
        mask_bits=TrialBits.from_rows([row.subset for row in rows], n_train, what="subset"),
        train_correct_bits=TrialBits.from_rows(
            [row.train_correct for row in rows], n_train, what="train_correct"
        ),
        test_correct_bits=TrialBits.from_rows(
            [row.test_correct for row in rows], n_test, what="test_correct"
        ),
    )


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class HeldOutPredictions:
    """Per chosen train example: the class that models trained without it predicted most
    often, and how often. Trials stored before predictions were (migration 0010) are
    left out, so ``trials`` can be below the example's ``n_out``."""

    indices: np.ndarray
    predicted: np.ndarray  # the most frequent class; -1 where no held-out trial says
    share: np.ndarray  # of ``trials``, the share that predicted it
    trials: np.ndarray  # held-out trials with stored predictions

    def by_index(self) -> dict[int, tuple[int, float, int]]:
        """Example index -> (class, share, trials), for the examples some trial spoke of."""
        return {
            int(i): (int(c), float(share), int(n))
            for i, c, share, n in zip(
                self.indices, self.predicted, self.share, self.trials, strict=True
            )
            if c >= 0
        }


def held_out_predictions(
    engine: Engine, experiment: Experiment, indices: np.ndarray
) -> HeldOutPredictions:
    """What the held-out models took each train example of ``indices`` for."""
    indices = np.asarray(indices, dtype=np.int64)
    y = labels(engine, experiment.id, "train")
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            sa.select(
                trials.c.subset, trial_outcomes.c.train_correct, trial_outcomes.c.train_wrong_class
            )
            .join(trials, trials.c.id == trial_outcomes.c.trial_id)
            .where(
                trial_outcomes.c.experiment_id == experiment.id,
                trial_outcomes.c.train_wrong_class.is_not(None),
            )
        ).all()
    votes = [Counter() for _ in indices]
    n = experiment.n_train
    for row in rows:
        held_out = ~bits.unpack(row.subset, n, what="subset")[indices]
        correct = bits.unpack(row.train_correct, n, what="train_correct")
        wrong = np.flatnonzero(~correct)
        raw = bytes(row.train_wrong_class)
        width = len(raw) // wrong.size if wrong.size else 2
        classes = np.frombuffer(raw, dtype="<u4" if width == 4 else "<u2")
        at = np.searchsorted(wrong, indices)
        for slot, (i, out) in enumerate(zip(indices, held_out, strict=True)):
            if out:
                missed = at[slot] < wrong.size and wrong[at[slot]] == i
                votes[slot][int(classes[at[slot]]) if missed else int(y[i])] += 1
    predicted = np.full(indices.size, -1, dtype=np.int64)
    share = np.full(indices.size, np.nan)
    counted = np.zeros(indices.size, dtype=np.int64)
    for slot, tally in enumerate(votes):
        if tally:
            # Ties go to the smaller class, so the same rows always give the same answer.
            label, count = min(tally.items(), key=lambda kv: (-kv[1], kv[0]))
            counted[slot] = sum(tally.values())
            predicted[slot], share[slot] = label, count / counted[slot]
    return HeldOutPredictions(indices, predicted, share, counted)
