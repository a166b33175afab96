"""Scanning train x test pairs for those whose influence passes the reporting rule.

``memtail.stats.influence.influence_pairs`` reduces the rule infl(i, j) >= threshold to an
integer one, G[i, j] >= h_min[code(n_in(i)), code(S_j)], where G = M^T T counts the
trials whose subset held train example i and whose model got test example j right.
Two scans apply it to the pairs rows x cols, each returning the passing (i, j, G), after
an optional per-block ``collect`` (``memtail.stats.tally.Tally``: folds pairs collected only
for their p-values into counts, so that they cost memory per distinct count, not per pair):

* ``gemm_scan`` (numpy): G block by block as a float GEMM of 0/1 matrices, then the
  comparison; memory is bounded by the block.
* ``kernel_scan`` (numba, ``numba_kernels``): popcounts of ``TrialBits`` words compared
  with the bound in the same pass, so G is never formed; ~10x faster at paper scale.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from memtail.stats import kernels
from memtail.stats.bits import TrialBits
from memtail.stats.tally import Tally

# Byte budget for one block's count matrix (numpy) or pass buffers (kernel).
_BLOCK_BYTES = 64 * 2**20
# float32 represents every integer below 2**24 exactly, so a 0/1 product summing at most
# that many trials is exact in any summation order; beyond it we fall back to float64.
_FLOAT32_EXACT = 2**24
# Threshold that no count reaches: padded rows and columns of a kernel block use it.
_NEVER = np.iinfo(np.int32).max

Found = tuple[np.ndarray, np.ndarray, np.ndarray]  # train index, test index, G
Collect = Callable[[np.ndarray, np.ndarray, np.ndarray], Found]


def collect_all(i: np.ndarray, j: np.ndarray, g: np.ndarray) -> Found:
    return i, j, g


def dense(x: np.ndarray | TrialBits, index: np.ndarray | None = None) -> np.ndarray:
    """The (k, len(index)) bool matrix of the examples ``index`` (all if None)."""
    if isinstance(x, TrialBits):
        return (x if index is None else x.take(index)).to_bool()
    return x if index is None else x[:, index]


def gemm_scan(
    m: np.ndarray | TrialBits,
    t: np.ndarray | TrialBits,
    rows: np.ndarray,
    cols: np.ndarray,
    n_codes: np.ndarray,
    s_codes: np.ndarray,
    h_min: np.ndarray,
    block_rows: int | None,
    collect: Collect = collect_all,
) -> Found:
    """numpy path: G block by block as a float GEMM, then G >= h_min. Returns (i, j, G)."""
    k = m.n_trials if isinstance(m, TrialBits) else m.shape[0]
    dtype = np.float32 if k < _FLOAT32_EXACT else np.float64
    t_cols = dense(t, cols).astype(dtype)  # with same_class, only this class's columns
    col_codes = s_codes[cols][None, :]
    step = block_rows or max(1, _BLOCK_BYTES // (np.dtype(dtype).itemsize * cols.size))
    found = []
    for a in range(0, rows.size, step):
        r = rows[a : a + step]
        # Exact integer counts (see _FLOAT32_EXACT), compared as integers.
        g = (dense(m, r).T.astype(dtype) @ t_cols).astype(np.int64)
        ii, jj = np.nonzero(g >= h_min[n_codes[r][:, None], col_codes])
        found.append(collect(r[ii], cols[jj], g[ii, jj]))
    return tuple(np.concatenate(parts) for parts in zip(*found, strict=True))


def kernel_scan(
    m: TrialBits,
    t: TrialBits,
    rows: np.ndarray,
    cols: np.ndarray,
    n_codes: np.ndarray,
    s_codes: np.ndarray,
    h_min: np.ndarray,
    block_rows: int | None,
    collect: Collect = collect_all,
) -> Found:
    """Compiled path: popcounts of packed words against h_min, G never formed."""
    compiled = kernels.compiled(required=True)
    n_cols = -(-cols.size // compiled.LANES) * compiled.LANES
    bt = np.zeros((t.words.shape[1], n_cols), dtype=np.int64)  # word-major, zero padded
    bt[:, : cols.size] = t.words[cols].view(np.int64).T
    col_codes = s_codes[cols]
    # Rows in order of n_in, so that a block needs the thresholds of few n_in values.
    rows = rows[np.argsort(n_codes[rows], kind="stable")]
    step = block_rows or max(1, _BLOCK_BYTES // (8 * n_cols))
    # A Tally counts the pairs it does not pass on inside the kernel when its tables fit.
    tallied = isinstance(collect, Tally) and collect.codes_per_block(compiled) > 0
    bounds = _row_blocks(n_codes[rows], step, collect.codes_per_block(compiled) if tallied else 0)
    size = -(-max(b - a for a, b in bounds) // compiled.ROWS) * compiled.ROWS if bounds else 0
    out_j = np.empty((size, n_cols), dtype=np.int32)
    out_g = np.empty((size, n_cols), dtype=np.int32)
    counts = np.zeros((size, -(-n_cols // compiled.COLS)), dtype=np.int64)
    a_words = np.zeros((size, m.words.shape[1]), dtype=np.int64)
    found = []
    for a, b in bounds:
        r = rows[a:b]
        used = -(-r.size // compiled.ROWS) * compiled.ROWS
        a_words[: r.size] = m.words[r].view(np.int64)
        a_words[r.size : used] = 0
        codes, a_code = np.unique(n_codes[r], return_inverse=True)
        # Thresholds by (code, column); the last row, and padded columns, are never met.
        thr = np.full((codes.size + 1, n_cols), _NEVER, dtype=np.int32)
        thr[:-1, : cols.size] = h_min[codes[:, None], col_codes[None, :]]
        a_code = np.concatenate([a_code, np.full(used - r.size, codes.size)]).astype(np.intp)
        buffers = (out_j[:used], out_g[:used], counts[:used])
        if tallied:
            assert isinstance(collect, Tally)
            block = (a_words[:used], a_code, bt, thr)
            found.append(collect.scan(compiled, block, buffers, codes, r, cols))
            continue
        compiled.threshold_pairs(a_words[:used], a_code, bt, thr, *buffers)
        li, jj, g = compiled.compact(*buffers)
        found.append(collect(r[li], cols[jj], g.astype(np.int64)))
    return tuple(np.concatenate(parts) for parts in zip(*found, strict=True))


def _row_blocks(codes: np.ndarray, step: int, max_codes: int) -> list[tuple[int, int]]:
    """Blocks [a, b) of rows sorted by n_in code: ``step`` rows at most and, if
    ``max_codes``, codes spanning at most that many values, ending where a code does
    unless one code fills the block (so that the tally's counts come in order)."""
    bounds, a = [], 0
    while a < codes.size:
        b = min(a + step, codes.size)
        if max_codes:
            b = min(b, int(np.searchsorted(codes, codes[a] + max_codes, side="left")))
            if b < codes.size and codes[b] == codes[b - 1] != codes[a]:
                b = int(np.searchsorted(codes, codes[b - 1], side="left"))
        bounds.append((a, b))
        a = b
    return bounds
