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
from numba import njit


@njit(cache=True)
def fold_block(out_j, out_g, counts, block_cols, n_rows, row_code, col_code, h_min, h_scan, table):
    """Rows 0 .. n_rows - 1 of a threshold_pairs block (out_j, out_g, counts: its
    buffers, in column blocks of ``block_cols``, its COLS). Row r's n_in code is
    row_code[r], column j's S code col_code[j]. A pair with count g >= h_min[code, s] is
    returned in (rows, cols, g), by row then column; any other adds 1 to
    table[code, s, g - h_scan[code, s]] (then read with ``table_counts``)."""
    total = 0
    for r in range(n_rows):
        for b in range(counts.shape[1]):
            total += counts[r, b]
    rows = np.empty(total, np.int64)
    cols = np.empty(total, np.int64)
    hits = np.empty(total, np.int64)
    p = 0
    for r in range(n_rows):
        code = row_code[r]
        for b in range(counts.shape[1]):
            for c in range(b * block_cols, b * block_cols + counts[r, b]):
                j, g = out_j[r, c], out_g[r, c]
                s = col_code[j]
                if g >= h_min[code, s]:
                    rows[p], cols[p], hits[p] = r, j, g
                    p += 1
                else:
                    table[code, s, g - h_scan[code, s]] += 1
    return rows[:p], cols[:p], hits[:p]


@njit(cache=True)
def table_counts(table, h_scan, first_code, n_codes_s, k):
    """The nonzero entries of fold_block's table as keys ((code, S code) cell, count),
    cell = (first_code + code) * n_codes_s + S code, key = cell * (k + 1) + count,
    ascending, with how many pairs each; the table is left zeroed for the next block."""
    n = 0
    for v in table.ravel():
        n += v != 0
    keys = np.empty(n, np.int64)
    pairs = np.empty(n, np.int64)
    p = 0
    for code in range(table.shape[0]):
        for s in range(table.shape[1]):
            base = ((first_code + code) * n_codes_s + s) * (k + 1) + h_scan[code, s]
            for offset in range(table.shape[2]):
                v = table[code, s, offset]
                if v:
                    keys[p], pairs[p] = base + offset, v
                    table[code, s, offset] = 0
                    p += 1
    return keys, pairs


@njit(cache=True)
def run_walk(hits, n, c, start, last, tail, k, log_fact, out):
    """Per cell q (rows start[q] .. last[q] of ``hits``, ascending and distinct), from
    tail[q] = P(H >= hits[last[q]]) down: out[row] = min(1, P(H >= hits[row]))."""
    log_k = log_fact[k]
    for q in range(start.size):
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
