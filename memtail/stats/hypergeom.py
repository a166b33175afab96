"""The no-influence null for influence pairs: hypergeometric tails, vectorized.

With no influence, given n_in(i) and S_j the count hits_in of a pair is
H ~ Hypergeometric(population k, successes S_j, draws n_in) (see ``memtail.stats.influence``).
A pair passes the reporting rule infl >= threshold iff hits_in >= h_min(n_in, S_j), the
smallest count that passes the estimator's own floating-point test, so

    expected_null_passes = sum over examined pairs of P(H >= h_min(n_in(i), S_j)).

The terms depend on a pair only through (n_in, S_j): one per distinct pair of values, at
most (k + 1)^2, weighted by multiplicities. scipy's ``hypergeom.sf`` costs ~20 us per
value at k = 4000 (it sums the pmf in a per-element loop), so ``upper_tail`` sums the
terms itself, for all values at once: the first term from a table of log-factorials,
each next one by the pmf's ratio recurrence, always summing the smaller tail (away from
the mode, where terms shrink geometrically) and stopping when a geometric bound on the
rest is below 2^-60 of the sum. Per-pair p-values, when few, use scipy's ``hypergeom.sf``.
"""

from __future__ import annotations

import numpy as np

from memtail.stats import kernels

# Relative size of the neglected rest of a tail sum (the compiled walks take it too).
REST = 2.0**-60
# Fewer tails than this are summed with numpy even when numba is installed.
_COMPILED_MIN = 4096
# Per-pair p-values come from scipy for up to this many distinct (n_in, S, hits).
SCIPY_MAX = 2**16
# Cells per step of the (n_in, S) tables, bounding their temporaries to a few MB each.
_CELLS = 2**20


def log_factorials(k: int) -> np.ndarray:
    """log t! for t = 0 .. k, the table every pmf term here is computed from."""
    from scipy.special import gammaln

    return gammaln(np.arange(k + 1, dtype=np.float64) + 1.0)


def passes(hits: np.ndarray, n_in: np.ndarray, s: np.ndarray, k: int, threshold: float):
    """The estimator's test infl >= threshold, with the same float64 operations."""
    return hits / n_in - (s - hits) / (k - n_in) >= threshold


def min_passing_hits(n_in: np.ndarray, s: np.ndarray, k: int, threshold: float) -> np.ndarray:
    """Smallest hits_in that passes, or min(n_in, s) + 1 if none does; broadcasts.

    Starts from the real-number solution ceil(n_in (threshold n_out + s) / k) and steps to
    the boundary of the floating-point test, which is monotone in hits_in (a rounded
    quotient or difference never decreases when its exact value grows).
    """
    lo = np.maximum(0, s - (k - n_in))  # the support of hits_in
    hi = np.minimum(n_in, s)
    guess = np.ceil(n_in * (threshold * (k - n_in) + s) / k)
    h = np.clip(guess, lo, hi + 1).astype(np.int64)
    # The guess is off by a rounding error at most, so each loop runs once or twice.
    while (down := (h > lo) & passes(h - 1, n_in, s, k, threshold)).any():
        h -= down
    while (up := (h <= hi) & ~passes(h, n_in, s, k, threshold)).any():
        h += up
    return h


def scipy_tail(hits: np.ndarray, n_in: np.ndarray, s: np.ndarray, k: int) -> np.ndarray:
    """P(H >= hits) from scipy, per element; broadcasts, 1 below the support."""
    # Imported here: scipy.stats takes seconds to import, and only the tails need it.
    from scipy.stats import hypergeom

    hits, n_in, s = np.broadcast_arrays(hits, n_in, s)
    if hits.size == 0:
        return np.zeros(hits.shape)
    return np.clip(hypergeom.sf(hits - 1, k, s, n_in), 0.0, 1.0)


def upper_tail(
    hits: np.ndarray, n_in: np.ndarray, s: np.ndarray, k: int, *, compiled: bool | None = None
) -> np.ndarray:
    """P(H >= hits), H ~ Hypergeometric(k, s, n_in), for 1-D int64 arrays of equal size.

    Agrees with scipy_tail to ~1e-14 relative at k = 60 and ~2e-11 at k = 4000 (the
    rounding of the log-pmf of the first term, whose log-factorials grow with k).
    ``compiled``: sum with the numba kernel (None: when installed and worth it); both
    give the same bits.
    """
    hits, n_in, s = (np.asarray(x, dtype=np.int64) for x in (hits, n_in, s))
    lo = np.maximum(0, s - (k - n_in))
    hi = np.minimum(n_in, s)
    out = np.where(hits <= lo, 1.0, 0.0)
    inside = np.flatnonzero((hits > lo) & (hits <= hi))
    if inside.size == 0:
        return out
    h, n, c, lo, hi = hits[inside], n_in[inside], s[inside], lo[inside], hi[inside]
    mode = (n + 1) * (c + 1) // (k + 2)
    # Above the mode sum P(H = x) for x >= h upwards; else P(H = x) for x < h downwards
    # and take the complement: either way the terms shrink from the first one on.
    upper = h > mode
    x = np.where(upper, h, h - 1)
    # log P(H = x) = log C(c, x) + log C(k - c, n - x) - log C(k, n), from log t! values.
    term = _pmf(x, n, c, k, log_factorials(k))
    walk = (
        kernels.compiled() if compiled is None else (kernels.compiled(True) if compiled else None)
    )
    if walk is not None and inside.size >= _COMPILED_MIN:
        total = walk.tail_walk(term, x, n, c, upper, lo, hi, k, REST)
    else:
        total = _tail_walk(term, x, n, c, upper, lo, hi, k)
    out[inside] = np.clip(np.where(upper, total, 1.0 - total), 0.0, 1.0)
    return out


def _pmf(x: np.ndarray, n: np.ndarray, c: np.ndarray, k: int, log_fact: np.ndarray) -> np.ndarray:
    """P(H = x) for x in the support, from the table log_fact[t] = log t!."""
    return np.exp(
        (log_fact[c] - log_fact[x] - log_fact[c - x])
        + (log_fact[k - c] - log_fact[n - x] - log_fact[k - c - n + x])
        - (log_fact[k] - log_fact[n] - log_fact[k - n])
    )


def _tail_walk(
    term: np.ndarray,
    x: np.ndarray,
    n: np.ndarray,
    c: np.ndarray,
    upper: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    k: int,
) -> np.ndarray:
    """numpy twin of ``numba_kernels.tail_walk``: the same float64 operations, vectorized."""
    total = np.zeros(term.size)
    live = np.arange(term.size)
    x = x.copy()
    while live.size:
        total[live] += term
        xl, nl, cl, up = x[live], n[live], c[live], upper[live]
        # P(H = x + 1) / P(H = x) and P(H = x - 1) / P(H = x), from the pmf's factorials.
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(
                up,
                ((cl - xl) * (nl - xl)) / ((xl + 1.0) * (k - cl - nl + xl + 1.0)),
                (xl * (k - cl - nl + xl)) / ((cl - xl + 1.0) * (nl - xl + 1.0)),
            )
        term = term * ratio
        x[live] = xl + np.where(up, 1, -1)
        # Ratios fall further along the walk, so the rest is at most term / (1 - ratio).
        ended = np.where(up, x[live] > hi[live], x[live] < lo[live])
        keep = ~(ended | (term == 0) | (term < REST * total[live] * (1.0 - ratio)))
        live, term = live[keep], term[keep]
    return total


def min_passing_table(u_n: np.ndarray, u_s: np.ndarray, k: int, threshold: float) -> np.ndarray:
    """int32 table of min_passing_hits over every (u_n[a], u_s[b]); (u_n.size, u_s.size)."""
    table = np.empty((u_n.size, u_s.size), dtype=np.int32)
    step = max(1, _CELLS // max(1, u_s.size))  # bound the int64/float64 temporaries
    for a in range(0, u_n.size, step):
        rows = u_n[a : a + step, None]
        table[a : a + step] = min_passing_hits(rows, u_s[None, :], k, threshold)
    return table


def tail_cut_table(u_n: np.ndarray, u_s: np.ndarray, k: int, level: float) -> np.ndarray:
    """int32 table, (u_n.size, u_s.size): the smallest count h with P(H >= h) <= level.

    A pair with hits_in >= the entry has a p-value of at most ``level`` (up to the ~1e-11
    between ``upper_tail`` and scipy: callers give ``level`` that slack). Each entry starts
    from the normal approximation's quantile, whose tail ``upper_tail`` sums, and steps
    one count at a time (the tail changes by one pmf term per step) to the exact entry:
    a step or two for most cells, all cells at once (or each in compiled code, the same
    steps, when numba is installed).
    """
    from scipy.special import ndtri

    log_fact = log_factorials(k)
    z = ndtri(1.0 - level) if 0.0 < level < 1.0 else (np.inf if level <= 0.0 else -np.inf)
    compiled = kernels.compiled()
    if compiled is not None and u_n.size * u_s.size >= _COMPILED_MIN:
        return compiled.cut_table(np.asarray(u_n, dtype=np.int64), np.asarray(u_s, dtype=np.int64),
                                  k, float(level), float(z), log_fact, REST)  # fmt: skip
    table = np.empty((u_n.size, u_s.size), dtype=np.int32)
    step = max(1, _CELLS // max(1, u_s.size))
    for a in range(0, u_n.size, step):
        n, s = np.broadcast_arrays(
            np.asarray(u_n[a : a + step, None], dtype=np.int64),
            np.asarray(u_s[None, :], dtype=np.int64),
        )
        n, s = n.ravel(), s.ravel()
        lo, hi = np.maximum(0, s - (k - n)), np.minimum(n, s)
        share = s / k
        sd = np.sqrt(n * share * (1.0 - share) * (k - n) / max(1, k - 1))
        with np.errstate(invalid="ignore"):  # z infinite and sd 0 give NaN: the top
            guess = np.nan_to_num(np.ceil(n * share + z * sd), nan=np.inf)
        h = np.clip(guess, lo, hi + 1).astype(np.int64)
        tail = upper_tail(h, n, s, k)
        # Down while the count below also has a tail within the level ...
        live = np.flatnonzero((tail <= level) & (h > lo))
        while live.size:
            below = tail[live] + _pmf(h[live] - 1, n[live], s[live], k, log_fact)
            ok = below <= level
            live = live[ok]
            h[live] -= 1
            tail[live] = below[ok]
            live = live[h[live] > lo[live]]
        # ... or up until the tail is within it (P(H >= hi + 1) = 0 always is).
        live = np.flatnonzero(tail > level)
        while live.size:
            tail[live] = np.maximum(0.0, tail[live] - _pmf(h[live], n[live], s[live], k, log_fact))
            h[live] += 1
            tail[live[h[live] > hi[live]]] = 0.0
            live = live[tail[live] > level]
        table[a : a + step] = h.reshape(-1, u_s.size)
    return table


def expected_passes(
    u_n: np.ndarray,
    n_code: np.ndarray,
    u_s: np.ndarray,
    s_code: np.ndarray,
    h_min: np.ndarray,
    groups: list[tuple[np.ndarray, np.ndarray]],
    k: int,
) -> float:
    """Expected passes with no influence over the pairs rows x cols of every group.

    n_in = u_n[n_code], S = u_s[s_code] and h_min = min_passing_table(u_n, u_s, ...).
    Exact up to rounding by the module docstring: one tail per distinct (n_in, S_j) that
    some group needs (classes share them), weighted by each group's multiplicities.
    """
    if not groups:
        return 0.0
    weights = [
        (
            np.bincount(n_code[rows], minlength=u_n.size).astype(np.float64),
            np.bincount(s_code[cols], minlength=u_s.size).astype(np.float64),
        )
        for rows, cols in groups
    ]
    step = max(1, _CELLS // max(1, u_s.size))  # bound the temporary (rows x u_s) tables
    total = 0.0
    for a in range(0, u_n.size, step):
        chunk = slice(a, a + step)
        needed = np.zeros((u_n[chunk].size, u_s.size), dtype=bool)
        for w_n, w_s in weights:
            needed |= (w_n[chunk, None] > 0) & (w_s[None, :] > 0)
        ii, jj = np.nonzero(needed)
        probs = np.zeros(needed.shape)
        probs[ii, jj] = upper_tail(h_min[chunk][ii, jj], u_n[chunk][ii], u_s[jj], k)
        total += sum(float(w_n[chunk] @ probs @ w_s) for w_n, w_s in weights)
    return total


def p_values(hits: np.ndarray, n_in: np.ndarray, s: np.ndarray, k: int) -> np.ndarray:
    """P(H >= hits) per pair, computed once per distinct (n_in, s, hits): by scipy for up
    to ``SCIPY_MAX`` distinct values, by ``upper_tail`` (~1e-11 from scipy, ~100x faster)
    beyond, as false-discovery control collects every pair with a small p-value."""
    if hits.size == 0 or (k + 1) ** 3 >= 2**63:  # the key below would overflow
        return scipy_tail(hits, n_in, s, k)
    key = (n_in * (k + 1) + s) * (k + 1) + hits
    uniq, inverse = np.unique(key, return_inverse=True)
    u_hits, rest = uniq % (k + 1), uniq // (k + 1)
    tail = scipy_tail if uniq.size <= SCIPY_MAX else upper_tail
    return tail(u_hits, rest // (k + 1), rest % (k + 1), k)[inverse]


def run_tails(
    hits: np.ndarray, n_in: np.ndarray, s: np.ndarray, k: int, *, compiled: bool | None = None
) -> np.ndarray:
    """``p_values`` of distinct (n_in, s, hits) sorted by (n_in, s), then hits: a tally's.

    A cell (n_in, s) holds a run of counts, and P(H >= h) = P(H >= h + 1) + P(H = h): so
    only the top count of each cell gets a tail sum, and the counts below add one pmf
    term per step down, positive terms only (no cancellation). By scipy when few;
    ``compiled``: walk with the numba kernel (None: when installed).
    """
    hits, n_in, s = (np.asarray(x, dtype=np.int64) for x in (hits, n_in, s))
    if hits.size <= SCIPY_MAX:
        return scipy_tail(hits, n_in, s, k)

    log_fact = log_factorials(k)
    start = np.flatnonzero(np.r_[True, (n_in[1:] != n_in[:-1]) | (s[1:] != s[:-1])])
    last = np.r_[start[1:], hits.size] - 1
    out = np.empty(hits.size)
    n, c = n_in[last], s[last]
    tail = upper_tail(hits[last], n, c, k)
    walk = (
        kernels.compiled() if compiled is None else (kernels.compiled(True) if compiled else None)
    )
    if walk is not None:
        walk.run_walk(hits, n, c, start, last, tail, k, log_fact, out)
        return out
    out[last] = tail
    x, below, low = hits[last].copy(), last - 1, hits[start]
    live = np.flatnonzero(x > low)
    while live.size:
        x[live] -= 1
        tail[live] += _pmf(x[live], n[live], c[live], k, log_fact)
        at = live[hits[below[live]] == x[live]]
        out[below[at]] = np.minimum(1.0, tail[at])
        below[at] -= 1
        live = live[x[live] > low[live]]
    return out
