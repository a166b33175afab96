"""Compiled (numba) kernels that count for false-discovery control; optional, as
``numba_kernels`` (which imports them, so that ``kernels.compiled()`` gives every kernel).

* ``threshold_tally``: the scan of ``numba_kernels.threshold_pairs``, splitting the pairs
  it finds into those that pass the reporting rule (kept as pairs) and those collected
  only for their p-values (counted in tables by n_in code, S code and count) as it finds
  them; ``table_counts`` reads the tables' nonzero counts out, sorted.
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange

from memtail.stats.numba_popcount import COLS, LANES, ROWS, TILE, block_masks


def tally_shares(cells_per_code: int, budget: int) -> int:
    """How many tables ``threshold_tally`` should be given: one per thread, as many as
    fit one n_in code's ``cells_per_code`` cells each in ``budget`` cells (at least 1)."""
    return max(1, min(get_num_threads(), budget // max(1, cells_per_code)))


@njit(cache=True, inline="always")
def _sort_lanes(mask, r, q, code, j, block, c0, scratch, thr, keep, cell, width, buffers, table,
                top):  # fmt: skip
    """One micro-kernel row's passes: into row r's block buffer if they reach keep, else
    counted in the share's table."""
    out_j, out_g, counts = buffers
    for lane in range(LANES):
        if (mask >> lane) & 1:
            g, col = scratch[q, lane], j + lane
            if g >= keep[code, col]:
                c = counts[r, block]
                out_j[r, c0 + c] = col
                out_g[r, c0 + c] = g
                counts[r, block] = c + 1
            else:
                at, offset = cell[code, col], g - thr[code, col]
                table[at * width + offset] += 1
                if offset >= top[at]:
                    top[at] = offset + 1


@njit(parallel=True, cache=True)
def threshold_tally(a, a_code, bt, thr, keep, cell, out_j, out_g, counts, tables, tops):
    """``numba_kernels.threshold_pairs`` (same arguments and buffers), keeping in its
    buffers only the passes whose count g also reaches keep[a_code[r], c] (the reporting
    rule); every other pass, collected only for its p-value, adds 1 to tables[share,
    cell[code, c] * width + g - thr[code, c]] and raises tops[share, cell[code, c]] to one
    past that offset (width = tables.shape[1] // tops.shape[1]).

    The tiles are dealt out to tables.shape[0] shares, run in parallel, each counting in
    its own table, so that no two threads add to one entry; ``table_counts`` sums them.
    Counting as the kernel finds the pairs, instead of writing them all out and reading
    them back, saves the pass over ~15M pairs at paper scale.
    """
    n_rows = a.shape[0]
    n_cols = bt.shape[1]
    n_blocks = (n_cols + COLS - 1) // COLS
    n_tasks = ((n_rows + TILE - 1) // TILE) * n_blocks
    shares = tables.shape[0]
    width = tables.shape[1] // max(1, tops.shape[1])
    buffers = (out_j, out_g, counts)
    for share in prange(shares):
        table, top = tables[share], tops[share]
        scratch = np.empty((ROWS, LANES), np.int64)
        for task in range(share, n_tasks, shares):  # dealt in turn: passes even out
            tile, block = task // n_blocks, task % n_blocks
            r0, c0 = tile * TILE, block * COLS
            r1, c1 = min(r0 + TILE, n_rows), min(c0 + COLS, n_cols)
            for r in range(r0, r1):
                counts[r, block] = 0
            for r in range(r0, r1, ROWS):
                codes = (a_code[r], a_code[r + 1], a_code[r + 2], a_code[r + 3])
                for j in range(c0, c1, LANES):
                    m0, m1, m2, m3 = block_masks(a, bt, thr, r, j, codes, scratch)
                    if m0 | m1 | m2 | m3:
                        for q, m in ((0, m0), (1, m1), (2, m2), (3, m3)):
                            if m:
                                _sort_lanes(m, r + q, q, codes[q], j, block, c0, scratch, thr,
                                            keep, cell, width, buffers, table, top)  # fmt: skip


@njit(parallel=True, cache=True)
def table_counts(tables, tops, h_scan, first_code, n_codes_s, k):
    """The nonzero entries of threshold_tally's tables, summed over shares, as keys ((code,
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
