"""A probe experiment's features artifact: what it holds, and how it is written and read.

The artifact ``features`` is one ``.npy`` array of float16, shape (n_train + n_test, d):
every train example's features, then every test example's, in example order. ``.npy`` so
that a researcher can fetch it and ``np.load`` it without memtail; float16 because
features for a probe lose nothing that matters at half precision, and halve what an
ImageNet-size experiment stores. Both directions stream: the writer turns blocks of rows
into bytes as the network produces them, the reader fills one preallocated array, so
neither holds the array twice.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from memtail.records import Experiment
from memtail.store.artifacts import Staged, stage_artifact
from memtail.store.engine import Engine
from memtail.store.retrieval import read_artifact

#: The artifact's name.
FEATURES = "features"
_DTYPE = np.dtype("<f2")
# Bytes read before the header is parsed; a .npy header is at most a few hundred bytes.
_HEADER_BYTES = 4096


class FeaturesError(RuntimeError):
    """The stored features do not fit the experiment; the message says how."""


def encode(blocks: Iterable[np.ndarray], rows: int) -> Iterator[bytes]:
    """The .npy bytes of ``rows`` rows arriving as ``blocks`` of rows (the first block
    fixes the width). Raises FeaturesError if the blocks hold another number of rows."""
    blocks = iter(blocks)
    first = next(blocks, None)
    if first is None or first.ndim != 2:
        raise FeaturesError("the network produced no 2-D features")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": _DTYPE.str, "fortran_order": False, "shape": (rows, first.shape[1])}
    )
    yield header.getvalue()
    seen = 0
    for block in (first, *blocks):
        seen += len(block)
        yield np.ascontiguousarray(block, dtype=_DTYPE).tobytes()
    if seen != rows:
        raise FeaturesError(f"the network produced features of {seen} examples, not {rows}")


def decode(parts: Iterable[bytes]) -> np.ndarray:
    """The array of .npy bytes arriving in ``parts``, filled in place as they arrive."""
    parts = iter(parts)
    head = bytearray()
    while len(head) < _HEADER_BYTES:
        part = next(parts, None)
        if part is None:
            break
        head += part
    stream = io.BytesIO(bytes(head))
    try:
        np.lib.format.read_magic(stream)
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    except ValueError as error:
        raise FeaturesError(f"the features artifact is no .npy array: {error}") from None
    if fortran or dtype != _DTYPE or len(shape) != 2:
        raise FeaturesError(f"the features artifact holds {dtype} {shape}, not float16 rows")
    out = np.empty(shape, dtype=_DTYPE)
    flat = out.reshape(-1).view(np.uint8)
    filled = 0

    def put(data: bytes | memoryview) -> None:
        nonlocal filled
        if filled + len(data) > flat.size:
            raise FeaturesError("the features artifact holds more bytes than its header says")
        flat[filled : filled + len(data)] = np.frombuffer(data, dtype=np.uint8)
        filled += len(data)

    put(memoryview(head)[stream.tell() :])
    for part in parts:
        put(part)
    if filled != flat.size:
        raise FeaturesError(
            f"the features artifact ends after {filled} of {flat.size} bytes of features"
        )
    return out


def stage_features(
    engine: Engine,
    experiment: Experiment,
    blocks: Iterable[np.ndarray],
    *,
    folder: Path | None,
    writer: str,
) -> Staged:
    """Write the feature trial's features, staged: visible once its store completes them."""
    rows = experiment.n_train + experiment.n_test
    return stage_artifact(
        engine, experiment.id, FEATURES, encode(blocks, rows), folder=folder, writer=writer
    )


def load_features(
    engine: Engine, experiment: Experiment, *, folder: Path | None
) -> tuple[np.ndarray, np.ndarray]:
    """The experiment's (train, test) features, checked against its example counts."""
    array = decode(read_artifact(engine, experiment.id, FEATURES, folder=folder))
    if len(array) != experiment.n_train + experiment.n_test:
        raise FeaturesError(
            f"the features of {experiment.name!r} have {len(array)} rows; the experiment has "
            f"{experiment.n_train} + {experiment.n_test} examples"
        )
    return array[: experiment.n_train], array[experiment.n_train :]
