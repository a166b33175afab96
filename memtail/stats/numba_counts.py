"""Compiled (numba) kernels that count for false-discovery control; optional, as
``numba_kernels`` (which imports them, so that ``kernels.compiled()`` gives every kernel).

* ``fold_block``: splits the pairs one block of ``numba_kernels.threshold_pairs`` wrote
  into those that pass the reporting rule (kept as pairs) and those collected only for
  their p-values (counted in a table by n_in code, S code and count), in one pass;
  ``table_counts`` reads the table's nonzero counts out, sorted.
* ``run_walk``: ``memtail.stats.hypergeom.run_tails``' walk down each cell's counts, one
  pmf term per step, with the same float64 operations as its numpy loop.
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange

# Tables fold_block fills side by side (one per parallel share of a block's rows): at
# most this many, so that their memory stays bounded on machines with many threads.
MAX_FOLD_SHARES = 4


def fold_shares() -> int:
    """How many tables ``fold_block`` should be given: one per thread, at most 4."""
    return max(1, min(get_num_threads(), MAX_FOLD_SHARES))


@njit(parallel=True, cache=True)
def fold_block(
    out_j, out_g, counts, block_cols, n_rows, row_code, col_code, h_min, h_scan, tables, tops
):
    """Rows 0 .. n_rows - 1 of a threshold_pairs block (out_j, out_g, counts: its
    buffers, in column blocks of ``block_cols``, its COLS). Row r's n_in code is
    row_code[r], column j's S code col_code[j]. A pair with count g >= h_min[code, s] is
    returned in (rows, cols, g), by row then column; any other adds 1 to
    tables[share, code, s, g - h_scan[code, s]], its share's table (the rows are split
    into tables.shape[0] contiguous shares, folded in parallel; ``table_counts`` sums
    the tables as it reads them). tops[share, code, s] grows to one past the largest
    offset its share counted there, so that reading a table visits only what was used
    (pairs of a cell crowd its lowest counts: the table is mostly empty)."""
    shares = tables.shape[0]
    first = np.empty(shares + 1, np.int64)
    start = np.zeros(shares + 1, np.int64)
    for q in range(shares + 1):
        first[q] = (q * n_rows) // shares
    for q in range(shares):
        total = 0
        for r in range(first[q], first[q + 1]):
            for b in range(counts.shape[1]):
                total += counts[r, b]
        start[q + 1] = start[q] + total
    rows = np.empty(start[shares], np.int64)
    cols = np.empty(start[shares], np.int64)
    hits = np.empty(start[shares], np.int64)
    kept = np.zeros(shares, np.int64)
    for q in prange(shares):
        table, top = tables[q], tops[q]
        p = start[q]
        for r in range(first[q], first[q + 1]):
            code = row_code[r]
            for b in range(counts.shape[1]):
                for c in range(b * block_cols, b * block_cols + counts[r, b]):
                    j, g = out_j[r, c], out_g[r, c]
                    s = col_code[j]
                    if g >= h_min[code, s]:
                        rows[p], cols[p], hits[p] = r, j, g
                        p += 1
                    else:
                        offset = g - h_scan[code, s]
                        table[code, s, offset] += 1
                        if offset >= top[code, s]:
                            top[code, s] = offset + 1
        kept[q] = p - start[q]
    # The kept pairs are few (those reported): close the gaps between shares serially.
    p = 0
    for q in range(shares):
        for at in range(start[q], start[q] + kept[q]):
            rows[p], cols[p], hits[p] = rows[at], cols[at], hits[at]
            p += 1
    return rows[:p], cols[:p], hits[:p]


@njit(parallel=True, cache=True)
def table_counts(tables, tops, h_scan, first_code, n_codes_s, k):
    """The nonzero entries of fold_block's tables, summed over shares, as keys ((code,
    S code) cell, count), cell = (first_code + code) * n_codes_s + S code, key = cell *
    (k + 1) + count, ascending, with how many pairs each; the tables and their tops
    are left zeroed for the next block."""
    shares, n_code, n_s, _ = tables.shape
    nonzero = np.zeros(n_code + 1, np.int64)
    for code in prange(n_code):  # sum the shares into the first table, count nonzeros
        n = 0
        for s in range(n_s):
            used = tops[0, code, s]
            for q in range(1, shares):
                used = max(used, tops[q, code, s])
            tops[0, code, s] = used
            for offset in range(used):
                v = tables[0, code, s, offset]
                for q in range(1, shares):
                    v += tables[q, code, s, offset]
                    tables[q, code, s, offset] = 0
                tables[0, code, s, offset] = v
                n += v != 0
            for q in range(1, shares):
                tops[q, code, s] = 0
        nonzero[code + 1] = n
    at = np.cumsum(nonzero)
    keys = np.empty(at[n_code], np.int64)
    pairs = np.empty(at[n_code], np.int64)
    for code in prange(n_code):
        p = at[code]
        for s in range(n_s):
            base = ((first_code + code) * n_codes_s + s) * (k + 1) + h_scan[code, s]
            for offset in range(tops[0, code, s]):
                v = tables[0, code, s, offset]
                if v:
                    keys[p], pairs[p] = base + offset, v
                    tables[0, code, s, offset] = 0
                    p += 1
            tops[0, code, s] = 0
    return keys, pairs


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
                acc += np.exp(
                    (log_fact[cq] - log_fact[x] - log_fact[cq - x])
                    + (log_fact[k - cq] - log_fact[nq - x] - log_fact[k - cq - nq + x])
                    - log_norm
                )
            out[row] = min(1.0, acc)
