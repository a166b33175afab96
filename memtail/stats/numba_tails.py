"""Compiled (numba) hypergeometric tails for false-discovery control; optional, as
``numba_kernels`` (which imports them, so that ``kernels.compiled()`` gives every kernel).

* ``tail_walk``: the tail sums of ``memtail.stats.hypergeom.upper_tail``, one scalar loop
  per value, with the same float64 operations as its numpy loop.
* ``run_walk``: ``memtail.stats.hypergeom.run_tails``' walk down each cell's counts, one
  pmf term per step, with the same float64 operations as its numpy loop.
* ``cut_table``: ``memtail.stats.hypergeom.tail_cut_table``'s cells, each stepped from its
  normal guess with the same float64 operations.
* ``key_tails``: both at once for a tally's sorted keys (``memtail.stats.tally``), from the
  keys themselves: each cell's top count gets ``upper_tail``'s sum and the counts below
  it ``run_walk``'s, so that the keys are never decoded into arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _walk(t, xi, ni, ci, up, lo, hi, k, rest):
    """Sum pmf terms from t = P(H = xi) away from the mode (up: towards hi), stopping when
    a geometric bound on the rest is below ``rest`` of the sum."""
    acc = 0.0
    while True:
        acc += t
        if up:
            ratio = ((ci - xi) * (ni - xi)) / ((xi + 1.0) * (k - ci - ni + xi + 1.0))
            xi += 1
            ended = xi > hi
        else:
            ratio = (xi * (k - ci - ni + xi)) / ((ci - xi + 1.0) * (ni - xi + 1.0))
            xi -= 1
            ended = xi < lo
        t = t * ratio
        if ended or t == 0 or t < rest * acc * (1.0 - ratio):
            return acc


@njit(parallel=True, cache=True)
def tail_walk(term, x, n, c, upper, lo, hi, k, rest):
    """``_walk`` per value (see memtail.stats.hypergeom.upper_tail, whose numpy loop does
    the same operations)."""
    total = np.zeros(term.size)
    for i in prange(term.size):
        total[i] = _walk(term[i], x[i], n[i], c[i], upper[i], lo[i], hi[i], k, rest)
    return total


@njit(cache=True, inline="always")
def _pmf(x, n, c, k, log_fact, log_norm):
    """P(H = x), log_norm = log C(k, n), in ``hypergeom._pmf``'s order of operations."""
    return np.exp(
        (log_fact[c] - log_fact[x] - log_fact[c - x])
        + (log_fact[k - c] - log_fact[n - x] - log_fact[k - c - n + x])
        - log_norm
    )


@njit(parallel=True, cache=True)
def run_walk(hits, n, c, start, last, tail, k, log_fact, out):
    """Per cell q (rows start[q] .. last[q] of ``hits``, ascending and distinct), from
    tail[q] = P(H >= hits[last[q]]) down: out[row] = min(1, P(H >= hits[row]))."""
    log_k = log_fact[k]
    for q in prange(start.size):
        nq, cq = n[q], c[q]
        log_norm = log_k - log_fact[nq] - log_fact[k - nq]
        acc = tail[q]
        out[last[q]] = acc
        x = hits[last[q]]
        for row in range(last[q] - 1, start[q] - 1, -1):
            while x > hits[row]:
                x -= 1
                acc += _pmf(x, nq, cq, k, log_fact, log_norm)
            out[row] = min(1.0, acc)


@njit(cache=True, inline="always")
def _upper(h, n, c, k, log_fact, log_norm, rest):
    """P(H >= h) as ``hypergeom.upper_tail`` sums it, for one value: away from the mode."""
    lo, hi = max(0, c - (k - n)), min(n, c)
    if h <= lo:
        return 1.0
    if h > hi:
        return 0.0
    mode = (n + 1) * (c + 1) // (k + 2)
    up = h > mode
    x = h if up else h - 1
    total = _walk(_pmf(x, n, c, k, log_fact, log_norm), x, n, c, up, lo, hi, k, rest)
    return min(1.0, max(0.0, total if up else 1.0 - total))


@njit(parallel=True, cache=True)
def cut_table(u_n, u_s, k, level, z, log_fact, rest):
    """``hypergeom.tail_cut_table``'s steps, per cell (n, S): from the normal quantile's
    guess to the smallest h with P(H >= h) <= level, one pmf term per step."""
    table = np.empty((u_n.size, u_s.size), np.int32)
    for a in prange(u_n.size):
        n = u_n[a]
        log_norm = log_fact[k] - log_fact[n] - log_fact[k - n]
        for b in range(u_s.size):
            c = u_s[b]
            lo, hi = max(0, c - (k - n)), min(n, c)
            share = c / k
            sd = np.sqrt(n * share * (1.0 - share) * (k - n) / max(1, k - 1))
            guess = np.ceil(n * share + z * sd)
            h = hi + 1 if np.isnan(guess) else int(min(max(guess, lo), hi + 1))
            tail = _upper(h, n, c, k, log_fact, log_norm, rest)
            while tail <= level and h > lo:  # down while the count below is within it
                below = tail + _pmf(h - 1, n, c, k, log_fact, log_norm)
                if below > level:
                    break
                h -= 1
                tail = below
            while tail > level:  # or up until the tail is within it
                tail = max(0.0, tail - _pmf(h, n, c, k, log_fact, log_norm))
                h += 1
                if h > hi:
                    tail = 0.0
            table[a, b] = h
    return table


@njit(cache=True)
def _cell_starts(keys, k):
    """Where each cell's run of keys (cell * (k + 1) + count, ascending) starts, then the
    end: one division per cell, not per key (a 64-bit division costs ~40 cycles)."""
    start = np.empty(keys.size + 1, np.int64)
    n_cells, end = 0, np.int64(-1)
    for i in range(keys.size):
        if keys[i] >= end:
            start[n_cells] = i
            n_cells += 1
            end = (keys[i] // (k + 1) + 1) * (k + 1)
    start[n_cells] = keys.size
    return start[: n_cells + 1]


@njit(parallel=True, cache=True)
def key_tails(keys, n_s, u_n, u_s, k, log_fact, rest):
    """P(H >= count) of each key (sorted, distinct; cell = n_in code * n_s + S code, key =
    cell * (k + 1) + count), n_in = u_n[n_in code], S = u_s[S code], capped at 1."""
    start = _cell_starts(keys, k)
    out = np.empty(keys.size)
    for q in prange(start.size - 1):
        first, last = start[q], start[q + 1] - 1
        cell = keys[last] // (k + 1)
        base = cell * (k + 1)
        n, c = u_n[cell // n_s], u_s[cell % n_s]
        h = keys[last] - base
        log_norm = log_fact[k] - log_fact[n] - log_fact[k - n]
        lo = max(0, c - (k - n))
        acc = _upper(h, n, c, k, log_fact, log_norm, rest)
        out[last] = acc
        x = h
        for row in range(last - 1, first - 1, -1):  # run_walk's steps down
            below = keys[row] - base
            while x > below:
                x -= 1
                if x >= lo:
                    acc += _pmf(x, n, c, k, log_fact, log_norm)
            out[row] = min(1.0, acc)
    return out
