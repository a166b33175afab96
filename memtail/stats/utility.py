"""The marginal utility of memorized examples, as pure numpy (Feldman & Zhang, Sec. 4).

Retrain on the full training set, on it minus the memorized examples (mem >= 0.25), and
on it minus a random set of the same size; memorization matters if removing the memorized
set costs more test accuracy than removing the random one, above all on the test examples
those memorized examples influence. The paper (CIFAR-100, ResNet-50): removing the
memorized set dropped test accuracy from 76.06% to 73.52%, and on the influenced test
examples from 72.14% to 45.38%; a random set of equal size cost far less.

``arm_subsets`` makes the three arms' training subsets; ``mean_interval`` summarizes one
arm's per-trial accuracies. ``memtail.analyses.removal`` stores and reports them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The arms, in the order they are created and reported.
ARMS = ("full", "minus-memorized", "minus-random")


def arm_subsets(mem: np.ndarray, threshold: float, seed: int) -> dict[str, np.ndarray]:
    """Training subsets (bool over train examples) of the three arms.

    Memorized: mem >= threshold (undefined estimates are not). The random set has the same
    size, drawn from every train example with ``seed``, so it may share a few examples
    with the memorized set, as a random set in the paper would.
    """
    mem = np.asarray(mem, dtype=np.float64)
    memorized = np.zeros(mem.size, dtype=bool)
    memorized[~np.isnan(mem)] = mem[~np.isnan(mem)] >= threshold
    count = int(memorized.sum())
    if count == 0:
        raise ValueError(
            f"no train example has mem >= {threshold}; lower the threshold or run more trials"
        )
    if count == mem.size:
        raise ValueError(f"every train example has mem >= {threshold}; raise the threshold")
    random = np.zeros(mem.size, dtype=bool)
    random[np.random.default_rng(seed).choice(mem.size, count, replace=False)] = True
    return {"full": np.ones(mem.size, dtype=bool), "minus-memorized": ~memorized,
            "minus-random": ~random}  # fmt: skip


@dataclass(frozen=True)
class MeanInterval:
    mean: float
    low: float  # two-sided t-interval over trials (NaN with fewer than 2)
    high: float
    trials: int


def mean_interval(values: np.ndarray, confidence: float = 0.95) -> MeanInterval:
    """Mean of per-trial values with a Student t confidence interval."""
    from scipy.stats import t as student_t  # lazily, as elsewhere

    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        return MeanInterval(float("nan"), float("nan"), float("nan"), 0)
    mean = float(values.mean())
    if n < 2:
        return MeanInterval(mean, float("nan"), float("nan"), 1)
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return MeanInterval(mean, mean - half, mean + half, n)
