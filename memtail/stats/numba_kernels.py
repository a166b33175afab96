"""Compiled (numba) kernels for bits packed along the trial axis; optional.

Importing this module needs numba; callers fall back to numpy when it is missing, with
identical results. Two kernels here, more from ``numba_counts`` and ``numba_tails``:

* ``threshold_pairs``: for train rows a and test columns of ``memtail.stats.bits.TrialBits``
  words, G[i, j] = sum over words of popcount(a[i] & b[j]) (the count matrix M^T T of
  Feldman & Zhang's influence estimator), compared at once with an integer bound: the
  pair is kept iff G >= thr[code(i), j], the smallest count that passes the estimator's
  floating-point test for that (n_in, S_j). G is never materialized; only passing pairs
  are written (``numba_popcount.block_masks``, the micro-kernel, says how). It is
  ``numba_counts.threshold_tally`` keeping every pass, so that one tile loop serves both.
* ``transpose_rows``: k stored rows (trial-major, example bits LSB first) into
  example-major trial words, by 8 x 8 bit-matrix transposes.
* for false-discovery control, ``threshold_tally`` and ``table_counts`` live in
  ``numba_counts``, the hypergeometric tails (``tail_walk``, ``run_walk``, ``cut_table``,
  ``key_tails``) in ``numba_tails``; they are imported here, so that
  ``kernels.compiled()`` gives them all.

The scans run in parallel over tiles of train rows x blocks of test columns
(numba's threading layer; with its omp layer, do not fork after a kernel has run).
Compiled code is cached on disk (``cache=True``), so only the first call after an
install compiles (a few seconds).
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange

from memtail.stats.numba_counts import table_counts, tally_shares, threshold_tally
from memtail.stats.numba_popcount import COLS, LANES, ROWS
from memtail.stats.numba_tails import cut_table, key_tails, run_walk, tail_walk

__all__ = [
    "COLS",
    "LANES",
    "ROWS",
    "compact",
    "cut_table",
    "key_tails",
    "run_walk",
    "table_counts",
    "tail_walk",
    "tally_shares",
    "threshold_pairs",
    "threshold_tally",
    "transpose_rows",
]


def threshold_pairs(a, a_code, bt, thr, out_j, out_g, counts) -> None:
    """Per train row r, the test columns c with G[r, c] >= thr[a_code[r], c].

    a: (R, W) int64 train words, R a multiple of ROWS; bt: (W, C) int64 test words
    transposed, C a multiple of LANES (pad with zero words); thr: (U, C) int32 (pad with
    a value no count reaches, for padded rows and columns alike). Row r's passes in test
    block b (COLS columns from b * COLS) are out_j[r, b * COLS :][:counts[r, b]], in
    increasing column, with their counts in out_g; out_*: (R, C) int32, counts: (R,
    ceil(C / COLS)) int64.

    ``threshold_tally`` with every pass kept (keep = thr), so its tables stay unused:
    one tile loop serves both scans.
    """
    unused = np.zeros((get_num_threads(), 1), dtype=np.int32)
    threshold_tally(a, a_code, bt, thr, thr, np.zeros_like(thr), out_j, out_g, counts,
                    unused, unused.copy())  # fmt: skip


@njit(cache=True)
def compact(out_j, out_g, counts):
    """The passes of threshold_pairs as flat (row, column, count) arrays, by row."""
    total = 0
    for r in range(counts.shape[0]):
        for b in range(counts.shape[1]):
            total += counts[r, b]
    rows = np.empty(total, np.int64)
    cols = np.empty(total, np.int64)
    hits = np.empty(total, np.int64)
    p = 0
    for r in range(counts.shape[0]):
        for b in range(counts.shape[1]):
            for c in range(b * COLS, b * COLS + counts[r, b]):
                rows[p] = r
                cols[p] = out_j[r, c]
                hits[p] = out_g[r, c]
                p += 1
    return rows, cols, hits


@njit(cache=True, inline="always")
def _transpose8(x):
    """Transpose the 8 x 8 bit matrix in x (row q = byte q, column c = bit c)."""
    t = (x ^ (x >> np.uint64(7))) & np.uint64(0x00AA00AA00AA00AA)
    x = x ^ t ^ (t << np.uint64(7))
    t = (x ^ (x >> np.uint64(14))) & np.uint64(0x0000CCCC0000CCCC)
    x = x ^ t ^ (t << np.uint64(14))
    t = (x ^ (x >> np.uint64(28))) & np.uint64(0x00000000F0F0F0F0)
    return x ^ t ^ (t << np.uint64(28))


@njit(parallel=True, cache=True)
def transpose_rows(rows, n, row_bytes):
    """(k, ceil(n / 8)) uint8 rows, example bits LSB first -> (n, row_bytes) uint8 whose
    row i holds example i's k trial bits LSB first (zero past k)."""
    k, width = rows.shape
    out = np.zeros((n, row_bytes), np.uint8)
    groups = (k + 7) // 8
    # A task owns 64 byte columns (512 examples): its reads are whole cache lines.
    for blk in prange((width + 63) // 64):
        c0 = blk * 64
        c1 = min(c0 + 64, width)
        for g in range(groups):
            q_max = min(8, k - 8 * g)
            for c in range(c0, c1):
                x = np.uint64(0)
                for q in range(q_max):
                    x |= np.uint64(rows[8 * g + q, c]) << np.uint64(8 * q)
                x = _transpose8(x)
                for bit in range(min(8, n - 8 * c)):
                    out[8 * c + bit, g] = np.uint8((x >> np.uint64(8 * bit)) & np.uint64(0xFF))
    return out
