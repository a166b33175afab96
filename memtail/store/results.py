"""Reading the current memorization estimates back, and the run that made them: the rows
people look at, as dataclasses and arrays.

Everything here reads what the estimator last committed (``memtail.store.estimate_runs``)
in one read-only transaction per call; the influence estimates are read back by
``memtail.store.pairs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.records import Experiment
from memtail.status import EstimateRunStatus
from memtail.store.engine import transaction
from memtail.store.experiments import labels
from memtail.store.tables import PAIRS_VIEW, estimate_runs, examples, memorization


@dataclass(frozen=True)
class MemorizedExample:
    example_index: int
    label: int
    source: str | None
    mem: float
    ci_low: float
    ci_high: float
    n_in: int
    n_out: int


@dataclass(frozen=True)
class EstimateRun:
    """The latest succeeded estimator run of an experiment."""

    trials_used: int
    finished_at: datetime
    influence_rows: int
    pairs_examined: int
    expected_false_pairs: float
    #: q-values up to this are exact (None: estimated before q-values existed).
    q_exact_below: float | None


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class MemorizationValues:
    """mem, its interval and acc_out per train example with a defined estimate."""

    mem: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    acc_out: np.ndarray


def _estimated_examples(experiment_id: int, *extra: sa.ColumnElement) -> sa.Select:
    """The columns of ``MemorizedExample`` (then ``extra``) for each train example of the
    experiment with a defined estimate."""
    return (
        sa.select(
            memorization.c.example_index,
            examples.c.label,
            examples.c.source,
            memorization.c.mem,
            memorization.c.ci_low,
            memorization.c.ci_high,
            memorization.c.n_in,
            memorization.c.n_out,
            *extra,
        )
        .join(
            examples,
            sa.and_(
                examples.c.experiment_id == memorization.c.experiment_id,
                examples.c.split == "train",
                examples.c.example_index == memorization.c.example_index,
            ),
        )
        .where(memorization.c.experiment_id == experiment_id, memorization.c.mem.is_not(None))
    )


def top_memorized(engine: Engine, experiment_id: int, limit: int = 20) -> list[MemorizedExample]:
    """The ``limit`` train examples with the highest mem, with their labels and sources."""
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            _estimated_examples(experiment_id)
            .order_by(memorization.c.mem.desc(), memorization.c.example_index)
            .limit(limit)
        ).all()
    return [MemorizedExample(*row) for row in rows]


def typical_examples(
    engine: Engine, experiment_id: int, classes: list[int], per_class: int = 1
) -> list[MemorizedExample]:
    """Per class of ``classes``, the ``per_class`` train examples with mem nearest 0 and
    the narrowest interval: what the class usually looks like, beside its memorized ones."""
    if not classes:
        return []
    width = memorization.c.ci_high - memorization.c.ci_low
    rank = (
        sa.func.row_number()
        .over(
            partition_by=examples.c.label,
            order_by=(sa.func.abs(memorization.c.mem), width, memorization.c.example_index),
        )
        .label("rank")
    )
    ranked = (
        _estimated_examples(experiment_id, rank)
        .where(examples.c.label.in_(sorted({int(c) for c in classes})))
        .subquery()
    )
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            sa.select(*(c for c in ranked.c if c.name != "rank"))
            .where(ranked.c.rank <= per_class)
            .order_by(ranked.c.label, ranked.c.rank)
        ).all()
    return [MemorizedExample(*row) for row in rows]


def latest_run(engine: Engine, experiment_id: int) -> EstimateRun | None:
    with transaction(engine, readonly=True) as conn:
        row = conn.execute(
            sa.select(
                estimate_runs.c.trials_used,
                estimate_runs.c.finished_at,
                estimate_runs.c.influence_rows,
                estimate_runs.c.pairs_examined,
                estimate_runs.c.expected_false_pairs,
                estimate_runs.c.q_exact_below,
            )
            .where(
                estimate_runs.c.experiment_id == experiment_id,
                estimate_runs.c.status == EstimateRunStatus.SUCCEEDED,
            )
            .order_by(estimate_runs.c.id.desc())
            .limit(1)
        ).one_or_none()
    return None if row is None else EstimateRun(*row)


def memorization_values(engine: Engine, experiment_id: int) -> MemorizationValues:
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            sa.select(
                memorization.c.mem,
                memorization.c.ci_low,
                memorization.c.ci_high,
                memorization.c.acc_out,
            ).where(memorization.c.experiment_id == experiment_id, memorization.c.mem.is_not(None))
        ).all()
    columns = np.array(rows, dtype=float).reshape(len(rows), 4).T
    return MemorizationValues(*columns)


def _floats(values: tuple) -> np.ndarray:
    """A nullable column as float64, NULL as NaN."""
    return np.array([np.nan if x is None else x for x in values], dtype=np.float64)


def estimate_arrays(engine: Engine, experiment: Experiment) -> dict[str, np.ndarray]:
    """The experiment's current estimates in the layout of Feldman & Zhang's released files
    (``memtail.views.export``); undefined estimates are NaN."""
    n = experiment.n_train
    mem = np.full(n, np.nan)
    low = np.full(n, np.nan)
    high = np.full(n, np.nan)
    n_in = np.zeros(n, dtype=np.int64)
    n_out = np.zeros(n, dtype=np.int64)
    v = PAIRS_VIEW.c
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            sa.select(
                memorization.c.example_index,
                memorization.c.mem,
                memorization.c.ci_low,
                memorization.c.ci_high,
                memorization.c.n_in,
                memorization.c.n_out,
            ).where(memorization.c.experiment_id == experiment.id)
        ).all()
        pairs = conn.execute(
            sa.select(
                v.train_index,
                v.test_index,
                v.infl,
                v.mem,
                v.infl_ci_low,
                v.infl_ci_high,
                v.p_value,
                v.q_value,
            )
            .where(v.experiment_id == experiment.id)
            .order_by(v.train_index, v.test_index)
        ).all()
    for row in rows:
        i = row.example_index
        mem[i] = np.nan if row.mem is None else row.mem
        low[i] = np.nan if row.ci_low is None else row.ci_low
        high[i] = np.nan if row.ci_high is None else row.ci_high
        n_in[i], n_out[i] = row.n_in, row.n_out
    columns = list(zip(*pairs, strict=True)) if pairs else [()] * 8
    return {
        "tr_labels": labels(engine, experiment.id, "train"),
        "tt_labels": labels(engine, experiment.id, "test"),
        "tr_mem": mem,
        "tr_mem_ci_low": low,
        "tr_mem_ci_high": high,
        "tr_n_in": n_in,
        "tr_n_out": n_out,
        "tr_idx": np.array(columns[0], dtype=np.int64),
        "tt_idx": np.array(columns[1], dtype=np.int64),
        "infl": np.array(columns[2], dtype=np.float64),
        "mem": np.array(columns[3], dtype=np.float64),
        "infl_ci_low": np.array(columns[4], dtype=np.float64),
        "infl_ci_high": np.array(columns[5], dtype=np.float64),
        "infl_p_value": _floats(columns[6]),
        "infl_q_value": _floats(columns[7]),
    }
