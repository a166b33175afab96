"""The GPU training benchmark: memtail's training path against a plain PyTorch loop.

Three trainings of the same number of epochs on CIFAR-shaped data:

* **plain**: ResNet-18 (CIFAR stem) fed by a torchvision DataLoader over CPU tensors with
  torchvision's RandomCrop(32, padding=4) and RandomHorizontalFlip, float32, the loop
  most PyTorch code uses;
* **memtail resnet18**: the same network through ``memtail.training.trainer.Trainer`` (data resident
  on the device, batched tensor augmentation, bf16 autocast and channels-last on CUDA);
* **memtail fastnet**: the airbench-class network through the same Trainer, at its own
  batch size of 1,024 (as airbench trains it).

``--variants`` picks memtail's configurations (eager, ``torch.compile``, CUDA graphs; see
``VARIANTS``); each runs a one-epoch trial first, as a worker's first trial would, which
compiles and lets cuDNN pick its kernels, and then the timed trial.

Each is timed per trial (train + grade every example). No CIFAR files can be downloaded
on our machines, so the default data are generated: 10 classes of smooth random colour
templates under noise and random shifts (every network here reaches 100% test accuracy
on them, so they compare speed, not accuracy). ``--cifar-root DIR``
uses real CIFAR-10 from DIR (torchvision layout, no download) and also prints test
accuracy (target >= 93% for fastnet on the full training set).

    python benchmarks/gpu_training.py                 # on a GPU: the measurement
    python benchmarks/gpu_training.py --small         # CPU smoke run of the same code path

The last two lines printed are the speed-up ratios of the fastest variant of each network
(targets: >= 3x and >= 10x).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memtail.specification import ModelSpec, TrainingSpec  # noqa: E402
from memtail.training.datasets import Dataset  # noqa: E402
from memtail.training.device import resolve_device  # noqa: E402
from memtail.training.networks import build_model  # noqa: E402
from memtail.training.trainer import Trainer  # noqa: E402


def synthetic_cifar(n_train: int, n_test: int, seed: int = 0) -> Dataset:
    """10 classes of smooth colour templates, shifted and noised per example."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(10, 3, 4, 4, generator=g)
    templates = F.interpolate(coarse, size=(32, 32), mode="bicubic", align_corners=False)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=g)
        x = templates[y] + 0.8 * torch.randn(n, 3, 32, 32, generator=g)
        shifts = torch.randint(-3, 4, (2,), generator=g).tolist()
        return torch.roll(x, shifts=shifts, dims=(2, 3)).float(), y

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return Dataset("synthetic-cifar", x_train, y_train, x_test, y_test, 10, None, None, None)


def real_cifar(root: str) -> Dataset:
    from memtail.specification import DatasetSpec
    from memtail.training.datasets import load_dataset

    return load_dataset(DatasetSpec("cifar10"), root)


def plain_loop(data: Dataset, training: TrainingSpec, device: torch.device) -> tuple[float, float]:
    """The common recipe: DataLoader, torchvision transforms, float32, no tricks."""
    from torch.utils.data import DataLoader, TensorDataset
    from torchvision.transforms import v2

    start = time.perf_counter()
    augment = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()])

    class Augmented(TensorDataset):
        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = super().__getitem__(i)
            return augment(x), y

    loader = DataLoader(
        Augmented(data.x_train, data.y_train),
        batch_size=training.batch_size,
        shuffle=True,
        num_workers=4 if device.type == "cuda" else 0,
        pin_memory=device.type == "cuda",
        drop_last=False,
        persistent_workers=device.type == "cuda",
    )
    model = build_model(ModelSpec("resnet18"), data.input_shape, 10).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=training.lr, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    total = training.epochs * len(loader)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, training.lr, total_steps=total)
    model.train()
    for _ in range(training.epochs):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    correct = 0
    with torch.no_grad():  # grade every train and test example, as a trial does
        for x_all, y_all in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
            for lo in range(0, len(x_all), 1024):
                predicted = model(x_all[lo : lo + 1024].to(device)).argmax(1).cpu()
                if x_all is data.x_test:
                    correct += int((predicted == y_all[lo : lo + 1024]).sum())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, correct / len(data.y_test)


def memtail_trial(
    trainer: Trainer, model: str, training: TrainingSpec, n_train: int
) -> tuple[float, float]:
    subset = np.ones(n_train, dtype=bool)  # the full training set, as the plain loop uses
    result = trainer.run(ModelSpec(model), training, subset, seed=0)
    return result.seconds, result.test_accuracy


# (label, network, compile mode, batch size or 0 for --batch-size), in the order run.
VARIANTS = {
    "r-eager": ("resnet18", "none", 0),
    "f-eager": ("fastnet", "none", 0),
    "f-eager-1024": ("fastnet", "none", 1024),
    "r-compile": ("resnet18", "default", 0),
    "f-compile-1024": ("fastnet", "default", 1024),
    "r-graphs": ("resnet18", "reduce-overhead", 0),
    "f-graphs-1024": ("fastnet", "reduce-overhead", 1024),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--small", action="store_true", help="tiny CPU-sized smoke run")
    parser.add_argument("--cifar-root", help="real CIFAR-10 (torchvision layout)")
    parser.add_argument("--epochs", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument(
        "--variants", default="r-eager,f-eager-1024", help=f"comma-separated: {', '.join(VARIANTS)}"
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.cifar_root:
        data = real_cifar(args.cifar_root)
    elif args.small:
        data = synthetic_cifar(512, 256)
    else:
        data = synthetic_cifar(50_000, 10_000)
    epochs = args.epochs or (1 if args.small else 10)
    batch = min(args.batch_size, 128) if args.small else args.batch_size
    specs = {
        "resnet18": TrainingSpec(epochs=epochs, batch_size=batch, lr=0.2, flip=True, crop=4),
        "fastnet": TrainingSpec(
            epochs=epochs,
            batch_size=batch,
            lr=0.2,
            flip=True,
            crop=2,
            label_smoothing=0.2,
            weight_decay=5e-4,
        ),
    }
    print(
        f"device {device}, {data.n_train} train / {data.n_test} test, {epochs} epochs, "
        f"batch {batch}, data: {data.name}"
    )
    trainers: dict[str, Trainer] = {}
    warm = Trainer(data, device=str(device), threads=torch.get_num_threads())
    memtail_trial(warm, "fastnet", TrainingSpec(epochs=1, batch_size=batch), data.n_train)
    plain_s, plain_acc = plain_loop(data, specs["resnet18"], device)
    print(f"plain DataLoader resnet18      : {plain_s:8.2f} s/trial  test acc {plain_acc:.3f}")
    best: dict[str, tuple[float, str]] = {}
    for label in args.variants.split(","):
        network, mode, batch_size = VARIANTS[label]
        if mode not in trainers:
            threads = torch.get_num_threads()
            trainers[mode] = Trainer(data, str(device), threads, compile_mode=mode)
        spec = dataclasses.replace(specs[network], batch_size=batch_size or batch)
        # The first trial of a network in a process compiles it (paid once per worker)
        # and picks cuDNN's kernels: one epoch of it, reported apart.
        first = dataclasses.replace(spec, epochs=1)
        first_s, _ = memtail_trial(trainers[mode], network, first, data.n_train)
        seconds, acc = memtail_trial(trainers[mode], network, spec, data.n_train)
        print(
            f"memtail {label:22s} : {seconds:8.2f} s/trial  test acc {acc:.3f}  "
            f"(first trial in the process: {first_s:.2f} s, {first.epochs} epochs)",
            flush=True,
        )
        if seconds < best.get(network, (float("inf"), ""))[0]:
            best[network] = (seconds, label)
    for network, target in (("resnet18", 3), ("fastnet", 10)):
        if network in best:
            seconds, label = best[network]
            print(
                f"speed-up memtail {network} ({label}) vs plain resnet18: "
                f"{plain_s / seconds:.2f}x (target >= {target})"
            )


if __name__ == "__main__":
    main()
