"""The popcount micro-kernel the compiled scans share (numba; optional, as their modules).

``block_masks`` counts, for ROWS train rows against LANES test columns of
``memtail.stats.bits.TrialBits`` words, G = sum over words of popcount(a & b) (the count
matrix M^T T of Feldman & Zhang's influence estimator) and which counts reach a per-pair
integer bound. Each test column has its own 64-bit lane (a train word broadcast against
8 columns' words), so a pair's count never needs a horizontal sum: per 8 pairs and 64
trials, one 512-bit AND, POPCNT and ADD. ``numba_kernels.threshold_pairs`` and
``numba_counts.threshold_tally`` run it over tiles of TILE rows x COLS columns.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

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
def block_masks(typingctx, a, bt, thr, r, j, codes, scratch):
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
