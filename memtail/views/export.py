"""Export in the layout of Feldman & Zhang's released files.

``tr_labels``, ``tt_labels``, ``tr_mem`` as in ``cifar100_infl_matrix.npz`` and the pairs
``tr_idx``, ``tt_idx``, ``infl``, ``mem`` as in
``cifar100_high_infl_pairs_infl0.15_mem0.25.npz``, in one file, plus the intervals and
counts the released files lack (``memtail.store.results.estimate_arrays``). Undefined
estimates are NaN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from memtail.store.engine import Engine
from memtail.store.experiments import Experiment
from memtail.store.results import estimate_arrays


def export_npz(engine: Engine, experiment: Experiment, out: str | Path) -> dict[str, np.ndarray]:
    """Write the experiment's estimates to ``out`` (.npz) and return the arrays."""
    arrays = estimate_arrays(engine, experiment)
    np.savez_compressed(Path(out), **arrays)
    return arrays
