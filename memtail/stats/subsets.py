"""Trial subsets: a pure function of (experiment seed, trial index).

Trial t trains on a subset S_t drawn uniformly among the m-subsets of the n training
examples (Feldman & Zhang, Sec. 2). Deriving the draw from (seed, t) alone means a
retried trial trains on the same subset, and anyone can re-derive what the database
stores in ``trials.subset``.
"""

from __future__ import annotations

import numpy as np

# Distinct spawn keys keep the subset draw and the training seed independent streams.
_SUBSET_STREAM = 0
_TRAINING_STREAM = 1


def subset_mask(seed: int, trial_index: int, n: int, m: int) -> np.ndarray:
    """Boolean membership mask of trial ``trial_index``: exactly ``m`` of ``n`` set."""
    if not 0 < m <= n:
        raise ValueError(f"subset size m={m} must satisfy 0 < m <= n={n}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, trial_index, _SUBSET_STREAM]))
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, size=m, replace=False)] = True
    return mask


def training_seed(seed: int, trial_index: int) -> int:
    """The seed of trial ``trial_index``'s training run (a non-negative 63-bit int)."""
    state = np.random.SeedSequence([seed, trial_index, _TRAINING_STREAM]).generate_state(
        2, dtype=np.uint32
    )
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)
