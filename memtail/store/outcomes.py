"""Reading trial outcomes back: every succeeded trial of an experiment, packed for the estimator."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.stats.bits import TrialBits
from memtail.stats.outcomes import TrialOutcomes
from memtail.store.engine import transaction
from memtail.store.experiments import Experiment
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
