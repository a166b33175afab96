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

import math
import zipfile
from pathlib import Path

import numpy as np
import torch

from memtail.specification import DatasetSpec
from memtail.training.datasets.base import (
    MAX_CLASSES,
    MAX_VALUES,
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


def _headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's (shape, dtype) from its ``.npy`` header, read from the zip member
    without reading the data: a header may claim more than memory holds, and numpy would
    allocate it before reading a byte. Deflated members stream through zipfile alike."""
    found = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            key = member.removesuffix(".npy")
            if key not in _KEYS:
                continue
            with archive.open(member) as stream:
                version = np.lib.format.read_magic(stream)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
                else:  # 3.0 only marks field names beyond latin-1: a record dtype
                    raise ValueError(f"{key} has .npy format {version}; store plain arrays")
            found[key] = (tuple(shape), dtype)
    return found


def _check_headers(headers: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """Shapes, dtypes and sizes that can never train, refused before any array is read."""
    for key in ("x_train", "x_test"):
        shape, dtype = headers[key]
        if dtype.kind == "b":
            raise DatasetError(
                "dataset.path",
                f"{key} holds booleans; store the pixel or feature values as numbers "
                "(e.g. x.astype('uint8'))",
            )
        if dtype.kind not in "iuf":
            raise DatasetError("dataset.path", f"{key} has dtype {dtype}; store numbers")
        if len(shape) < 2 or 0 in shape[1:]:
            raise DatasetError(
                "dataset.path",
                f"{key} has shape {shape}; store (N, D) vectors or (N, H, W) / (N, C, H, W) "
                "/ (N, H, W, C) images with no empty axis",
            )
        values = math.prod(shape)
        if values > MAX_VALUES:
            raise DatasetError(
                "dataset.path",
                f"{key} has shape {shape}, {values:,} values; at most {MAX_VALUES:,} fit, "
                "since each split is held in memory as float32: store fewer or smaller examples",
            )
    for key in ("y_train", "y_test"):
        shape, _ = headers[key]
        n = headers["x" + key[1:]][0][0]
        if shape != (n,):
            raise DatasetError(
                "dataset.path",
                f"{key} has shape {shape}; store one integer label per example ({n})",
            )
    if headers["x_test"][0][0] == 0:
        raise DatasetError(
            "dataset.path",
            "x_test has no examples; influence and accuracy are measured on test examples",
        )


def _check_classes(y_train: np.ndarray, y_test: np.ndarray) -> None:
    present = np.unique(y_train)
    if len(present) < 2:
        raise DatasetError(
            "dataset.path",
            f"y_train has a single class ({present[0]}); a classifier needs two or more",
        )
    unseen = np.setdiff1d(np.unique(y_test), present)
    if len(unseen):
        shown = ", ".join(str(c) for c in unseen[:5]) + (", ..." if len(unseen) > 5 else "")
        raise DatasetError(
            "dataset.path",
            f"y_test has labels that never occur in y_train ({shown}); a model cannot learn "
            "them: drop those test examples or add train examples of them",
        )


def load_npz(spec: DatasetSpec, data_root: Path, download: bool) -> Dataset:
    opts = parse_options(spec, {"path": None, "normalize": True, "num_classes": 0})
    if not opts["path"]:
        raise DatasetError("dataset.path", "required for npz; set path = 'file.npz'")
    path = Path(opts["path"])
    if not path.is_absolute():
        path = Path(data_root) / path
    try:
        headers = _headers(path)
        missing = [key for key in _KEYS if key not in headers]
        if missing:
            raise DatasetError(
                "dataset.path",
                f"{path} lacks {', '.join(missing)}; store x_train, y_train, x_test, y_test",
            )
        _check_headers(headers)
        with np.load(path, allow_pickle=False) as archive:
            raw = {key: archive[key] for key in _KEYS}
    except FileNotFoundError:
        raise DatasetError(
            "dataset.path", f"{path} does not exist; relative paths resolve against the data root"
        ) from None
    except IsADirectoryError:
        raise DatasetError("dataset.path", f"{path} is a folder; give the .npz file") from None
    except DatasetError:
        raise
    except zipfile.BadZipFile:  # e.g. a bare .npy array
        raise DatasetError(
            "dataset.path", f"{path} is not an .npz archive; write it with numpy.savez"
        ) from None
    except (OSError, ValueError, EOFError) as error:
        raise DatasetError("dataset.path", f"cannot read {path} as .npz ({error})") from None

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
    _check_classes(y_train, y_test)
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
