"""Image datasets: sklearn's bundled digits, torchvision's standard sets, an ImageFolder.

Every loader converts the whole split to one float32 tensor up front (from the datasets'
``.data``/``.targets`` arrays where torchvision has them), because trials train on
``x_train[subset]`` with the data resident on the device; a DataLoader per trial would
cost more than training the small models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from memtail.specification import DatasetSpec
from memtail.training.datasets.base import (
    MAX_VALUES,
    Dataset,
    DatasetError,
    check_bound,
    check_seed,
    labels,
    parse_options,
    standardize,
)

#: imagefolder's largest ``image_size``: 1,000 images of 1024 px are already 12 GB.
MAX_IMAGE_SIZE = 1024

# Published per-channel statistics of the training sets, in [0, 1] pixel units.
_TORCHVISION = {
    # name: (torchvision class, files it looks for under the root, mean, std)
    "mnist": ("MNIST", "MNIST/raw/", (0.1307,), (0.3081,)),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw/", (0.2860,), (0.3530,)),
    "cifar10": (
        "CIFAR10",
        "cifar-10-batches-py/",
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
    ),
    "cifar100": (
        "CIFAR100",
        "cifar-100-python/",
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
    ),
}


def load_digits(spec: DatasetSpec, data_root: Path, download: bool) -> Dataset:
    """The 1,797 real 8x8 handwritten digits bundled with scikit-learn (no download).

    The split is a stratified random permutation from ``seed``: each class contributes
    ``round(test_fraction * class size)`` test examples, so the class balance of train and
    test matches the full set.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    opts = parse_options(spec, {"seed": 0, "test_fraction": 0.25})
    fraction = opts["test_fraction"]
    if not 0 < fraction < 1:
        raise DatasetError("dataset.test_fraction", f"must be in (0, 1), got {fraction}")
    bunch = sklearn_digits()
    images = bunch.images.astype(np.float32)[:, None] / 16.0  # pixel values are 0..16
    y = bunch.target.astype(np.int64)
    rng = np.random.default_rng(check_seed(opts))
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        cut = int(round(fraction * len(members)))
        if not 0 < cut < len(members):
            # Every class needs train examples to learn it and test examples to measure it.
            raise DatasetError(
                "dataset.test_fraction",
                f"{fraction} leaves digit {c} with {cut} of its {len(members)} examples in "
                "the test set; need at least one in each split (e.g. 0.25)",
            )
        test[members[:cut]] = True
    train_idx, test_idx = np.flatnonzero(~test), np.flatnonzero(test)
    x_train, x_test = standardize(images[train_idx], images[test_idx])
    return Dataset(
        name="digits",
        x_train=x_train,
        y_train=labels(y[train_idx]),
        x_test=x_test,
        y_test=labels(y[test_idx]),
        num_classes=10,
        train_sources=[f"digits:{i}" for i in train_idx],
        test_sources=[f"digits:{i}" for i in test_idx],
    )


def _one_line(error: Exception, limit: int = 200) -> str:
    # torchvision's download errors list every mirror over several lines.
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _torchvision_split(name: str, root: Path, train: bool, download: bool) -> object:
    import torchvision

    cls_name, expected, _, _ = _TORCHVISION[name]
    cls = getattr(torchvision.datasets, cls_name)
    try:
        return cls(root=str(root), train=train, download=download)
    except RuntimeError as error:
        if download:
            raise DatasetError(
                "dataset.name",
                f"could not download {name} into {root} ({_one_line(error)}); check the "
                f"network or put the files there yourself (expected {expected})",
            ) from None
        raise DatasetError(
            "dataset.name",
            f"{name} not found under {root} (expected {expected}); download it with "
            "--download or set MEMTAIL_DATA_ROOT",
        ) from None
    except OSError as error:  # network errors while downloading, unreadable files
        raise DatasetError(
            "dataset.name", f"could not load {name} from {root} ({_one_line(error)})"
        ) from None


def load_torchvision(spec: DatasetSpec, data_root: Path, download: bool) -> Dataset:
    """MNIST, Fashion-MNIST, CIFAR-10 or CIFAR-100 from ``<data_root>/<name>``."""
    parse_options(spec, {})
    name = spec.name
    root = Path(data_root) / name
    _, _, mean, std = _TORCHVISION[name]
    arrays = []
    for train in (True, False):
        split = _torchvision_split(name, root, train, download)
        data = np.asarray(split.data)  # MNIST: uint8 tensor (N, H, W); CIFAR: (N, H, W, C)
        images = data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)
        arrays.append((images.astype(np.float32) / 255.0, np.asarray(split.targets)))
    (xa, ya), (xb, yb) = arrays
    x_train, x_test = standardize(xa, xb, mean, std)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=labels(ya),
        x_test=x_test,
        y_test=labels(yb),
        num_classes=10 if name != "cifar100" else 100,
        train_sources=[f"{name}:train:{i}" for i in range(len(ya))],
        test_sources=[f"{name}:test:{i}" for i in range(len(yb))],
    )


def load_imagefolder(spec: DatasetSpec, data_root: Path, download: bool) -> Dataset:
    """``<root>/train/<class>/*`` and ``<root>/test/<class>/*`` as RGB tensors.

    ``root`` is option ``path`` (relative paths resolve against the data root) or
    ``<data_root>/imagefolder``. Images are resized (shorter side) and center-cropped to
    ``image_size`` and all loaded into memory at once: about ``12 * image_size**2`` bytes
    per image, i.e. 50 MB per 1,000 images at 64 px. That suits datasets of up to some
    tens of thousands of images; larger ones need a streaming trainer.
    """
    import torchvision
    from torchvision import transforms

    opts = parse_options(spec, {"path": None, "image_size": 64})
    size = opts["image_size"]
    why = "every image is held in memory as 3 x image_size^2 float32 values"
    check_bound("dataset.image_size", size, 1, MAX_IMAGE_SIZE, why)
    root = Path(data_root) / (opts["path"] or "imagefolder")
    field_name = "dataset.path" if opts["path"] else "dataset.name"
    transform = transforms.Compose(
        [transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()]
    )
    splits = {}
    for split in ("train", "test"):
        folder = root / split
        if not folder.is_dir():
            raise DatasetError(
                field_name,
                f"imagefolder needs class folders under {root}/train and {root}/test "
                f"({folder} is missing); create them, or point dataset.path at yours (for "
                "example --set dataset.path=FOLDER)",
            )
        try:
            splits[split] = torchvision.datasets.ImageFolder(str(folder), transform=transform)
        except (FileNotFoundError, OSError) as error:
            raise DatasetError(field_name, f"cannot read {folder}: {error}") from None
    train, test = splits["train"], splits["test"]
    if len(train.classes) < 2:
        raise DatasetError(
            field_name,
            f"{root}/train has one class folder ({train.classes[0]}); a classifier needs two "
            "or more, one folder each",
        )
    values = (len(train) + len(test)) * 3 * size * size
    if values > MAX_VALUES:
        raise DatasetError(
            "dataset.image_size",
            f"{size} px makes the {len(train) + len(test):,} images {values:,} float32 "
            f"values, held in memory; at most {MAX_VALUES:,} fit: lower image_size",
        )
    if train.classes != test.classes:
        raise DatasetError(
            field_name,
            f"train and test class folders differ under {root} (train: {train.classes}, "
            f"test: {test.classes}); give both splits the same class folders",
        )

    def stack(folder: torchvision.datasets.ImageFolder) -> tuple[np.ndarray, np.ndarray]:
        images = np.empty((len(folder), 3, size, size), dtype=np.float32)
        for i in range(len(folder)):
            path = folder.samples[i][0]
            try:
                images[i] = folder[i][0].numpy()
            except OSError as error:
                raise DatasetError(field_name, f"cannot decode {path}: {error}") from None
        return images, np.asarray(folder.targets, dtype=np.int64)

    (xa, ya), (xb, yb) = stack(train), stack(test)
    x_train, x_test = standardize(xa, xb)
    return Dataset(
        name="imagefolder",
        x_train=x_train,
        y_train=labels(ya),
        x_test=x_test,
        y_test=labels(yb),
        num_classes=len(train.classes),
        train_sources=[Path(p).relative_to(root).as_posix() for p, _ in train.samples],
        test_sources=[Path(p).relative_to(root).as_posix() for p, _ in test.samples],
    )
