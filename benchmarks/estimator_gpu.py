"""The GPU estimator benchmark: memtail's Triton pair scan, side by side.

Two sizes, each in one run:

* paper: k = 4,000 trials, 50,000 train x 10,000 test (CIFAR-100), threshold 0.15 over
  all 5 x 10^8 pairs. Timed alternately (medians of ``--repeat``): the thresholded
  influence pairs with ``backend="cuda"``; on the same GPU the plain product ``M.T @ T``
  in float32 (TF32 off) and in bf16 (tensor cores); and memtail's CPU kernel
  (``backend="numba"``) on this machine's cores. The GPU pairs must equal the CPU
  kernel's exactly (every field); the run stops if they differ.
* imagenet: k = 2,000 trials, 1,281,167 train x 50,000 test (6.4 x 10^10 pairs):
  ``influence_pairs(backend="cuda")`` end to end, and the CPU kernel on a block of
  ``--cpu-rows`` train rows, extrapolated to all rows (stated as such).

Trials are random bits made on the device (subsets at 70%, per-example accuracies
0.2-0.95) with ``--planted`` test examples copying a train example's subset bits, so that
some pairs pass; they are packed exactly as ``TrialBits`` holds outcomes loaded from
PostgreSQL. Kernel tiles (rows, columns, warps) are compared at paper size first.

    python benchmarks/estimator_gpu.py                       # on a GPU
    TRITON_INTERPRET=1 python benchmarks/estimator_gpu.py --small --device cpu   # smoke

The last line printed is the ImageNet-scale estimate's time on the GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memtail.stats import (
    gpuscan,  # noqa: E402
    kernels,  # noqa: E402
)
from memtail.stats.bits import TrialBits, trial_words  # noqa: E402
from memtail.stats.influence import InfluencePairs, PairRule, influence_pairs  # noqa: E402
from memtail.stats.memorization import MemCounts, memorization  # noqa: E402

# The CPU reference: the numba kernel, or the numpy path where numba does not import.
CPU = "numba" if kernels.compiled() is not None else "numpy"
TILES = ((64, 64, 4), (128, 64, 4), (64, 128, 4), (128, 128, 8))
FIELDS = ("train_index", "test_index", "infl", "std_err", "ci_low", "ci_high", "p_value")


def random_bits(n: int, k: int, p: torch.Tensor, seed: int, device: torch.device) -> TrialBits:
    """n examples x k trials, bit set with probability p (per example), packed as stored."""
    gen = torch.Generator(device=device).manual_seed(seed)
    width = trial_words(k) * 64
    weights = (2 ** torch.arange(8, device=device)).to(torch.int16)
    words = np.empty((n, trial_words(k)), dtype=np.uint64)
    chunk = max(1, 2**28 // width)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        bits = torch.zeros((hi - lo, width), dtype=torch.int16, device=device)
        bits[:, :k] = torch.rand((hi - lo, k), generator=gen, device=device) < p[lo:hi, None]
        packed = (bits.view(hi - lo, width // 8, 8) * weights).sum(-1).to(torch.uint8)
        words[lo:hi] = packed.cpu().numpy().view("<u8")
    return TrialBits(words, k)


def trials(
    args: argparse.Namespace, k: int, n_train: int, n_test: int, device: torch.device
) -> tuple[TrialBits, TrialBits]:
    gen = torch.Generator().manual_seed(args.seed)
    m = random_bits(n_train, k, torch.full((n_train,), 0.7, device=device), args.seed, device)
    acc = (0.2 + 0.75 * torch.rand(n_test, generator=gen)).to(device)
    t = random_bits(n_test, k, acc, args.seed + 1, device)
    planted = min(args.planted, n_test, n_train // 7)
    words = t.words.copy()
    words[:planted] = m.words[: 7 * planted : 7]  # test j right exactly when train 7j trained
    return m, TrialBits(words, k)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def same(a: InfluencePairs, b: InfluencePairs) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True) for f in FIELDS
    )


def gemm(
    m: TrialBits, t: TrialBits, dtype: torch.dtype, device: torch.device
) -> Callable[[], torch.Tensor]:
    mm = torch.from_numpy(m.to_bool()).to(device, dtype)
    tt = torch.from_numpy(t.to_bool()).to(device, dtype)
    return lambda: mm.T @ tt


def paper(args: argparse.Namespace, device: torch.device) -> None:
    k, n_train, n_test = (300, 600, 200) if args.small else (4000, 50_000, 10_000)
    m, t = trials(args, k, n_train, n_test, device)
    print(f"paper scale: k={k}, {n_train} train x {n_test} test, threshold {args.threshold}")
    run = lambda backend, **kw: influence_pairs(  # noqa: E731
        m, t, PairRule(threshold=args.threshold), backend=backend, device=str(device), **kw
    )
    cpu_s, reference = timed(lambda: run(CPU), device)
    gpu_s, pairs = timed(lambda: run("cuda"), device)  # includes Triton's compile
    if not same(pairs, reference):
        sys.exit(f"MISMATCH: cuda {len(pairs)} pairs vs {CPU} {len(reference)}")
    print(f"  cuda pairs == {CPU} pairs: {len(pairs)} pairs (first call {gpu_s:.2f} s)")
    if device.type != "cuda":
        return
    default = gpuscan.TILE
    for tile in TILES:
        gpuscan.TILE = tile
        times = [timed(lambda: run("cuda"), device)[0] for _ in range(3)]
        print(f"  tile {tile}: {statistics.median(times) * 1e3:8.1f} ms (end to end)")
    gpuscan.TILE = default
    torch.backends.cuda.matmul.allow_tf32 = False
    products = {
        "fp32": gemm(m, t, torch.float32, device),
        "bf16": gemm(m, t, torch.bfloat16, device),
    }
    seconds: dict[str, list[float]] = {"memtail cuda": [], f"memtail {CPU} (CPU)": []}
    seconds.update({f"GEMM {name}": [] for name in products})
    for product in products.values():
        timed(product, device)  # warm-up: cuBLAS handles and heuristics
    for _ in range(args.repeat):
        seconds["memtail cuda"].append(timed(lambda: run("cuda"), device)[0])
        for name, product in products.items():
            seconds[f"GEMM {name}"].append(timed(product, device)[0])
        seconds[f"memtail {CPU} (CPU)"].append(timed(lambda: run(CPU), device)[0])
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    for name, s in medians.items():
        print(f"  {name:22s}: {s * 1e3:9.1f} ms (median of {args.repeat})")
    for name in products:
        ratio = medians["memtail cuda"] / medians[f"GEMM {name}"]
        print(f"  memtail cuda / GEMM {name} on the same GPU: {ratio:.3f}x")
    print(f"  memtail cuda vs {CPU} on {torch.get_num_threads()} CPU threads: "
          f"{medians[f'memtail {CPU} (CPU)'] / medians['memtail cuda']:.1f}x faster")  # fmt: skip


def imagenet(args: argparse.Namespace, device: torch.device) -> float:
    k, n_train, n_test = (200, 1000, 300) if args.small else (2000, 1_281_167, 50_000)
    cpu_rows = min(args.cpu_rows, n_train // 2)
    m, t = trials(args, k, n_train, n_test, device)
    print(f"imagenet scale: k={k}, {n_train} train x {n_test} test")
    counts = MemCounts(k, m.counts(), m.counts(), m.counts())  # shapes only: time the maths
    mem_s, _ = timed(lambda: memorization(counts), device)
    total, pairs = timed(
        lambda: influence_pairs(
            m, t, PairRule(threshold=args.threshold), backend="cuda", device=str(device)
        ),
        device,
    )
    block = TrialBits(np.ascontiguousarray(m.words[:cpu_rows]), k)
    cpu_s, cpu_pairs = timed(
        lambda: influence_pairs(block, t, PairRule(threshold=args.threshold), backend=CPU), device
    )
    gpu_block_s, gpu_pairs = timed(
        lambda: influence_pairs(
            block, t, PairRule(threshold=args.threshold), backend="cuda", device=str(device)
        ),
        device,
    )
    if not same(gpu_pairs, cpu_pairs):
        sys.exit(f"MISMATCH on the block: cuda {len(gpu_pairs)} vs {CPU} {len(cpu_pairs)}")
    print(f"  influence pairs, cuda, all rows : {total:8.2f} s ({len(pairs)} pairs)")
    print(f"  memorization, every train example: {mem_s:8.2f} s")
    print(f"  block of {cpu_rows} rows: {CPU} {cpu_s:.2f} s, cuda {gpu_block_s:.3f} s (equal)")
    print(f"  {CPU} extrapolated to all rows: {cpu_s * n_train / cpu_rows:8.1f} s "
          f"on {torch.get_num_threads()} CPU threads")  # fmt: skip
    return total + mem_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="tiny sizes (CPU smoke run)")
    parser.add_argument("--threshold", type=float, default=0.15)
    parser.add_argument("--planted", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cpu-rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    paper(args, device)
    seconds = imagenet(args, device)
    print(f"ImageNet-scale estimate (memorization + influence pairs) on {device}: {seconds:.1f} s")


if __name__ == "__main__":
    main()
