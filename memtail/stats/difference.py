"""The estimate memorization and influence both are: a difference of two proportions.

Feldman & Zhang's mem(i) and infl(i, j) are each acc_in - acc_out, the accuracy of the
models whose subset held train example i minus that of the models whose subset did not.
Given the subset draws, the two arms are independent binomial samples, so an estimate
is a difference of two proportions with Newcombe's hybrid score interval
(``memtail.stats.intervals``). ``Estimate`` holds it per example (or per pair), and
``difference`` computes it from the four counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from memtail.stats.intervals import diff_std_err, difference_interval


def readonly(a: np.ndarray) -> np.ndarray:
    """``a`` itself, made read-only: estimates are shared, never edited."""
    a.setflags(write=False)
    return a


def indicator(x: ArrayLike, name: str) -> np.ndarray:
    """Check a (k trials, n examples) 0/1 matrix and return it as bool."""
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (k trials, n examples); got shape "
            f"{a.shape}. For a single trial pass {name}[None, :]."
        )
    if a.dtype == np.bool_:
        return a
    if a.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold booleans or 0/1 numbers; got dtype {a.dtype}")
    if not np.all((a == 0) | (a == 1)):
        raise ValueError(
            f"{name} must contain only 0 and 1; convert with ({name} != 0) if any "
            "nonzero value means True"
        )
    return a != 0


@dataclass(frozen=True, eq=False)
class Estimate:
    """Per-example (or per-pair) difference-of-proportions estimate; NaN where undefined."""

    value: np.ndarray  # acc_in - acc_out
    std_err: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    acc_in: np.ndarray
    acc_out: np.ndarray
    n_in: np.ndarray
    n_out: np.ndarray
    hits_in: np.ndarray
    hits_out: np.ndarray
    defined: np.ndarray  # n_in > 0 and n_out > 0
    n_trials: int
    confidence: float
    interval: str = "newcombe"  # the method of ci_low, ci_high (intervals.DIFFERENCE_INTERVALS)


def difference(
    n_in: np.ndarray,
    hits_in: np.ndarray,
    n_out: np.ndarray,
    hits_out: np.ndarray,
    confidence: float,
    interval: str = "newcombe",
) -> dict[str, np.ndarray]:
    """Accuracies, their difference, its standard error and ``interval``'s interval
    (Newcombe's by default; ``memtail.stats.intervals.difference_interval``).

    The fields of an ``Estimate`` except the counts, as read-only arrays; never warns
    (empty arms give NaN).
    """
    nan = np.float64(np.nan)
    has_in, has_out = n_in > 0, n_out > 0
    # Dividing by a substituted 1 in empty arms, then masking, never warns.
    acc_in = np.where(has_in, hits_in / np.where(has_in, n_in, 1), nan)
    acc_out = np.where(has_out, hits_out / np.where(has_out, n_out, 1), nan)
    low, high = difference_interval(hits_in, n_in, hits_out, n_out, confidence, interval)
    out = {
        "value": acc_in - acc_out,
        "std_err": diff_std_err(hits_in, n_in, hits_out, n_out),
        "ci_low": low,
        "ci_high": high,
        "acc_in": acc_in,
        "acc_out": acc_out,
        "defined": has_in & has_out,
    }
    return {key: readonly(np.asarray(a)) for key, a in out.items()}
