"""The pairs a scan collects only for their p-values, counted instead of kept.

False-discovery control (``memtail.stats.fdr``) ranks every examined pair's p-value, and a
p-value depends on a pair only through (n_in, S_j, hits_in). So the influence scan
(``memtail.stats.scan``) hands each block's collected pairs to a ``Tally``: those that pass
the reporting rule go on as pairs, the others become counts by (code of n_in, code of S,
count), costing memory per distinct count, not per pair. With numba the kernel itself
counts them, as it finds them, in dense tables over the block's n_in codes (``scan``);
otherwise numpy counts the pairs handed over (``__call__``). Both give the same counts.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from memtail.stats import hypergeom, kernels

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]  # train index, test index, count

# Cells of the tables ``scan`` fills for one block, all parallel shares together (one per
# thread, ``numba_counts.tally_shares``): 64 MB of int32 at most. A block holds as many
# n_in codes as fit (``codes_per_block``), or the numpy path runs instead.
_TABLE_CELLS = 2**24


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
        self._sorted = True  # the parts, concatenated, are sorted and distinct
        self._table: np.ndarray | None = None
        self._tops = np.zeros(0, dtype=np.int32)

    def codes_per_block(self, compiled: ModuleType) -> int:
        """How many n_in codes one ``scan`` block may take (0: not one code's table fits)."""
        per_code = self._h_min.shape[1] * self._width
        return _TABLE_CELLS // (compiled.tally_shares(per_code, _TABLE_CELLS) * per_code)

    def __call__(self, i: np.ndarray, j: np.ndarray, g: np.ndarray) -> Pairs:
        cell = self._n_codes[i].astype(np.int64) * self._h_min.shape[1] + self._s_codes[j]
        passed = g >= self._h_min_flat[cell]
        rest = ~passed
        self._add(*self._histogram(cell[rest], g[rest]))
        return i[passed], j[passed], g[passed]

    def scan(
        self,
        compiled: ModuleType,
        block: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        buffers: tuple[np.ndarray, np.ndarray, np.ndarray],
        codes: np.ndarray,
        rows: np.ndarray,
        cols: np.ndarray,
    ) -> Pairs:
        """One block of ``kernel_scan`` by the compiled ``threshold_tally``, which counts the
        pairs not passed on as it finds them: ``block`` = (train words, each row's index
        into ``codes``, test words, thresholds: h_scan by (index, column)) as for
        ``threshold_pairs``, ``codes`` the block's distinct n_in codes (at most
        ``codes_per_block`` apart) of train rows ``rows``; test columns ``cols``."""
        a_words, a_code, bt, thr = block
        lo, hi = int(codes.min()), int(codes.max())
        n_s, n_code = self._h_min.shape[1], hi - lo + 1
        per_code = n_s * self._width
        shares = compiled.tally_shares(per_code, _TABLE_CELLS)
        if self._table is None or self._table.size < shares * n_code * per_code:
            # Zeroed again by every read, so allocated once, at the size of the largest
            # block (contiguous, so that the compiled code takes one array layout).
            size = shares * max(n_code, self.codes_per_block(compiled)) * n_s
            self._table = np.zeros(size * self._width, dtype=np.int32)
            self._tops = np.zeros(size, dtype=np.int32)
        table = self._table[: shares * n_code * per_code].reshape(shares, n_code, n_s, self._width)
        tops = self._tops[: shares * n_code * n_s].reshape(shares, n_code, n_s)
        # Per (code index, column): the reporting rule's count and the table cell; padded
        # rows and columns never pass thr, so their entries are never read.
        col_codes = self._s_codes[cols]
        keep = np.zeros(thr.shape, dtype=np.int32)
        keep[:-1, : cols.size] = self._h_min[codes[:, None], col_codes[None, :]]
        cell = np.zeros(thr.shape, dtype=np.int32)
        cell[:-1, : cols.size] = (codes[:, None] - lo) * n_s + col_codes[None, :]
        compiled.threshold_tally(a_words, a_code, bt, thr, keep, cell, *buffers,
                                 table.reshape(shares, -1), tops.reshape(shares, -1))  # fmt: skip
        self._add(*compiled.table_counts(table, tops, self._h_scan[lo : hi + 1], lo, n_s, self._k))
        li, jj, g = compiled.compact(*buffers)
        return rows[li], cols[jj], g.astype(np.int64)

    def _add(self, keys: np.ndarray, counts: np.ndarray) -> None:
        """Append one block's sorted distinct keys and their pairs. The kernel's blocks
        come in order of n_in, overlapping at one n_in value at most: then only that
        overlap is merged, and the parts stay sorted end to end with no sort at all.
        Blocks in any other order are merged by sorting, now and then and at the end."""
        if keys.size == 0:
            return
        if self._sorted and self._keys and keys[0] <= self._keys[-1][-1]:
            before = self._keys[-2][-1] if len(self._keys) > 1 else None
            if before is None or keys[0] > before:
                keys, counts = self._merge_overlap(keys, counts)
            else:
                self._sorted = False
        if keys.size:
            self._keys.append(keys)
            self._counts.append(counts)
            self._size += keys.size
        if not self._sorted and self._size > 4 * max(self._merged, 2**16):
            self._merge()  # merge now and then: memory stays near the distinct counts

    def _merge_overlap(self, keys: np.ndarray, counts: np.ndarray) -> tuple:
        """Fold the last part's keys from keys[0] on and this block's up to the last
        part's end into one sorted run; returns what is left of the block."""
        last, last_counts = self._keys[-1], self._counts[-1]
        a = int(np.searchsorted(last, keys[0], side="left"))
        b = int(np.searchsorted(keys, last[-1], side="right"))
        both = np.concatenate([last[a:], keys[:b]])
        merged, at = np.unique(both, return_inverse=True)
        summed = np.bincount(at, weights=np.concatenate([last_counts[a:], counts[:b]]))
        if a:
            self._keys[-1], self._counts[-1] = last[:a], last_counts[:a]
        else:  # parts are never empty: the check before a merge reads their last key
            del self._keys[-1], self._counts[-1]
        self._keys.append(merged)
        self._counts.append(summed.astype(np.int64))
        self._size += merged.size - (last.size - a)
        return keys[b:], counts[b:]

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
        if self._sorted:
            self._keys, self._counts = [keys], [counts]
            self._size = self._merged = keys.size
            return
        if keys.size and not np.all(keys[1:] >= keys[:-1]):
            # Each block's keys are sorted: a run-merging sort (timsort, numpy's "stable"
            # for int64) is near linear in the number of blocks' runs.
            order = np.argsort(keys, kind="stable")
            keys, counts = keys[order], counts[order]
        if keys.size:
            start = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
            keys, counts = keys[start], np.add.reduceat(counts, start)
        self._keys, self._counts = [keys], [counts]
        self._size = self._merged = keys.size
        self._sorted = True

    def p_values(self, u_n: np.ndarray, u_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p-value, number of pairs) of every distinct (code of n_in, code of S, G) counted,
        in ``counts``' order; n_in = u_n[code], S = u_s[code]. Compiled when numba is
        installed: one pass over the keys, never decoded into arrays."""
        self._merge()
        keys, counts = self._keys[0], self._counts[0]
        compiled = kernels.compiled()
        if compiled is None or keys.size <= hypergeom.SCIPY_MAX:
            t_n, t_s, t_h, _ = self.counts()
            return hypergeom.run_tails(t_h, u_n[t_n], u_s[t_s], self._k), counts
        p = compiled.key_tails(keys, self._h_min.shape[1], u_n.astype(np.int64),
                               u_s.astype(np.int64), self._k, hypergeom.log_factorials(self._k),
                               hypergeom.REST)  # fmt: skip
        return p, counts

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(code of n_in, code of S, G, number of pairs) of every pair not passed on,
        sorted by (code of n_in, code of S, G)."""
        self._merge()
        keys, counts = self._keys[0], self._counts[0]
        g, cell = keys % (self._k + 1), keys // (self._k + 1)
        width = self._h_min.shape[1]
        return cell // width, cell % width, g, counts
