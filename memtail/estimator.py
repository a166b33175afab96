"""Memorization estimates from subsampled training runs, and the pieces influence shares.

Feldman & Zhang (NeurIPS 2020, arXiv 2008.03703) train k models on random subsets of the
training set. With M[t, i] = 1 when train example i was in trial t's subset and C[t, i] = 1
when model t classifies train example i correctly:

    mem(i) = mean_t(C[t, i] | M[t, i] = 1) - mean_t(C[t, i] | M[t, i] = 0)

This is a function of counts only: n_in(i) = sum_t M[t, i], n_out(i) = k - n_in(i) and the
hits in each arm. Counts add over trials, so new trials fold in exactly
(``MemCounts.__add__``). The estimate is a difference of two independent binomial
proportions; intervals are Newcombe's hybrid score intervals (see ``memtail.intervals``).

Influence, infl(i, j), is the same difference for test example j; it lives in
``memtail.influence``, which reuses ``Estimate`` and the helpers here. ``InfluencePairs``,
``influence_pairs`` and ``influence_dense`` are still importable from this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from memtail.intervals import diff_std_err, newcombe_interval, z_for

if TYPE_CHECKING:
    from memtail.influence import InfluencePairs, influence_dense, influence_pairs

__all__ = [
    "Estimate",
    "InfluencePairs",
    "MemCounts",
    "influence_dense",
    "influence_pairs",
    "memorization",
]


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _indicator(x: ArrayLike, name: str) -> np.ndarray:
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


def _counts_array(x: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must be a 1-D integer array (one count per example); got dtype "
            f"{a.dtype}, shape {a.shape}"
        )
    # Copy so that making it read-only never touches the caller's array.
    return _readonly(np.array(a, dtype=np.int64))


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
        m = _indicator(masks, "masks")
        c = _indicator(correct, "correct")
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


def _stats(
    n_in: np.ndarray,
    hits_in: np.ndarray,
    n_out: np.ndarray,
    hits_out: np.ndarray,
    confidence: float,
) -> dict[str, np.ndarray]:
    """Accuracies, difference, standard error and Newcombe interval, warning-free."""
    nan = np.float64(np.nan)
    has_in, has_out = n_in > 0, n_out > 0
    # Dividing by a substituted 1 in empty arms, then masking, never warns.
    acc_in = np.where(has_in, hits_in / np.where(has_in, n_in, 1), nan)
    acc_out = np.where(has_out, hits_out / np.where(has_out, n_out, 1), nan)
    low, high = newcombe_interval(hits_in, n_in, hits_out, n_out, confidence)
    out = {
        "value": acc_in - acc_out,
        "std_err": diff_std_err(hits_in, n_in, hits_out, n_out),
        "ci_low": low,
        "ci_high": high,
        "acc_in": acc_in,
        "acc_out": acc_out,
        "defined": has_in & has_out,
    }
    return {key: _readonly(np.asarray(a)) for key, a in out.items()}


def memorization(counts: MemCounts, confidence: float = 0.95) -> Estimate:
    """mem(i) = acc_in(i) - acc_out(i) with its Newcombe interval, for every example."""
    if not isinstance(counts, MemCounts):
        raise TypeError("counts must be a MemCounts; build one with MemCounts.from_trials")
    z_for(confidence)  # validate before any work
    n_out, hits_out = _readonly(counts.n_out), _readonly(counts.hits_out)
    stats = _stats(counts.n_in, counts.hits_in, n_out, hits_out, confidence)
    return Estimate(
        n_in=counts.n_in,
        n_out=n_out,
        hits_in=counts.hits_in,
        hits_out=hits_out,
        n_trials=counts.n_trials,
        confidence=float(confidence),
        **stats,
    )


_MOVED_TO_INFLUENCE = frozenset({"InfluencePairs", "influence_dense", "influence_pairs"})


def __getattr__(name: str) -> object:
    # Re-export memtail.influence lazily: it imports this module, so a top-level import
    # here would fail whenever memtail.influence is imported first.
    if name in _MOVED_TO_INFLUENCE:
        from memtail import influence

        return getattr(influence, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
