"""Dataset loaders: shapes, determinism, the long tail, and one-line errors for user mistakes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from memtail.specification import DatasetSpec
from memtail.training.datasets import DATASETS, Dataset, DatasetError, load_dataset


def synthetic(**options: object) -> Dataset:
    return load_dataset(DatasetSpec("synthetic-longtail", dict(options)), "unused")


def test_registry_names() -> None:
    assert {
        "synthetic-longtail",
        "digits",
        "mnist",
        "fashion-mnist",
        "cifar10",
        "cifar100",
        "imagefolder",
        "npz",
    } <= set(DATASETS)


def test_unknown_dataset_and_option() -> None:
    with pytest.raises(DatasetError, match="'dataset.name'.*choose one of"):
        load_dataset(DatasetSpec("nope"), "data")
    with pytest.raises(DatasetError, match="'dataset.bogus': unknown option.*valid options"):
        synthetic(bogus=1)
    with pytest.raises(DatasetError, match="'dataset.n_train': must be an integer"):
        synthetic(n_train="many")
    with pytest.raises(DatasetError, match="'dataset.label_noise'"):
        synthetic(label_noise=1.5)


def test_synthetic_is_deterministic() -> None:
    a, b = synthetic(), synthetic()
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_test, b.y_test)
    assert a.train_attributes == b.train_attributes
    c = synthetic(seed=1)
    assert not torch.equal(a.x_train, c.x_train)


def test_synthetic_shapes_and_defaults() -> None:
    ds = synthetic()
    assert (ds.n_train, ds.n_test, ds.input_shape, ds.num_classes) == (1000, 500, (32,), 10)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert set(ds.y_train.tolist()) == set(range(10))
    assert len(ds.train_attributes) == 1000 and ds.train_sources is None


def test_synthetic_has_a_long_tail() -> None:
    ds = synthetic()
    attrs = ds.train_attributes
    cluster = np.array([a["subpopulation"] for a in attrs])
    size = np.bincount(cluster)
    assert [a["subpopulation_size"] for a in attrs] == size[cluster].tolist()
    assert [a["singleton"] for a in attrs] == (size[cluster] == 1).tolist()
    seen = size[size > 0]
    singletons = int((seen == 1).sum())
    # Many clusters are seen once, yet a large share of examples sits in big clusters.
    assert singletons >= 80 and singletons / len(seen) >= 0.3
    assert (size[cluster] >= 10).mean() >= 0.3
    # Test examples come from the same clusters, including some singletons.
    test_cluster = np.array([a["subpopulation"] for a in ds.test_attributes])
    assert (size[test_cluster] == 1).sum() >= 10
    # Examples of one cluster share a label (no label noise by default).
    for c in np.flatnonzero(size >= 2)[:50]:
        assert len(set(ds.y_train[cluster == c].tolist())) == 1
    assert not any(a["noisy"] for a in attrs)


def test_synthetic_label_noise_flips_exactly_the_flagged_labels() -> None:
    clean, noisy = synthetic(), synthetic(label_noise=0.1)
    # Noise has its own random stream: inputs and test set are unchanged.
    assert torch.equal(clean.x_train, noisy.x_train) and torch.equal(clean.y_test, noisy.y_test)
    flags = np.array([a["noisy"] for a in noisy.train_attributes])
    changed = (clean.y_train != noisy.y_train).numpy()
    assert flags.sum() == 100
    assert np.array_equal(flags, changed)


def test_digits_split() -> None:
    ds = load_dataset(DatasetSpec("digits"), "unused")
    assert ds.x_train.shape == (1347, 1, 8, 8) and ds.x_test.shape == (450, 1, 8, 8)
    assert ds.num_classes == 10 and ds.y_train.dtype == torch.int64
    assert abs(float(ds.x_train.mean())) < 1e-4 and abs(float(ds.x_train.std()) - 1) < 1e-3
    # Stratified: every class is about a quarter test.
    train_counts = np.bincount(ds.y_train.numpy(), minlength=10)
    test_counts = np.bincount(ds.y_test.numpy(), minlength=10)
    assert np.all(np.abs(test_counts / (train_counts + test_counts) - 0.25) < 0.01)
    indices = [int(s.split(":")[1]) for s in ds.train_sources + ds.test_sources]
    assert sorted(indices) == list(range(1797))
    again = load_dataset(DatasetSpec("digits"), "unused")
    assert ds.train_sources == again.train_sources and torch.equal(ds.x_test, again.x_test)
    other = load_dataset(DatasetSpec("digits", {"seed": 1, "test_fraction": 0.5}), "unused")
    assert other.train_sources != ds.train_sources and other.n_test in range(895, 903)


def test_npz_nhwc_images_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (20, 6, 5, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, (4, 6, 5, 3), dtype=np.uint8)
    y_train, y_test = np.arange(20) % 4, np.array([0, 1, 2, 3], dtype=np.int32)
    np.savez(tmp_path / "d.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    # Relative paths resolve against the data root.
    ds = load_dataset(DatasetSpec("npz", {"path": "d.npz", "normalize": False}), tmp_path)
    assert ds.x_train.shape == (20, 3, 6, 5) and ds.x_train.dtype == torch.float32
    assert np.array_equal(ds.x_train.numpy(), x_train.transpose(0, 3, 1, 2).astype(np.float32))
    assert ds.y_test.tolist() == [0, 1, 2, 3] and ds.num_classes == 4
    normalized = load_dataset(DatasetSpec("npz", {"path": str(tmp_path / "d.npz")}), "elsewhere")
    means = normalized.x_train.mean(dim=(0, 2, 3))
    assert torch.allclose(means, torch.zeros(3), atol=1e-5)


def test_npz_vectors_and_grayscale(tmp_path: Path) -> None:
    vectors = {
        "x_train": np.ones((30, 7)),
        "y_train": np.arange(30) % 2,
        "x_test": np.ones((5, 7)),
        "y_test": np.arange(5) % 2,
    }
    np.savez(tmp_path / "v.npz", **vectors)
    ds = load_dataset(DatasetSpec("npz", {"path": "v.npz", "num_classes": 3}), tmp_path)
    assert ds.input_shape == (7,) and ds.num_classes == 3
    # A constant feature standardizes to zeros, not NaN.
    assert torch.equal(ds.x_train, torch.zeros(30, 7))
    gray = {**vectors, "x_train": np.zeros((30, 9, 9)), "x_test": np.zeros((5, 9, 9))}
    np.savez(tmp_path / "g.npz", **gray)
    assert load_dataset(DatasetSpec("npz", {"path": "g.npz"}), tmp_path).input_shape == (1, 9, 9)


def test_npz_errors(tmp_path: Path) -> None:
    base = {
        "x_train": np.zeros((4, 2)),
        "y_train": np.array([0, 1, 0, 1]),
        "x_test": np.zeros((2, 2)),
        "y_test": np.array([0, 1]),
    }
    np.savez(tmp_path / "bad.npz", **{**base, "y_train": np.array([0.0, 0.5, 1.0, 1.0])})
    with pytest.raises(DatasetError, match="'dataset.path': y_train must hold integer"):
        load_dataset(DatasetSpec("npz", {"path": "bad.npz"}), tmp_path)
    np.savez(tmp_path / "missing.npz", x_train=base["x_train"])
    with pytest.raises(DatasetError, match="lacks y_train, x_test, y_test"):
        load_dataset(DatasetSpec("npz", {"path": "missing.npz"}), tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(DatasetSpec("npz", {"path": "nothing.npz"}), tmp_path)
    with pytest.raises(DatasetError, match="'dataset.path': required"):
        load_dataset(DatasetSpec("npz"), tmp_path)
    # Integral floats (as some tools write labels) are accepted.
    np.savez(tmp_path / "floats.npz", **{**base, "y_train": np.array([0.0, 1.0, 0.0, 1.0])})
    assert load_dataset(DatasetSpec("npz", {"path": "floats.npz"}), tmp_path).num_classes == 2


def test_missing_torchvision_dataset_names_path_and_flag(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset(DatasetSpec("mnist"), tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "mnist") in message and "--download" in message
    assert message.startswith("spec field 'dataset.name'") and "\n" not in message


def _write_images(root: Path, split: str, classes: dict[str, int]) -> None:
    from PIL import Image

    rng = np.random.default_rng(len(split))
    for name, count in classes.items():
        folder = root / split / name
        folder.mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")


def test_imagefolder(tmp_path: Path) -> None:
    root = tmp_path / "imagefolder"
    _write_images(root, "train", {"cat": 3, "dog": 2})
    _write_images(root, "test", {"cat": 1, "dog": 1})
    ds = load_dataset(DatasetSpec("imagefolder", {"image_size": 8}), tmp_path)
    assert ds.x_train.shape == (5, 3, 8, 8) and ds.x_test.shape == (2, 3, 8, 8)
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1] and ds.num_classes == 2
    assert ds.train_sources[0] == "train/cat/0.png" and ds.test_sources[1] == "test/dog/0.png"

    other = tmp_path / "other"
    _write_images(other, "train", {"cat": 1, "dog": 1})
    _write_images(other, "test", {"cat": 1, "cow": 1})
    with pytest.raises(DatasetError, match="'dataset.path': train and test class folders"):
        load_dataset(DatasetSpec("imagefolder", {"path": "other"}), tmp_path)
    with pytest.raises(DatasetError, match="imagefolder needs"):
        load_dataset(DatasetSpec("imagefolder"), tmp_path / "empty")


def _write_idx(path: Path, array: np.ndarray) -> None:
    # IDX format: two zero bytes, type 0x08 (uint8), rank, big-endian int32 dims, data.
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_from_local_files(tmp_path: Path) -> None:
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 3)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    ds = load_dataset(DatasetSpec("mnist"), tmp_path)
    assert ds.x_train.shape == (6, 1, 28, 28) and ds.x_test.shape == (3, 1, 28, 28)
    assert ds.y_train.tolist() == [0, 1, 2, 3, 4, 5] and ds.num_classes == 10
    # Normalized with MNIST's published statistics, not this sample's.
    assert abs(float(ds.x_train.max()) - (1 - 0.1307) / 0.3081) < 1e-4
    assert ds.test_sources[2] == "mnist:test:2"
