"""The pairs a scan collects only for their p-values, counted instead of kept.

False-discovery control (``memtail.stats.fdr``) ranks every examined pair's p-value, and a
p-value depends on a pair only through (n_in, S_j, hits_in). So the influence scan
(``memtail.stats.scan``) hands each block's collected pairs to a ``Tally``: those that pass
the reporting rule go on as pairs, the others become counts by (code of n_in, code of S,
count), costing memory per distinct count, not per pair. With numba the kernel's block
buffers are folded in one compiled pass into a dense table over the block's n_in codes
(``fold``); otherwise numpy counts the pairs handed over (``__call__``). Both give the same
counts.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]  # train index, test index, count

# Cells of the table ``fold`` fills for one block: 32 MB of int32 at most. A block holds
# as many n_in codes as fit (``codes_per_block``), or the numpy path runs instead.
_TABLE_CELLS = 2**23


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
        self._h_scan = h_scan
        self._h_min_flat = h_min.ravel()
        self._h_scan_flat = h_scan.ravel().astype(np.int64)
        self._n_codes, self._s_codes, self._k = n_codes, s_codes, k
        # A tallied count lies in [h_scan, h_min) of its cell: this many values at most.
        self._width = max(1, int((h_min.astype(np.int64) - h_scan).max(initial=0)))
        self._keys: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        self._size = self._merged = 0
        self._table: np.ndarray | None = None

    def codes_per_block(self) -> int:
        """How many n_in codes one ``fold`` may take (0: its table would not fit)."""
        return _TABLE_CELLS // (self._h_min.shape[1] * self._width)

    def __call__(self, i: np.ndarray, j: np.ndarray, g: np.ndarray) -> Pairs:
        cell = self._n_codes[i].astype(np.int64) * self._h_min.shape[1] + self._s_codes[j]
        passed = g >= self._h_min_flat[cell]
        rest = ~passed
        self._add(*self._histogram(cell[rest], g[rest]))
        return i[passed], j[passed], g[passed]

    def fold(
        self,
        compiled: ModuleType,
        buffers: tuple[np.ndarray, np.ndarray, np.ndarray],
        block_cols: int,
        rows: np.ndarray,
        cols: np.ndarray,
    ) -> Pairs:
        """``__call__`` on the pairs of one ``threshold_pairs`` block, read from its
        ``buffers`` (out_j, out_g, counts) by the compiled ``fold_block``: train rows
        ``rows`` (of at most ``codes_per_block`` n_in codes), test columns ``cols``."""
        codes = self._n_codes[rows]
        lo, hi = int(codes.min()), int(codes.max())
        n_s = self._h_min.shape[1]
        if self._table is None:  # zeroed again by every read, so allocated once
            self._table = np.zeros((self.codes_per_block(), n_s, self._width), dtype=np.int32)
        table = self._table[: hi - lo + 1]
        li, jj, g = compiled.fold_block(
            *buffers, block_cols, rows.size, (codes - lo).astype(np.int64),
            self._s_codes[cols].astype(np.int64), self._h_min[lo : hi + 1],
            self._h_scan[lo : hi + 1], table,
        )  # fmt: skip
        self._add(*compiled.table_counts(table, self._h_scan[lo : hi + 1], lo, n_s, self._k))
        return rows[li], cols[jj], g

    def _add(self, keys: np.ndarray, counts: np.ndarray) -> None:
        self._keys.append(keys)
        self._counts.append(counts)
        self._size += keys.size
        if self._size > 4 * max(self._merged, 2**16):  # merge now and then: memory stays
            self._merge()  # near the distinct counts, the time near linear

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
        if keys.size and not np.all(keys[1:] >= keys[:-1]):
            # Each block's keys are sorted and the kernel's blocks come in order of n_in,
            # overlapping at one n_in value at most: a run-merging sort (timsort, numpy's
            # "stable" for int64) is near linear on that.
            order = np.argsort(keys, kind="stable")
            keys, counts = keys[order], counts[order]
        if keys.size:
            start = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
            keys, counts = keys[start], np.add.reduceat(counts, start)
        self._keys, self._counts = [keys], [counts]
        self._size = self._merged = keys.size

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(code of n_in, code of S, G, number of pairs) of every pair not passed on,
        sorted by (code of n_in, code of S, G)."""
        self._merge()
        keys, counts = self._keys[0], self._counts[0]
        g, cell = keys % (self._k + 1), keys // (self._k + 1)
        width = self._h_min.shape[1]
        return cell // width, cell % width, g, counts
