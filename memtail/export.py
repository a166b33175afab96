"""Export in the layout of Feldman & Zhang's released files.

``tr_labels``, ``tt_labels``, ``tr_mem`` as in ``cifar100_infl_matrix.npz`` and the pairs
``tr_idx``, ``tt_idx``, ``infl``, ``mem`` as in
``cifar100_high_infl_pairs_infl0.15_mem0.25.npz``, in one file, plus the intervals and
counts the released files lack. Undefined estimates are NaN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.db.engine import transaction
from memtail.db.tables import memorization
from memtail.experiments import Experiment, labels


def export_npz(engine: Engine, experiment: Experiment, out: str | Path) -> dict[str, np.ndarray]:
    """Write the experiment's estimates to ``out`` (.npz) and return the arrays."""
    arrays = estimate_arrays(engine, experiment)
    np.savez_compressed(Path(out), **arrays)
    return arrays


def estimate_arrays(engine: Engine, experiment: Experiment) -> dict[str, np.ndarray]:
    """The experiment's current estimates as the arrays ``export_npz`` writes."""
    n = experiment.n_train
    mem = np.full(n, np.nan)
    low = np.full(n, np.nan)
    high = np.full(n, np.nan)
    n_in = np.zeros(n, dtype=np.int64)
    n_out = np.zeros(n, dtype=np.int64)
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
            sa.text(
                "SELECT train_index, test_index, infl, mem, infl_ci_low, infl_ci_high, p_value "
                "FROM high_influence_pairs WHERE experiment_id = :e "
                "ORDER BY train_index, test_index"
            ),
            {"e": experiment.id},
        ).all()
    for row in rows:
        i = row.example_index
        mem[i] = np.nan if row.mem is None else row.mem
        low[i] = np.nan if row.ci_low is None else row.ci_low
        high[i] = np.nan if row.ci_high is None else row.ci_high
        n_in[i], n_out[i] = row.n_in, row.n_out
    columns = list(zip(*pairs, strict=True)) if pairs else [()] * 7
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
        "infl_p_value": np.array(
            [np.nan if p is None else p for p in columns[6]], dtype=np.float64
        ),
    }
