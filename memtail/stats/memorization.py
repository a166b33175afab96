"""Memorization estimates from subsampled training runs.

Feldman & Zhang (NeurIPS 2020, arXiv 2008.03703) train k models on random subsets of the
training set. With M[t, i] = 1 when train example i was in trial t's subset and C[t, i] = 1
when model t classifies train example i correctly:

    mem(i) = mean_t(C[t, i] | M[t, i] = 1) - mean_t(C[t, i] | M[t, i] = 0)

This is a function of counts only: n_in(i) = sum_t M[t, i], n_out(i) = k - n_in(i) and the
hits in each arm. Counts add over trials, so new trials fold in exactly
(``MemCounts.__add__``). The estimate is a difference of two independent binomial
proportions; intervals are Newcombe's hybrid score intervals
(see ``memtail.stats.intervals``).

Influence, infl(i, j), is the same difference for test example j
(``memtail.stats.influence``); both are an ``Estimate`` (``memtail.stats.difference``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from memtail.stats.difference import Estimate, difference, indicator, readonly
from memtail.stats.intervals import z_for

__all__ = ["Estimate", "MemCounts", "memorization"]


def _counts_array(x: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must be a 1-D integer array (one count per example); got dtype "
            f"{a.dtype}, shape {a.shape}"
        )
    # Copy so that making it read-only never touches the caller's array.
    return readonly(np.array(a, dtype=np.int64))


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class MemCounts:
    """Sufficient statistics for memorization; merge trial batches with ``+``."""

    n_trials: int
    n_in: np.ndarray  # trials whose subset contained i
    hits_in: np.ndarray  # ... of which classified i correctly
    hits_total: np.ndarray  # trials that classified i correctly, in or out

    def __post_init__(self) -> None:
        k = int(self.n_trials)
        if k != self.n_trials or k < 0:
            raise ValueError(f"n_trials must be a non-negative integer; got {self.n_trials!r}")
        object.__setattr__(self, "n_trials", k)
        arrays = {f: _counts_array(getattr(self, f), f) for f in ("n_in", "hits_in", "hits_total")}
        if len({a.shape for a in arrays.values()}) != 1:
            raise ValueError("n_in, hits_in and hits_total must have the same length")
        for f, a in arrays.items():
            object.__setattr__(self, f, a)
        n_in, h_in, h_tot = arrays.values()
        if not (
            np.all((0 <= n_in) & (n_in <= k))
            and np.all((0 <= h_in) & (h_in <= n_in))
            and np.all((h_in <= h_tot) & (h_tot - h_in <= k - n_in))
        ):
            raise ValueError(
                "inconsistent counts: need 0 <= hits_in <= n_in <= n_trials and "
                "0 <= hits_total - hits_in <= n_trials - n_in"
            )

    @property
    def n_out(self) -> np.ndarray:
        return self.n_trials - self.n_in

    @property
    def hits_out(self) -> np.ndarray:
        return self.hits_total - self.hits_in

    @classmethod
    def zeros(cls, n: int) -> MemCounts:
        """Counts for n examples and no trials: the identity of ``+``."""
        z = np.zeros(int(n), dtype=np.int64)
        return cls(0, z, z, z)

    @classmethod
    def from_trials(cls, masks: ArrayLike, correct: ArrayLike) -> MemCounts:
        """Counts from (k, n) membership ``masks`` and train ``correct``ness."""
        m = indicator(masks, "masks")
        c = indicator(correct, "correct")
        if m.shape != c.shape:
            raise ValueError(
                f"masks {m.shape} and correct {c.shape} must have the same (k, n) shape"
            )
        return cls(
            m.shape[0],
            m.sum(axis=0, dtype=np.int64),
            (m & c).sum(axis=0, dtype=np.int64),
            c.sum(axis=0, dtype=np.int64),
        )

    def __add__(self, other: MemCounts) -> MemCounts:
        if not isinstance(other, MemCounts):
            return NotImplemented
        if other.n_in.shape != self.n_in.shape:
            raise ValueError(
                f"cannot merge counts over {self.n_in.size} and {other.n_in.size} "
                "examples; both must cover the same training set"
            )
        return MemCounts(
            self.n_trials + other.n_trials,
            self.n_in + other.n_in,
            self.hits_in + other.hits_in,
            self.hits_total + other.hits_total,
        )


def memorization(
    counts: MemCounts, confidence: float = 0.95, interval: str = "newcombe"
) -> Estimate:
    """mem(i) = acc_in(i) - acc_out(i) with its interval, for every example: Newcombe's, or
    ``interval`` (``memtail.stats.intervals.difference_interval``)."""
    if not isinstance(counts, MemCounts):
        raise TypeError("counts must be a MemCounts; build one with MemCounts.from_trials")
    z_for(confidence)  # validate before any work
    n_out, hits_out = readonly(counts.n_out), readonly(counts.hits_out)
    stats = difference(counts.n_in, counts.hits_in, n_out, hits_out, confidence, interval)
    return Estimate(
        n_in=counts.n_in,
        n_out=n_out,
        hits_in=counts.hits_in,
        hits_out=hits_out,
        n_trials=counts.n_trials,
        confidence=float(confidence),
        interval=interval,
        **stats,
    )
