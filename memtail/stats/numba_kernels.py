"""Compiled (numba) kernels for bits packed along the trial axis; optional.

Importing this module needs numba; callers fall back to numpy when it is missing, with
identical results. Three kernels here, two more from ``numba_counts``:

* ``threshold_pairs``: for train rows a and test columns of ``memtail.stats.bits.TrialBits``
  words, G[i, j] = sum over words of popcount(a[i] & b[j]) (the count matrix M^T T of
  Feldman & Zhang's influence estimator), compared at once with an integer bound: the
  pair is kept iff G >= thr[code(i), j], the smallest count that passes the estimator's
  floating-point test for that (n_in, S_j). G is never materialized; only passing pairs
  are written. Each test column has its own 64-bit lane (a train word broadcast against
  8 columns' words), so a pair's count never needs a horizontal sum: per 8 pairs and 64
  trials, one 512-bit AND, POPCNT and ADD.
* ``transpose_rows``: k stored rows (trial-major, example bits LSB first) into
  example-major trial words, by 8 x 8 bit-matrix transposes.
* ``tail_walk``: the hypergeometric tail sums of ``memtail.stats.hypergeom.upper_tail``, one
  scalar loop per value, with the same float64 operations as its numpy loop.
* ``fold_block``, ``table_counts`` and ``run_walk``, for false-discovery control, live in
  ``numba_counts`` and are imported here, so that ``kernels.compiled()`` gives them all.

``threshold_pairs`` runs in parallel over tiles of train rows x blocks of test columns
(numba's threading layer; with its omp layer, do not fork after a kernel has run).
Compiled code is cached on disk (``cache=True``), so only the first call after an
install compiles (a few seconds).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from memtail.stats.numba_counts import fold_block, fold_shares, run_walk, table_counts

__all__ = [
    "compact",
    "fold_block",
    "fold_shares",
    "run_walk",
    "table_counts",
    "tail_walk",
    "threshold_pairs",
    "transpose_rows",
]

# Micro-kernel: ROWS train rows against LANES test columns (vectors of 8 int64 lanes, one
# column per lane), so that counts accumulate per pair with no horizontal sums. One
# vector per row: on AVX2 (no vector popcount, 16 registers) two vectors per row spill
# their accumulators, and one is 19% faster (A B A B on the paper's shapes); AVX-512 has
# registers for either.
ROWS = 4
LANES = 8
_VECS = LANES // 8
# A parallel task: TILE train rows (their words stay in L1) x COLS test columns (at
# k = 4096, COLS x 512 bytes = 128 KB of test words: they stay in L2 for the tile).
TILE = 64
COLS = 256


def _vec_ptr(builder, base, offset, vec):
    return builder.bitcast(builder.gep(base, [offset]), vec.as_pointer())


@intrinsic
def _block_masks(typingctx, a, bt, thr, r, j, codes, scratch):
    """Counts G of the ROWS x LANES pairs (r + q, j + l) and which pass.

    a: (R, W) int64 train words; bt: (W, C) int64 test words, transposed (word-major);
    thr: (U, C) int32 thresholds, row codes[q] for train row r + q; scratch: (ROWS,
    LANES) int64 receives G. Returns ROWS int64 masks, bit l set iff G >= thr. Written as
    LLVM vector IR, so the vectors are 512 bits wide whatever width the loop vectorizer
    would prefer; LLVM splits them where the CPU has narrower registers.
    """
    ok = (
        all(
            isinstance(x, types.Array) and x.ndim == 2 and x.layout == "C"
            for x in (a, bt, thr, scratch)
        )
        and a.dtype == bt.dtype == scratch.dtype == types.int64
        and thr.dtype == types.int32
        and isinstance(codes, types.UniTuple)
        and len(codes) == ROWS
        and all(isinstance(x, types.Integer) for x in (r, j, codes.dtype))
    )
    if not ok:
        return None
    sig = types.UniTuple(types.int64, ROWS)(a, bt, thr, r, j, codes, scratch)

    def codegen(context, builder, signature, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        vec = ir.VectorType(i64, 8)
        a_arr, bt_arr, thr_arr = (
            context.make_array(t)(context, builder, v)
            for t, v in zip(signature.args[:3], args[:3], strict=True)
        )
        out_arr = context.make_array(signature.args[6])(context, builder, args[6])
        r_ = context.cast(builder, args[3], signature.args[3], types.intp)
        j_ = context.cast(builder, args[4], signature.args[4], types.intp)
        codes_t = signature.args[5]
        code_vals = [
            context.cast(builder, builder.extract_value(args[5], q), codes_t.dtype, types.intp)
            for q in range(ROWS)
        ]
        width = builder.extract_value(a_arr.shape, 1)
        n_cols = builder.extract_value(bt_arr.shape, 1)
        ctpop = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec]), "llvm.ctpop.v8i64"
        )
        a_rows = [
            builder.gep(a_arr.data, [builder.mul(builder.add(r_, ir.Constant(i64, q)), width)])
            for q in range(ROWS)
        ]
        accs = [
            [cgutils.alloca_once_value(builder, ir.Constant(vec, None)) for _ in range(_VECS)]
            for _ in range(ROWS)
        ]
        zero = ir.Constant(i32, 0)
        splat = ir.Constant(ir.VectorType(i32, 8), [0] * 8)
        with cgutils.for_range(builder, width) as loop:
            w = loop.index
            base = builder.add(builder.mul(w, n_cols), j_)
            ys = [
                builder.load(_vec_ptr(builder, bt_arr.data, at, vec), align=8)
                for at in (builder.add(base, ir.Constant(i64, 8 * v)) for v in range(_VECS))
            ]
            for q in range(ROWS):
                word = builder.load(builder.gep(a_rows[q], [w]))
                one = builder.insert_element(ir.Constant(vec, ir.Undefined), word, zero)
                x = builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined), splat)
                for v in range(_VECS):
                    count = builder.call(ctpop, [builder.and_(x, ys[v])])
                    builder.store(builder.add(builder.load(accs[q][v]), count), accs[q][v])
        masks = []
        for q in range(ROWS):
            thr_row = builder.add(builder.mul(code_vals[q], n_cols), j_)
            mask = ir.Constant(i64, 0)
            for v in range(_VECS):
                acc = builder.load(accs[q][v])
                offset = builder.add(thr_row, ir.Constant(i64, 8 * v))
                bound = builder.load(
                    _vec_ptr(builder, thr_arr.data, offset, ir.VectorType(i32, 8)), align=4
                )
                passed = builder.icmp_signed(">=", acc, builder.sext(bound, vec))
                bits_ = builder.zext(builder.bitcast(passed, ir.IntType(8)), i64)
                mask = builder.or_(mask, builder.shl(bits_, ir.Constant(i64, 8 * v)))
                dest = ir.Constant(i64, q * LANES + 8 * v)
                builder.store(acc, _vec_ptr(builder, out_arr.data, dest, vec), align=8)
            masks.append(mask)
        return context.make_tuple(builder, signature.return_type, masks)

    return sig, codegen


@njit(cache=True, inline="always")
def _emit(mask, r, q, j, block, c0, scratch, out_j, out_g, counts):
    """Append the passing lanes of one micro-kernel row to row r's block buffer."""
    for lane in range(LANES):
        if (mask >> lane) & 1:
            c = counts[r, block]
            out_j[r, c0 + c] = j + lane
            out_g[r, c0 + c] = scratch[q, lane]
            counts[r, block] = c + 1


@njit(parallel=True, cache=True)
def threshold_pairs(a, a_code, bt, thr, out_j, out_g, counts):
    """Per train row r, the test columns c with G[r, c] >= thr[a_code[r], c].

    a: (R, W) int64 train words, R a multiple of ROWS; bt: (W, C) int64 test words
    transposed, C a multiple of LANES (pad with zero words); thr: (U, C) int32 (pad with
    a value no count reaches, for padded rows and columns alike). Row r's passes in test
    block b (COLS columns from b * COLS) are out_j[r, b * COLS :][:counts[r, b]], in
    increasing column, with their counts in out_g; out_*: (R, C) int32, counts: (R,
    ceil(C / COLS)) int64.
    """
    n_rows = a.shape[0]
    n_cols = bt.shape[1]
    n_blocks = (n_cols + COLS - 1) // COLS
    n_tiles = (n_rows + TILE - 1) // TILE
    for task in prange(n_tiles * n_blocks):
        tile, block = task // n_blocks, task % n_blocks
        r0, c0 = tile * TILE, block * COLS
        r1, c1 = min(r0 + TILE, n_rows), min(c0 + COLS, n_cols)
        scratch = np.empty((ROWS, LANES), np.int64)
        for r in range(r0, r1):
            counts[r, block] = 0
        for r in range(r0, r1, ROWS):
            codes = (a_code[r], a_code[r + 1], a_code[r + 2], a_code[r + 3])
            for j in range(c0, c1, LANES):
                m0, m1, m2, m3 = _block_masks(a, bt, thr, r, j, codes, scratch)
                if m0 | m1 | m2 | m3:
                    _emit(m0, r, 0, j, block, c0, scratch, out_j, out_g, counts)
                    _emit(m1, r + 1, 1, j, block, c0, scratch, out_j, out_g, counts)
                    _emit(m2, r + 2, 2, j, block, c0, scratch, out_j, out_g, counts)
                    _emit(m3, r + 3, 3, j, block, c0, scratch, out_j, out_g, counts)


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


@njit(parallel=True, cache=True)
def tail_walk(term, x, n, c, upper, lo, hi, k, rest):
    """Sum pmf terms from term = P(H = x) away from the mode, per value (see
    memtail.stats.hypergeom.upper_tail, whose numpy loop does the same operations)."""
    total = np.zeros(term.size)
    for i in prange(term.size):
        t, xi, ni, ci, up = term[i], x[i], n[i], c[i], upper[i]
        acc = 0.0
        while True:
            acc += t
            if up:
                ratio = ((ci - xi) * (ni - xi)) / ((xi + 1.0) * (k - ci - ni + xi + 1.0))
                xi += 1
                ended = xi > hi[i]
            else:
                ratio = (xi * (k - ci - ni + xi)) / ((ci - xi + 1.0) * (ni - xi + 1.0))
                xi -= 1
                ended = xi < lo[i]
            t = t * ratio
            if ended or t == 0 or t < rest * acc * (1.0 - ratio):
                break
        total[i] = acc
    return total
