"""Scanning train x test pairs on a GPU: the numba kernels' popcount rule, in Triton.

Same contract as ``memtail.stats.scan.kernel_scan``: the pairs rows x cols whose count
G[i, j] = popcount(M_i & T_j) (trials whose subset held train example i and whose model
got test example j right) reaches h_min[code(n_in(i)), code(S_j)], returned as (i, j, G).

Each program of the kernel takes a tile of train rows x test columns, adds up the
popcounts of their packed trial words (32-bit halves of ``TrialBits`` words, word-major
so that a tile's loads are contiguous), looks the bound up in h_min and writes G where it
passes and -1 elsewhere into a block buffer on the device; ``torch.nonzero`` then picks
the passing pairs, so only they cross back to the host. G is never kept: the buffer is
reused block after block.

Why Triton: it ships with PyTorch's CUDA builds (no new dependency), compiles for the GPU
it runs on, and its interpreter (``TRITON_INTERPRET=1``) runs the same kernel on CPU
tensors, which is how the tests check it on machines without a GPU. The interpreter has
no ``popc``, so there the kernel counts bits with shifts and masks (the hardware
instruction on a GPU); both branches are checked against the reference.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from memtail.stats.bits import TrialBits
from memtail.stats.scan import Collect, Found, collect_all

# Bytes of one block's output buffer on the device: large enough that a launch fills the
# GPU many times over, small next to a GPU's memory, and below 2**31 elements so that
# the kernel's int32 offsets cannot overflow.
_BLOCK_BYTES = 1 << 30
# One program's (train rows, test columns, warps); benchmarks/estimator_gpu.py compares.
TILE = (64, 64, 4)


class GpuScanUnavailable(RuntimeError):
    """No usable GPU or Triton: the message says what is missing and what to use instead."""


try:
    import triton
    import triton.language as tl
    from triton.language.extra import libdevice
except ImportError:  # pragma: no cover - PyTorch's CUDA builds ship triton
    triton = None


def _kernel() -> Any:
    if triton is None:  # pragma: no cover
        raise GpuScanUnavailable(
            "backend 'cuda' needs triton; install PyTorch's CUDA build, or use backend='numba'"
        )
    return _pass_tile


if triton is not None:
    # No annotations on kernel parameters but tl.constexpr: Triton resolves them as globals.

    @triton.jit
    def _popcount(x, hardware: tl.constexpr):
        if hardware:
            return libdevice.popc(x)
        u = x.to(tl.uint32, bitcast=True)  # logical shifts
        u = u - ((u >> 1) & 0x55555555)
        u = (u & 0x33333333) + ((u >> 2) & 0x33333333)
        u = (u + (u >> 4)) & 0x0F0F0F0F
        return ((u * 0x01010101) >> 24).to(tl.int32)

    @triton.jit
    def _pass_tile(
        a_ptr,  # (n_words, n_rows) int32: the block's train rows, word-major
        b_ptr,  # (n_words, n_cols) int32: the test columns, word-major
        row_code_ptr,  # (n_rows,) int32: code of n_in per row
        col_code_ptr,  # (n_cols,) int32: code of S per column
        h_ptr,  # (n_row_codes, h_stride) int32: h_min
        out_ptr,  # (n_rows, n_cols) int16/int32: G where it passes, else -1
        n_rows,
        n_cols,
        n_words,
        h_stride,
        BM: tl.constexpr,
        BN: tl.constexpr,
        HARDWARE_POPC: tl.constexpr,
    ):
        rows = tl.program_id(0) * BM + tl.arange(0, BM)
        cols = tl.program_id(1) * BN + tl.arange(0, BN)
        row_ok = rows < n_rows
        col_ok = cols < n_cols
        g = tl.zeros((BM, BN), dtype=tl.int32)
        for w in range(n_words):
            a = tl.load(a_ptr + w * n_rows + rows, mask=row_ok, other=0)
            b = tl.load(b_ptr + w * n_cols + cols, mask=col_ok, other=0)
            g += _popcount(a[:, None] & b[None, :], HARDWARE_POPC)
        row_code = tl.load(row_code_ptr + rows, mask=row_ok, other=0)
        col_code = tl.load(col_code_ptr + cols, mask=col_ok, other=0)
        ok = row_ok[:, None] & col_ok[None, :]
        h = tl.load(h_ptr + row_code[:, None] * h_stride + col_code[None, :], mask=ok, other=0)
        out = tl.where(g >= h, g, -1)
        offsets = rows[:, None] * n_cols + cols[None, :]
        tl.store(out_ptr + offsets, out.to(out_ptr.dtype.element_ty), mask=ok)


def _device(name: str) -> Any:
    import torch

    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GpuScanUnavailable(
            f"backend 'cuda' asked for {name} but torch sees no CUDA device; "
            "use backend='numba' or 'auto'"
        )
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise GpuScanUnavailable(
            "backend 'cuda' on the CPU runs only under TRITON_INTERPRET=1 (tests); "
            "use backend='numba' or 'auto'"
        )
    if device.type not in ("cuda", "cpu"):
        raise GpuScanUnavailable(f"backend 'cuda' needs a CUDA device; got {name!r}")
    return device


def _word_major(words: np.ndarray) -> np.ndarray:
    """(n, w) uint64 example-major words to (2w, n) int32, word-major (little-endian halves)."""
    return np.ascontiguousarray(words.astype("<u8", copy=False).view(np.int32).T)


def cuda_scan(
    m: TrialBits,
    t: TrialBits,
    rows: np.ndarray,
    cols: np.ndarray,
    n_codes: np.ndarray,
    s_codes: np.ndarray,
    h_min: np.ndarray,
    block_rows: int | None,
    collect: Collect = collect_all,
    device: str = "cuda",
) -> Found:
    """GPU path: popcounts of packed words against h_min, block by block on ``device``."""
    import torch

    kernel = _kernel()
    dev = _device(device)
    words = 2 * m.words.shape[1]
    # G <= k fits int16 up to 32,767 trials: half the buffer's bytes.
    out_dtype = torch.int16 if m.n_trials < 2**15 else torch.int32
    b = torch.from_numpy(_word_major(t.words[cols])).to(dev)
    col_code = torch.from_numpy(s_codes[cols].astype(np.int32)).to(dev)
    h = torch.from_numpy(np.ascontiguousarray(h_min, dtype=np.int32)).to(dev)
    step = block_rows or max(1, _BLOCK_BYTES // (out_dtype.itemsize * max(1, cols.size)))
    step = max(1, min(step, rows.size, (2**31 - 1) // max(1, cols.size)))
    out = torch.empty((step, cols.size), dtype=out_dtype, device=dev)
    bm, bn, warps = TILE
    found = []
    for lo in range(0, rows.size, step):
        r = rows[lo : lo + step]
        a = torch.from_numpy(_word_major(m.words[r])).to(dev)
        row_code = torch.from_numpy(n_codes[r].astype(np.int32)).to(dev)
        grid = (-(-r.size // bm), -(-cols.size // bn))
        kernel[grid](
            a, b, row_code, col_code, h, out, r.size, cols.size, words, h.shape[1],
            BM=bm, BN=bn, HARDWARE_POPC=dev.type == "cuda", num_warps=warps,
        )  # fmt: skip
        block = out[: r.size]
        where = torch.nonzero(block >= 0)
        g = block[where[:, 0], where[:, 1]]
        li, jj, g = (x.cpu().numpy() for x in (where[:, 0], where[:, 1], g))
        found.append(collect(r[li], cols[jj], g.astype(np.int64)))
    return tuple(np.concatenate(parts) for parts in zip(*found, strict=True))
