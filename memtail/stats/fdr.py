"""False-discovery control for influence pairs: q-values over every pair examined.

An estimate tests N = ``pairs_examined`` pairs (train i, test j), each with an exact
one-sided p-value (``memtail.stats.hypergeom``). Reporting every pair that passes the
paper's rule infl >= 0.15 says nothing about how many reported pairs are chance; the
Benjamini-Hochberg q-value of a pair is the smallest false-discovery rate at which it is a
discovery, and the pairs with q <= alpha are a set whose expected share of false pairs is
at most alpha:

    q_(r) = min over r' >= r of  N p_(r') / r'        (p sorted; "by": times H_N)

The procedure needs the p-values of all N pairs in principle; at the paper's scale (5e8
pairs) they are never formed. Only pairs with p <= c are collected (the scan compares
counts with a table of the count at which the tail drops to c, ``hypergeom``); their ranks
among all N pairs are their ranks among the collected ones, and for r' past the collected
ones N p_(r') / r' >= p_(r') > c. So a q-value computed from the collected p-values alone
is exact whenever it is at most c, and an upper bound (never an understatement) above;
a pair with p > c gets q = 1. Deciding q <= alpha for alpha <= c is exact.

The collected pairs number up to 2^24 but their p-values are few: a p-value depends on a
pair only through (n_in, S_j, hits_in), so the scan hands over a histogram, the distinct
p-values and how many pairs have each (``q_values_of_counts``). Among tied p-values BH's
minimum over later ranks is reached at the tie's last rank, the cumulative count, so the
procedure runs on the distinct values alone, one sort of those and no pair ever repeated.

Dependence: pairs that share a test example (or a train example) are not independent. BH
controls the false-discovery rate under positive regression dependence (Benjamini &
Yekutieli 2001), which one-sided tests on positively correlated counts satisfy: models that
get test example j right tend to get j' right, so the counts of (i, j) and (i, j') rise
together. Mask columns are negatively correlated, but only by 1/(n - 1) (subsets have a
fixed size). For a guarantee under any dependence, method "by" (Benjamini-Yekutieli)
multiplies every q by H_N = 1 + 1/2 + ... + 1/N (about 12 at 10^5 pairs, 21 at 5e8).
The procedure itself is scipy's ``false_discovery_control``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["METHODS", "q_values", "q_values_of_counts"]

METHODS = ("bh", "by")
Method = Literal["bh", "by"]


def _harmonic(n: int) -> float:
    """H_n = 1 + 1/2 + ... + 1/n, exactly as a sum below 10^6, by digamma above."""
    from scipy.special import digamma

    if n < 10**6:
        return float(np.sum(1.0 / np.arange(1, n + 1, dtype=np.float64)))
    return float(digamma(n + 1.0) + np.euler_gamma)


def q_values(
    p_reported: np.ndarray,
    p_collected: np.ndarray,
    n_examined: int,
    cutoff: float,
    method: Method = "bh",
) -> np.ndarray:
    """q-values of the reported pairs' p-values ``p_reported``.

    ``p_collected``: the p-values of every examined pair with p <= ``cutoff`` (the reported
    ones among them, bit for bit the same values); ``n_examined``: every pair tested. Exact
    where the result is at most ``cutoff``, an upper bound above it (module docstring).
    """
    if method not in METHODS:
        raise ValueError(f'method must be "bh" or "by"; got {method!r}')
    p_reported = np.asarray(p_reported, dtype=np.float64)
    p_collected = np.sort(np.asarray(p_collected, dtype=np.float64))
    if p_collected.size and (p_collected[-1] > cutoff or n_examined < p_collected.size):
        raise ValueError("p_collected must hold at most n_examined p-values, all <= cutoff")
    q = np.ones(p_reported.shape)
    r = p_collected.size
    if r == 0:
        return q
    from scipy.stats import false_discovery_control

    # BH over the r collected values, rescaled from r hypotheses to n_examined: the
    # factor r / rank becomes n_examined / rank, and BY's H_r becomes H_n.
    scale = n_examined / r
    if method == "by":
        scale *= _harmonic(n_examined) / _harmonic(r)
    q_sorted = np.minimum(1.0, false_discovery_control(p_collected, method=method) * scale)
    small = p_reported <= cutoff
    at = np.searchsorted(p_collected, p_reported[small])
    if np.any(at >= r) or np.any(p_collected[np.minimum(at, r - 1)] != p_reported[small]):
        raise ValueError("every reported p-value <= cutoff must be among p_collected")
    q[small] = q_sorted[at]
    return q


def q_values_of_counts(
    p: np.ndarray, counts: np.ndarray, n_examined: int, method: Method = "bh"
) -> np.ndarray:
    """q-value of each distinct p-value ``p``, ``counts[i]`` pairs having ``p[i]``.

    The same numbers as ``q_values`` over the p-values repeated by their counts (the
    module docstring): the counts of every collected p-value, the rest of the
    ``n_examined`` pairs having larger ones.
    """
    if method not in METHODS:
        raise ValueError(f'method must be "bh" or "by"; got {method!r}')
    p = np.asarray(p, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    if p.size == 0:
        return np.ones(0)
    # Ties may come in any order: each gets the minimum reached at the tie's last rank.
    order = np.argsort(p)
    rank = np.cumsum(counts[order])  # the last rank of each value's pairs
    if rank[-1] > n_examined or counts.min() < 1:
        raise ValueError("counts must be positive and add up to at most n_examined")
    q = p[order] * (n_examined / rank.astype(np.float64))
    if method == "by":
        q *= _harmonic(n_examined)
    q = np.minimum(1.0, np.minimum.accumulate(q[::-1])[::-1])
    out = np.empty(p.size)
    out[order] = q
    return out
