"""``npz``: bring your own arrays in one ``.npz`` file.

The file holds ``x_train``, ``y_train``, ``x_test`` and ``y_test``. Inputs of any numeric
dtype become float32; their rank decides how models see them:

* 4-D: images (N, C, H, W). Arrays saved channels-last (N, H, W, C), recognisable by a
  last axis of 1 or 3 while the second axis is neither, are transposed;
* 3-D: single-channel images (N, H, W) -> (N, 1, H, W);
* 2-D: feature vectors (N, D).

Images are standardized per channel and vectors per feature with training-split
statistics (option ``normalize = false`` keeps the values as stored). Labels must be
integers in [0, num_classes); num_classes is ``max label + 1`` unless given.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from memtail.spec import DatasetSpec
from memtail.training.datasets.base import (
    MAX_CLASSES,
    Dataset,
    DatasetError,
    labels,
    parse_options,
    standardize,
)

_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _inputs(x: np.ndarray, key: str) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise DatasetError("dataset.path", f"{key} has dtype {x.dtype}; store numbers")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim not in (2, 4):
        raise DatasetError(
            "dataset.path",
            f"{key} has shape {x.shape}; store (N, D) vectors or (N, H, W) / (N, C, H, W) / "
            "(N, H, W, C) images",
        )
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DatasetError("dataset.path", f"{key} contains NaN or infinite values")
    return x


def _labels(y: np.ndarray, key: str, n: int) -> np.ndarray:
    if y.ndim != 1 or len(y) != n:
        raise DatasetError(
            "dataset.path", f"{key} has shape {y.shape}; store one integer label per example ({n})"
        )
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        y = y.astype(np.int64)  # integral floats, e.g. arrays written by MATLAB
    if y.dtype.kind not in "iu":
        raise DatasetError(
            "dataset.path", f"{key} must hold integer class labels, got dtype {y.dtype}"
        )
    if len(y) and y.min() < 0:
        raise DatasetError("dataset.path", f"{key} has negative labels; use 0..num_classes-1")
    return y.astype(np.int64)


def load_npz(spec: DatasetSpec, data_root: Path, download: bool) -> Dataset:
    opts = parse_options(spec, {"path": None, "normalize": True, "num_classes": 0})
    if not opts["path"]:
        raise DatasetError("dataset.path", "required for npz; set path = 'file.npz'")
    path = Path(opts["path"])
    if not path.is_absolute():
        path = Path(data_root) / path
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a bare .npy array
            raise ValueError("it holds one array, not named arrays (use numpy.savez)")
        with archive:
            raw = {key: archive[key] for key in _KEYS if key in archive.files}
    except FileNotFoundError:
        raise DatasetError(
            "dataset.path", f"{path} does not exist; relative paths resolve against the data root"
        ) from None
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DatasetError("dataset.path", f"cannot read {path} as .npz ({error})") from None
    missing = [key for key in _KEYS if key not in raw]
    if missing:
        raise DatasetError(
            "dataset.path",
            f"{path} lacks {', '.join(missing)}; store x_train, y_train, x_test, y_test",
        )

    x_train, x_test = _inputs(raw["x_train"], "x_train"), _inputs(raw["x_test"], "x_test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(
            "dataset.path",
            f"x_train examples have shape {x_train.shape[1:]} but x_test {x_test.shape[1:]}",
        )
    y_train = _labels(raw["y_train"], "y_train", len(x_train))
    y_test = _labels(raw["y_test"], "y_test", len(x_test))
    if len(y_train) < 2:
        raise DatasetError("dataset.path", f"{path} has {len(y_train)} train examples; need 2+")
    top = int(max(y_train.max(), y_test.max(initial=0))) + 1
    if top > MAX_CLASSES:
        raise DatasetError(
            "dataset.path",
            f"labels go up to {top - 1}, but they are class indexes 0..C-1 with C <= "
            f"{MAX_CLASSES:,}; map the {len(np.unique(y_train))} distinct train labels to 0..C-1",
        )
    num_classes = opts["num_classes"] or top
    if not top <= num_classes <= MAX_CLASSES:
        raise DatasetError(
            "dataset.num_classes",
            f"is {num_classes}; need one at least {top} (labels go up to {top - 1}) and at "
            f"most {MAX_CLASSES:,}",
        )
    if opts["normalize"]:
        tx_train, tx_test = standardize(x_train, x_test)
    else:
        tx_train, tx_test = torch.from_numpy(x_train), torch.from_numpy(x_test)
    return Dataset(
        name="npz",
        x_train=tx_train,
        y_train=labels(y_train),
        x_test=tx_test,
        y_test=labels(y_test),
        num_classes=num_classes,
        train_sources=[f"npz:train:{i}" for i in range(len(y_train))],
        test_sources=[f"npz:test:{i}" for i in range(len(y_test))],
    )
