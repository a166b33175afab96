"""Reading the influence estimates back: the high-influence pairs (the paper's rule, in the
``high_influence_pairs`` view), the paper's pairs table, and the distribution of influence
over every pair stored, in one read-only transaction per call."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.store.engine import transaction
from memtail.store.results import latest_run
from memtail.store.tables import PAIRS_VIEW, influence


@dataclass(frozen=True)
class InfluencePair:
    """One row of the ``high_influence_pairs`` view: the paper's rule, per experiment."""

    train_index: int
    test_index: int
    train_label: int
    test_label: int
    mem: float
    infl: float
    infl_ci_low: float
    infl_ci_high: float
    #: BH q-value over every pair examined; None for estimates made before q-values.
    q_value: float | None


def high_influence_pairs(
    engine: Engine, experiment_id: int, limit: int = 50
) -> list[InfluencePair]:
    """The strongest pairs of the ``high_influence_pairs`` view, by influence."""
    v = PAIRS_VIEW.c
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            sa.select(
                v.train_index,
                v.test_index,
                v.train_label,
                v.test_label,
                v.mem,
                v.infl,
                v.infl_ci_low,
                v.infl_ci_high,
                v.q_value,
            )
            .where(v.experiment_id == experiment_id)
            .order_by(v.infl.desc(), v.train_index, v.test_index)
            .limit(limit)
        ).all()
    return [InfluencePair(*row) for row in rows]


def count_high_influence_pairs(engine: Engine, experiment_id: int) -> int:
    v = PAIRS_VIEW.c
    with transaction(engine, readonly=True) as conn:
        return conn.execute(
            sa.select(sa.func.count())
            .select_from(PAIRS_VIEW)
            .where(v.experiment_id == experiment_id)
        ).scalar_one()


@dataclass(frozen=True)
class PairSummary:
    """Feldman & Zhang's table of high-influence pairs (their research question 4), for
    the latest estimate: how many pairs pass the rule, over how many distinct examples,
    how many test examples owe it to a single train example, and what chance explains."""

    trials: int  # behind the latest estimate
    pairs: int  # rows of the high_influence_pairs view
    test_examples: int  # distinct test examples with at least one such pair
    train_examples: int  # distinct train examples with at least one
    single_influencer: int  # test examples with exactly one such pair
    influence_rows: int  # pairs with infl >= the threshold, any class and mem
    expected_false_pairs: float  # of those, how many chance alone would give
    pairs_examined: int  # every (train, test) pair the estimator tested
    fdr_level: float  # the false-discovery rate asked about below
    #: Of ``pairs``, those with a q-value at most ``fdr_level``: a set whose expected share
    #: of chance pairs is at most the level. None for estimates made before q-values.
    fdr_pairs: int | None


def pair_summary(engine: Engine, experiment_id: int, fdr_level: float = 0.1) -> PairSummary | None:
    """None before the first estimate."""
    run = latest_run(engine, experiment_id)
    if run is None:
        return None
    v = PAIRS_VIEW.c
    mine = PAIRS_VIEW.select().where(v.experiment_id == experiment_id).subquery()
    per_test = (
        sa.select(mine.c.test_index, sa.func.count().label("n"))
        .group_by(mine.c.test_index)
        .subquery()
    )
    with transaction(engine, readonly=True) as conn:
        pairs, tests, trains, with_q, below = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.count(sa.distinct(mine.c.test_index)),
                sa.func.count(sa.distinct(mine.c.train_index)),
                sa.func.count(mine.c.q_value),
                sa.func.coalesce(
                    sa.func.sum(sa.case((mine.c.q_value <= fdr_level, 1), else_=0)), 0
                ),
            )
        ).one()
        single = conn.execute(
            sa.select(sa.func.count()).select_from(per_test).where(per_test.c.n == 1)
        ).scalar_one()
    return PairSummary(
        trials=run.trials_used,
        pairs=int(pairs),
        test_examples=int(tests),
        train_examples=int(trains),
        single_influencer=int(single),
        influence_rows=int(run.influence_rows or 0),
        expected_false_pairs=float(run.expected_false_pairs or 0.0),
        pairs_examined=int(run.pairs_examined or 0),
        fdr_level=float(fdr_level),
        fdr_pairs=int(below) if with_q == pairs else None,
    )


def influence_values(engine: Engine, experiment_id: int) -> np.ndarray:
    """infl of every stored pair: the estimator keeps pairs with infl >= the threshold."""
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            sa.select(influence.c.infl).where(influence.c.experiment_id == experiment_id)
        ).all()
    return np.array([row.infl for row in rows], dtype=float)
