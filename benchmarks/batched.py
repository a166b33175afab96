"""The batched-training benchmark: trials per second of B subset models trained as one
computation (``memtail.training.batch``) against the same trials one at a time, side by
side.

The trials are the default spec's (digits, mlp of width 256, 15 epochs at batch 128,
m = 0.7 n), with seeds and subsets as an experiment would draw them. Each round trains
the same B trials both ways, alternating which goes first (A B, B A, ...), on one
thread as a worker does. Printed per round: seconds per trial each way; then the
arithmetic floor (multiply-adds per trial at the matrix products' measured rate), and
last the median ratio. Run from the repository root:

    python benchmarks/batched.py
    python benchmarks/batched.py --batch 8 --rounds 5 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="trials per batch (B)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of B trials each way")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from memtail.specification import DatasetSpec, ModelSpec, TrainingSpec
    from memtail.stats.subsets import subset_mask, training_seed
    from memtail.training.batch import BatchMember, train_batch
    from memtail.training.datasets import load_dataset
    from memtail.training.trainer import Trainer

    dataset = load_dataset(DatasetSpec("digits"), ".")
    trainer = Trainer(dataset, device=args.device, threads=args.threads)
    model, training = ModelSpec("mlp", width=256), TrainingSpec(epochs=15, batch_size=128)
    n, m = dataset.n_train, int(round(0.7 * dataset.n_train))

    def members(round_: int) -> list[BatchMember]:
        indices = range(round_ * args.batch, (round_ + 1) * args.batch)
        return [BatchMember(subset_mask(0, t, n, m), training_seed(0, t)) for t in indices]

    def sync() -> None:
        if trainer.cuda:
            torch.cuda.synchronize()

    def one_at_a_time(batch: list[BatchMember]) -> float:
        start = time.perf_counter()
        for member in batch:
            trainer.run(model, training, member.subset, member.seed)
        sync()
        return (time.perf_counter() - start) / len(batch)

    def batched(batch: list[BatchMember]) -> float:
        start = time.perf_counter()
        results = train_batch(trainer, model, training, batch)
        sync()
        if not all(hasattr(r, "train_correct") for r in results):
            raise SystemExit(f"a batched trial failed: {results}")
        return (time.perf_counter() - start) / len(batch)

    batched(members(0)[:2])  # warm-up: first calls pay for kernel selection
    print(f"digits mlp, B = {args.batch}, {args.device}, {args.threads} thread(s)")
    ratios = []
    for round_ in range(args.rounds):
        batch = members(round_)
        if round_ % 2 == 0:
            single, together = one_at_a_time(batch), batched(batch)
        else:
            together, single = batched(batch), one_at_a_time(batch)
        ratios.append(single / together)
        print(
            f"round {round_ + 1}: one at a time {single * 1e3:7.1f} ms/trial, "
            f"batched {together * 1e3:7.1f} ms/trial, ratio {ratios[-1]:.2f}x"
        )
    print(_floor(dataset, trainer, training, m, args.batch))
    print(f"batched / one at a time: {statistics.median(ratios):.2f}x")


def _floor(dataset: object, trainer: object, training: object, m: int, batch: int) -> str:
    """Multiply-adds per trial (forward and backward: 3 products per layer and step) at
    the rate a batched product of the first hidden layer's shape runs here."""
    import torch

    widths = [int(np.prod(dataset.input_shape)), 256, 256, dataset.num_classes]  # type: ignore[attr-defined]
    steps = training.epochs * -(-m // training.batch_size)  # type: ignore[attr-defined]
    rows = training.batch_size  # type: ignore[attr-defined]
    flops = 3 * 2 * rows * steps * sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    device = trainer.device  # type: ignore[attr-defined]
    x = torch.randn(batch, rows, 256, device=device)
    w = torch.randn(batch, 256, 256, device=device)
    start, repeats = time.perf_counter(), 50
    for _ in range(repeats):
        torch.bmm(x, w)
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = repeats * 2 * batch * rows * 256 * 256 / (time.perf_counter() - start)
    return (
        f"floor: {flops / 1e9:.2f} Gflop per trial at {rate / 1e9:.0f} Gflop/s "
        f"= {flops / rate * 1e3:.1f} ms/trial"
    )


if __name__ == "__main__":
    main()
