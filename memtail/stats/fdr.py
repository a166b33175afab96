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
The distinct values still number millions at the paper's scale while only the reported
pairs need q-values: ``q_values_within`` bins the values by their leading bits, bounds
N p / rank over each bin from its edges and its cumulative count, and sorts only the bins
whose bound could still decide a q-value at most the cutoff.

Dependence: pairs that share a test example (or a train example) are not independent. BH
controls the false-discovery rate under positive regression dependence (Benjamini &
Yekutieli 2001), which one-sided tests on positively correlated counts satisfy: models that
get test example j right tend to get j' right, so the counts of (i, j) and (i, j') rise
together. Mask columns are negatively correlated, but only by 1/(n - 1) (subsets have a
fixed size). For a guarantee under any dependence, method "by" (Benjamini-Yekutieli)
multiplies every q by H_N = 1 + 1/2 + ... + 1/N (about 12 at 10^5 pairs, 21 at 5e8).
``q_values`` runs scipy's ``false_discovery_control``; the others are tested against it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["METHODS", "q_values", "q_values_of_counts", "q_values_within"]

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


# q_values_within's bins: a float64 shifted right by this many bits keeps its exponent and
# 8 mantissa bits, 256 bins an octave (a bin's values differ by 0.27% at most); for p >= 0
# the integer order of the bits is the order of the values.
_BIN_SHIFT = 44


def q_values_within(
    p: np.ndarray,
    counts: np.ndarray,
    n_examined: int,
    wanted: np.ndarray,
    exact_below: float,
    method: Method = "bh",
) -> np.ndarray:
    """``q_values_of_counts(p, counts, n_examined, method)[wanted]``, exactly where that is
    at most ``exact_below`` and an upper bound of it elsewhere, without sorting every p.

    q(p_r) = min over p >= p_r of N p / F(p), F(p) the pairs with a p-value <= p. Over a
    bin b of values, N p / F(p) lies between N lo_b / F_b and N hi_b / F_b (its edges, F_b
    the pairs up to its end). A bin is sorted, and its values' exact terms found, when it
    holds a wanted value or its lower bound is below what the wanted values below it
    already have (their best upper bound, or ``exact_below``). Any other bin's terms are
    at least that, so they cannot lower a q-value that is at most ``exact_below``.
    """
    if method not in METHODS:
        raise ValueError(f'method must be "bh" or "by"; got {method!r}')
    p = np.asarray(p, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    wanted = np.asarray(wanted, dtype=np.intp)
    if wanted.size == 0:
        return np.ones(0)
    if p.min() < 0 or counts.min() < 1 or counts.sum() > n_examined:
        raise ValueError("p must be >= 0, counts positive and adding up to at most n_examined")
    b = p.view(np.int64) >> _BIN_SHIFT
    first = int(b.min())
    b -= first  # in place: one array of p's size fewer
    n_bins = int(b.max()) + 1
    if n_bins > 4 * p.size + 2**20:  # values spread over more bins than they fill
        return q_values_of_counts(p, counts, n_examined, method)[wanted]
    scale = _harmonic(n_examined) if method == "by" else 1.0
    through = np.cumsum(np.bincount(b, weights=counts, minlength=n_bins))  # F_b
    edges = ((np.arange(n_bins + 1, dtype=np.int64) + first) << _BIN_SHIFT).view(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = np.where(through > 0, edges[:-1] * (n_examined / through) * scale, np.inf)
        upper = np.where(through > 0, edges[1:] * (n_examined / through) * scale, np.inf)
    upper[np.r_[True, through[1:] == through[:-1]]] = np.inf  # empty bins
    # Best bound of each wanted value from the bins above its own, then what each bin must
    # beat: the largest of those bounds (capped) over the wanted values below it.
    after = np.r_[np.minimum.accumulate(upper[::-1])[::-1], np.inf]
    w_bin = b[wanted]
    bound = after[w_bin + 1]
    beat = np.zeros(n_bins + 1)
    np.maximum.at(beat, w_bin + 1, np.minimum(bound, exact_below))
    beat = np.maximum.accumulate(beat)[:n_bins]
    refine = lower < beat
    refine[w_bin] = True
    sel = np.flatnonzero(refine[b])
    order = np.argsort(p[sel], kind="stable")
    ps, cs, bs = p[sel][order], counts[sel][order], b[sel][order]
    # F at each refined value: the pairs of earlier bins, then of this bin up to its last tie.
    cum = np.cumsum(cs)
    bin_start = np.flatnonzero(np.r_[True, bs[1:] != bs[:-1]])
    before_bin = np.repeat(cum[bin_start] - cs[bin_start], np.diff(np.r_[bin_start, bs.size]))
    prior = np.where(bs > 0, through[np.maximum(bs - 1, 0)], 0.0)
    f = prior + (cum - before_bin)
    f = f[np.searchsorted(ps, ps, side="right") - 1]
    q = ps * (n_examined / f)
    if method == "by":
        q *= scale
    q = np.minimum.accumulate(q[::-1])[::-1]
    at = np.searchsorted(ps, p[wanted], side="left")
    return np.minimum(1.0, np.minimum(q[at], bound))
