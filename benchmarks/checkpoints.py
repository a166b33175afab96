"""What checkpoints cost: their size, and the time to save one against the training it
protects, for ResNet-18 on CIFAR-shaped data (3 x 32 x 32, 10 classes, SGD with
momentum).

On the machine it runs on (CPU here, or a GPU with ``--device cuda``), one timed epoch of
``--images`` random images measures the training rate; a checkpoint is then captured,
encoded and stored in a fresh SQLite artifact store (the embedded default), or in the
empty database ``--database-url`` names (PostgreSQL writes ~4x slower per byte: README,
Artifacts), ``--repeats`` times, alternating with training steps. The overhead at an
interval is (save seconds) / (training seconds between saves): at ``checkpoint_every =
"auto"`` (every 10 minutes) and at every epoch of a full 50,000-image CIFAR epoch,
extrapolated from the measured rate.

    python benchmarks/checkpoints.py [--device cpu] [--images 512] [--repeats 5]
        [--database-url postgresql+psycopg2://postgres@127.0.0.1/empty]
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memtail.records import ExampleSet
from memtail.specification import (  # noqa: E402
    AUTO_CHECKPOINT_SECONDS,
    ModelSpec,
    TrainingSpec,
    checkpoint_interval,
    load_spec,
)
from memtail.store import checkpoints, migrate  # noqa: E402
from memtail.store.engine import make_engine  # noqa: E402
from memtail.store.experiments import create_experiment  # noqa: E402
from memtail.store.trials import claim_next  # noqa: E402
from memtail.training.datasets import Dataset  # noqa: E402
from memtail.training.snapshot import Checkpointing, Preempted, encode  # noqa: E402
from memtail.training.trainer import Trainer  # noqa: E402

CIFAR_EPOCH = 50_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--database-url", help="an empty database to store them in (default: a scratch SQLite)"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(args.images, 3, 32, 32)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, args.images).astype(np.int64))
    data = Dataset("cifar-shaped", x, y, x[:64], y[:64], num_classes=10)
    trainer = Trainer(data, args.device, args.threads)
    model, recipe = ModelSpec("resnet18"), TrainingSpec(epochs=1, batch_size=128, flip=True, crop=4)
    subset = np.ones(args.images, dtype=bool)
    trainer.run(model, recipe, subset, seed=0)  # warm up (allocations, kernels)
    started = time.perf_counter()
    trainer.run(model, recipe, subset, seed=1)
    epoch_seconds = time.perf_counter() - started  # includes grading 64 + n images
    per_image = epoch_seconds / args.images

    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{scratch}/bench.db"
        migrate.upgrade(url)
        engine = make_engine(url)
        spec_path = Path(scratch) / "spec.toml"
        spec_path.write_text('name = "bench"\ntrials = 1\nsubset_fraction = 0.5\n')
        experiment = create_experiment(
            engine,
            load_spec(spec_path),
            ExampleSet(train_labels=y.numpy(), test_labels=y[:64].numpy()),
        ).experiment
        claim = claim_next(engine, experiment.id, "bench", 3600)
        assert claim is not None
        saves, sizes = [], []
        for repeat in range(args.repeats):
            # A state mid-epoch (after a few steps), as a preemption would save it.
            steps = iter(range(10**6))
            stop = functools.partial(lambda it: next(it) == 2, steps)
            try:
                trainer.run(
                    model,
                    recipe,
                    subset,
                    seed=repeat,
                    checkpointing=Checkpointing(save=lambda state: None, stop=stop),
                )
            except Preempted as stopped:
                state = stopped.state
            begin = time.perf_counter()
            data_bytes = encode(state)
            checkpoints.save(engine, claim, [data_bytes])
            saves.append(time.perf_counter() - begin)
            sizes.append(len(data_bytes))
        engine.dispose()
    save = float(np.median(saves))
    full_epoch = per_image * CIFAR_EPOCH
    auto = checkpoint_interval("auto")[1]
    assert auto == AUTO_CHECKPOINT_SECONDS
    print(f"device {args.device}, torch threads {args.threads}")
    print(f"checkpoint size: {np.median(sizes) / 2**20:.1f} MiB (model, optimizer, streams)")
    where = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"save (capture, encode, store in {where}): median {save:.3f} s of {args.repeats}")
    print(f"training: {per_image * 1000:.2f} ms per image; a 50,000-image epoch {full_epoch:.0f} s")
    print(f"overhead at auto (every {auto:.0f} s of training): {save / auto:.2%}")
    print(f"overhead at every epoch of 50,000 images: {save / full_epoch:.2%}")


if __name__ == "__main__":
    main()
