"""Scanning train x test pairs for those whose influence passes the reporting rule.

``memtail.stats.influence.influence_pairs`` reduces the rule infl(i, j) >= threshold to an
integer one, G[i, j] >= h_min[code(n_in(i)), code(S_j)], where G = M^T T counts the
trials whose subset held train example i and whose model got test example j right.
Two scans apply it to the pairs rows x cols, each returning the passing (i, j, G), after
an optional per-block ``collect`` (``Tally``: folds pairs collected only for their p-values
into counts, so that they cost memory per distinct count, not per pair):

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


class Tally:
    """A scan's per-block ``collect``: pairs that pass the rule table ``h_min`` go on as they
    are; the others (collected because their count reaches ``h_scan``, a small p-value)
    are counted by their (code of n_in, code of S, G), the only things their p-values
    depend on."""

    def __init__(
        self,
        h_min: np.ndarray,
        h_scan: np.ndarray,
        n_codes: np.ndarray,
        s_codes: np.ndarray,
        k: int,
    ):
        self._h_min = h_min
        self._h_min_flat = h_min.ravel()
        self._h_scan_flat = h_scan.ravel().astype(np.int64)
        self._n_codes, self._s_codes, self._k = n_codes, s_codes, k
        # A tallied count lies in [h_scan, h_min) of its cell: this many values at most.
        self._width = max(1, int((h_min.astype(np.int64) - h_scan).max(initial=0)))
        self._keys: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        self._size = self._merged = 0

    def __call__(self, i: np.ndarray, j: np.ndarray, g: np.ndarray) -> Found:
        cell = self._n_codes[i].astype(np.int64) * self._h_min.shape[1] + self._s_codes[j]
        passed = g >= self._h_min_flat[cell]
        rest = ~passed
        keys, counts = self._histogram(cell[rest], g[rest])
        self._keys.append(keys)
        self._counts.append(counts)
        self._size += keys.size
        if self._size > 4 * max(self._merged, 2**16):  # merge now and then: memory stays
            self._merge()  # near the distinct counts, the time near linear
        return i[passed], j[passed], g[passed]

    def _histogram(self, cell: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distinct keys (cell, G), ascending, of one block's pairs, and their pairs."""
        if cell.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        # The kernel's blocks hold rows of a few n_in values (it sorts rows by n_in), so
        # (cell, G - h_scan) usually spans a small range: count it with a bincount, linear
        # in the pairs, instead of sorting them.
        lo = int(cell.min())
        span = (int(cell.max()) - lo + 1) * self._width
        if span > max(4 * cell.size, 2**20):
            return np.unique(cell * (self._k + 1) + g, return_counts=True)
        counts = np.bincount((cell - lo) * self._width + (g - self._h_scan_flat[cell]),
                             minlength=span)  # fmt: skip
        at = np.flatnonzero(counts)
        cell_at = at // self._width + lo
        g_at = self._h_scan_flat[cell_at] + at % self._width
        return cell_at * (self._k + 1) + g_at, counts[at].astype(np.int64)

    def _merge(self) -> None:
        keys = np.concatenate(self._keys) if self._keys else np.zeros(0, dtype=np.int64)
        counts = np.concatenate(self._counts) if self._counts else np.zeros(0, dtype=np.int64)
        if keys.size and np.all(keys[1:] >= keys[:-1]):  # the kernel's blocks come in order
            start = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
            uniq, merged = keys[start], np.add.reduceat(counts, start)
        else:
            uniq, at = np.unique(keys, return_inverse=True)
            merged = np.bincount(at, weights=counts).astype(np.int64)
        self._keys, self._counts = [uniq], [merged]
        self._size = self._merged = uniq.size

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(code of n_in, code of S, G, number of pairs) of every pair not passed on,
        sorted by (code of n_in, code of S, G)."""
        self._merge()
        keys, counts = self._keys[0], self._counts[0]
        g, cell = keys % (self._k + 1), keys // (self._k + 1)
        width = self._h_min.shape[1]
        return cell // width, cell % width, g, counts


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
    size = -(-min(step, rows.size) // compiled.ROWS) * compiled.ROWS
    out_j = np.empty((size, n_cols), dtype=np.int32)
    out_g = np.empty((size, n_cols), dtype=np.int32)
    counts = np.zeros((size, -(-n_cols // compiled.COLS)), dtype=np.int64)
    a_words = np.zeros((size, m.words.shape[1]), dtype=np.int64)
    found = []
    for a in range(0, rows.size, step):
        r = rows[a : a + step]
        used = -(-r.size // compiled.ROWS) * compiled.ROWS
        a_words[: r.size] = m.words[r].view(np.int64)
        a_words[r.size : used] = 0
        codes, a_code = np.unique(n_codes[r], return_inverse=True)
        # Thresholds by (code, column); the last row, and padded columns, are never met.
        thr = np.full((codes.size + 1, n_cols), _NEVER, dtype=np.int32)
        thr[:-1, : cols.size] = h_min[codes[:, None], col_codes[None, :]]
        a_code = np.concatenate([a_code, np.full(used - r.size, codes.size)]).astype(np.intp)
        compiled.threshold_pairs(
            a_words[:used], a_code, bt, thr, out_j[:used], out_g[:used], counts[:used]
        )
        li, jj, g = compiled.compact(out_j[:used], out_g[:used], counts[:used])
        found.append(collect(r[li], cols[jj], g.astype(np.int64)))
    return tuple(np.concatenate(parts) for parts in zip(*found, strict=True))
