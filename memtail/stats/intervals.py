"""Vectorized confidence intervals for proportions and differences of proportions.

Feldman & Zhang (NeurIPS 2020, arXiv 2008.03703) estimate memorization and influence as a
difference of two proportions, ``p_in - p_out``: the accuracy of the models whose training
subset contained example i minus the accuracy of those whose subset did not. Given the
subset draws the two arms are independent binomial samples, so the usual two-sample
machinery applies, evaluated over millions of examples or pairs at once.

``p_in`` is usually close to 1, where the Wald interval ``d +/- z * se`` undercovers and can
leave [-1, 1]. We therefore use score intervals:

* Wilson (1927) score interval for one proportion p = x / n, with z = z_{1 - alpha/2}::

      centre = (x + z^2 / 2) / (n + z^2)
      half   = z / (n + z^2) * sqrt(x (n - x) / n + z^2 / 4)

* Newcombe (1998, Statistics in Medicine 17:873-890, method 10), the hybrid score interval
  for d = p1 - p2 built from the two Wilson intervals (l1, u1) and (l2, u2)::

      L = d - sqrt((p1 - l1)^2 + (u2 - p2)^2)
      U = d + sqrt((u1 - p1)^2 + (p2 - l2)^2)

* The plain (unpooled) standard error of the difference,
  ``sqrt(p1 (1 - p1) / n1 + p2 (1 - p2) / n2)``, reported next to the interval.

Every function broadcasts its arguments like numpy arithmetic and returns float64 arrays
(0-d for scalar input). Where a proportion is undefined (n == 0) the result is NaN, and no
RuntimeWarning is raised: callers run over arrays where empty arms are expected.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "clopper_pearson_interval",
    "diff_std_err",
    "exact_mover_interval",
    "newcombe_interval",
    "wilson_interval",
    "z_for",
]


def z_for(confidence: float) -> float:
    """Two-sided normal quantile: ``P(|Z| <= z_for(c)) = c`` (1.959964 for c = 0.95)."""
    c = float(confidence)
    # `not (0 < c < 1)` also rejects NaN, which a plain range check would let through.
    if not (0.0 < c < 1.0):
        raise ValueError(
            f"confidence must be strictly between 0 and 1 (e.g. 0.95 for a 95% interval); "
            f"got {confidence!r}"
        )
    return NormalDist().inv_cdf(0.5 + c / 2.0)


def _counts(hits: ArrayLike, n: ArrayLike, hits_name: str, n_name: str) -> tuple:
    """Broadcast and check a (hits, n) pair; returns float64 arrays and the n > 0 mask."""
    x = np.asarray(hits, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    try:
        x, m = np.broadcast_arrays(x, m)
    except ValueError as exc:
        raise ValueError(
            f"{hits_name} with shape {x.shape} and {n_name} with shape {m.shape} do not "
            "broadcast; pass arrays of the same shape"
        ) from exc
    # Comparisons with NaN are False, so NaN counts fail these checks as well.
    if not np.all(m >= 0):
        raise ValueError(f"{n_name} must be non-negative trial counts")
    if not np.all((x >= 0) & (x <= m)):
        raise ValueError(f"{hits_name} must satisfy 0 <= {hits_name} <= {n_name} elementwise")
    return x, m, m > 0


def _wilson(x: np.ndarray, m: np.ndarray, ok: np.ndarray, z: float) -> tuple:
    """Wilson bounds and point estimate on checked arrays; NaN where ``ok`` is False."""
    # Substituting n = 1 in the empty cells keeps the arithmetic warning-free; those
    # cells are overwritten with NaN below.
    m_safe = np.where(ok, m, 1.0)
    z2 = z * z
    p = x / m_safe
    centre = (x + z2 / 2.0) / (m_safe + z2)
    half = z / (m_safe + z2) * np.sqrt(x * (m_safe - x) / m_safe + z2 / 4.0)
    # Rounding can push a bound a few ulps past 0, 1 or the point estimate (at x = 0 or
    # x = n); clamp so that p - low and high - p are never negative downstream.
    low = np.minimum(np.clip(centre - half, 0.0, 1.0), p)
    high = np.maximum(np.clip(centre + half, 0.0, 1.0), p)
    nan = np.float64(np.nan)
    return np.where(ok, p, nan), np.where(ok, low, nan), np.where(ok, high, nan)


def wilson_interval(
    hits: ArrayLike, n: ArrayLike, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for ``hits / n``; ``(low, high)``, NaN where ``n == 0``."""
    z = z_for(confidence)
    x, m, ok = _counts(hits, n, "hits", "n")
    _, low, high = _wilson(x, m, ok, z)
    return low, high


def newcombe_interval(
    hits_in: ArrayLike,
    n_in: ArrayLike,
    hits_out: ArrayLike,
    n_out: ArrayLike,
    confidence: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval for ``hits_in/n_in - hits_out/n_out``.

    Returns ``(low, high)`` within [-1, 1]; NaN where ``n_in == 0`` or ``n_out == 0``.
    """
    z = z_for(confidence)
    x1, m1, ok1 = _counts(hits_in, n_in, "hits_in", "n_in")
    x2, m2, ok2 = _counts(hits_out, n_out, "hits_out", "n_out")
    p1, l1, u1 = _wilson(x1, m1, ok1, z)
    p2, l2, u2 = _wilson(x2, m2, ok2, z)
    return _square_and_add(p1, l1, u1, p2, l2, u2)


def clopper_pearson_interval(
    hits: ArrayLike, n: ArrayLike, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson (exact binomial tails) interval for ``hits / n``; NaN where
    ``n == 0``. Each side misses at most (1 - confidence) / 2 for every true p, however
    close to 0 or 1, which Wilson's does not promise at high confidence."""
    from scipy.special import betaincinv

    z_for(confidence)
    x, m, ok = _counts(hits, n, "hits", "n")
    tail = (1.0 - float(confidence)) / 2.0
    m_safe = np.where(ok, m, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(x > 0, betaincinv(np.maximum(x, 1e-300), m_safe - x + 1.0, tail), 0.0)
        high = np.where(
            x < m_safe, betaincinv(x + 1.0, np.maximum(m_safe - x, 1e-300), 1.0 - tail), 1.0
        )
    p = x / m_safe
    nan = np.float64(np.nan)
    return np.where(ok, np.minimum(low, p), nan), np.where(ok, np.maximum(high, p), nan)


def exact_mover_interval(
    hits_in: ArrayLike,
    n_in: ArrayLike,
    hits_out: ArrayLike,
    n_out: ArrayLike,
    confidence: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's square-and-add (MOVER) for ``hits_in/n_in - hits_out/n_out`` built from
    Clopper-Pearson limits instead of Wilson's: wider by a few percent, and at the high
    confidences of early sequential looks with accuracies near 0 or 1 it misses several
    times less often than Newcombe's (still more than nominal: ``memtail.stats.coverage``
    computes by how much; ``benchmarks/sequential.py`` compares designs)."""
    x1, m1, ok1 = _counts(hits_in, n_in, "hits_in", "n_in")
    x2, m2, ok2 = _counts(hits_out, n_out, "hits_out", "n_out")
    l1, u1 = clopper_pearson_interval(x1, m1, confidence)
    l2, u2 = clopper_pearson_interval(x2, m2, confidence)
    nan = np.float64(np.nan)
    p1 = np.where(ok1, x1 / np.where(ok1, m1, 1.0), nan)
    p2 = np.where(ok2, x2 / np.where(ok2, m2, 1.0), nan)
    return _square_and_add(p1, l1, u1, p2, l2, u2)


#: Intervals for a difference of proportions: Newcombe's (Wilson limits) and the same
#: square-and-add from Clopper-Pearson limits, which holds its coverage better at the high
#: confidences of early sequential looks (``memtail.stats.coverage`` measures both).
DIFFERENCE_INTERVALS = ("newcombe", "exact_mover")


def difference_interval(
    hits_in: ArrayLike,
    n_in: ArrayLike,
    hits_out: ArrayLike,
    n_out: ArrayLike,
    confidence: float = 0.95,
    method: str = "newcombe",
) -> tuple[np.ndarray, np.ndarray]:
    """The interval ``method`` (one of DIFFERENCE_INTERVALS) for hits_in/n_in - hits_out/n_out."""
    if method == "newcombe":
        return newcombe_interval(hits_in, n_in, hits_out, n_out, confidence)
    if method == "exact_mover":
        return exact_mover_interval(hits_in, n_in, hits_out, n_out, confidence)
    raise ValueError(f"interval must be one of {', '.join(DIFFERENCE_INTERVALS)}; got {method!r}")


def _square_and_add(p1, l1, u1, p2, l2, u2) -> tuple[np.ndarray, np.ndarray]:
    """The interval for p1 - p2 from each proportion's (low, high): Newcombe's method 10."""
    d = p1 - p2
    # NaN propagates through these without warnings, so empty arms need no masking here.
    low = d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return np.clip(low, -1.0, 1.0), np.clip(high, -1.0, 1.0)


def diff_std_err(
    hits_in: ArrayLike, n_in: ArrayLike, hits_out: ArrayLike, n_out: ArrayLike
) -> np.ndarray:
    """Unpooled standard error of ``p_in - p_out``; NaN where either arm is empty."""
    x1, m1, ok1 = _counts(hits_in, n_in, "hits_in", "n_in")
    x2, m2, ok2 = _counts(hits_out, n_out, "hits_out", "n_out")
    m1s = np.where(ok1, m1, 1.0)
    m2s = np.where(ok2, m2, 1.0)
    p1 = x1 / m1s
    p2 = x2 / m2s
    se = np.sqrt(p1 * (1.0 - p1) / m1s + p2 * (1.0 - p2) / m2s)
    return np.where(ok1 & ok2, se, np.float64(np.nan))


def worst_case_half_width(k: int, in_fraction: float, confidence: float = 0.95) -> float:
    """Half-width of a normal interval for acc_in - acc_out from ``k`` trials when both
    accuracies are 1/2 (the widest case), a share ``in_fraction`` of trials holding the
    example (m / n): ``z * sqrt(1/4 / (p k) + 1/4 / ((1 - p) k))``. With k = 1,000 and
    p = 0.7 it is 0.068, Feldman & Zhang's bound."""
    if k <= 0:
        return float("inf")
    p = in_fraction
    return z_for(confidence) * (0.25 / (p * k) + 0.25 / ((1 - p) * k)) ** 0.5


def trials_for_half_width(width: float, in_fraction: float, confidence: float = 0.95) -> int:
    """The fewest trials whose ``worst_case_half_width`` is below ``width``."""
    p = in_fraction
    return int(np.ceil(z_for(confidence) ** 2 * (0.25 / p + 0.25 / (1 - p)) / width**2))
