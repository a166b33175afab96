"""The features artifact: a streamed .npy of float16 rows, round trip and refusals."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine

from memtail.specification import ExperimentKind
from memtail.store.artifacts import complete
from memtail.store.engine import transaction
from memtail.store.experiments import create_experiment
from memtail.store.retrieval import ArtifactCorrupt, ArtifactMissing
from memtail.work.features import FeaturesError, decode, encode, load_features, stage_features
from tests.helpers import tiny_examples, tiny_spec


def _blocks(array: np.ndarray, size: int) -> list[np.ndarray]:
    return [array[lo : lo + size] for lo in range(0, len(array), size)]


def test_encode_is_an_npy_file_and_decode_reads_it_back() -> None:
    rng = np.random.default_rng(0)
    array = rng.normal(size=(103, 17)).astype(np.float16)
    data = b"".join(encode(_blocks(array, 10), rows=103))
    assert np.array_equal(np.load(io.BytesIO(data)), array)  # readable without memtail
    # Parts of any size, even splitting the header.
    pieces = [data[i : i + 7] for i in range(0, len(data), 7)]
    assert np.array_equal(decode(pieces), array)


def test_wrong_row_counts_and_damaged_bytes_are_refused() -> None:
    array = np.ones((10, 3), dtype=np.float16)
    with pytest.raises(FeaturesError, match="features of 10 examples, not 12"):
        b"".join(encode(_blocks(array, 4), rows=12))
    data = b"".join(encode([array], rows=10))
    with pytest.raises(FeaturesError, match="ends after"):
        decode([data[:-5]])
    with pytest.raises(FeaturesError, match="more bytes"):
        decode([data + b"extra"])
    with pytest.raises(FeaturesError, match="no .npy array"):
        decode([b"not a numpy file at all"])


@pytest.mark.parametrize("in_folder", [False, True])
def test_features_round_trip_through_the_store(
    engine: Engine, tmp_path: Path, in_folder: bool
) -> None:
    spec = dataclasses.replace(tiny_spec("feat", 3), kind=ExperimentKind.PROBE)
    exp = create_experiment(engine, spec, tiny_examples(20, 10)).experiment
    folder = tmp_path / "artifacts" if in_folder else None
    features = np.random.default_rng(1).normal(size=(30, 5)).astype(np.float16)
    staged = stage_features(engine, exp, _blocks(features, 8), folder=folder, writer="w")
    with pytest.raises(ArtifactMissing):
        load_features(engine, exp, folder=folder)  # staged, not complete
    with transaction(engine) as conn:
        complete(conn, staged)
    train, test = load_features(engine, exp, folder=folder)
    assert np.array_equal(train, features[:20]) and np.array_equal(test, features[20:])


def test_damaged_features_are_refused_on_read(engine: Engine, tmp_path: Path) -> None:
    spec = dataclasses.replace(tiny_spec("feat", 3), kind=ExperimentKind.PROBE)
    exp = create_experiment(engine, spec, tiny_examples(20, 10)).experiment
    folder = tmp_path / "artifacts"
    features = np.zeros((30, 4), dtype=np.float16)
    staged = stage_features(engine, exp, [features], folder=folder, writer="w")
    with transaction(engine) as conn:
        complete(conn, staged)
    path = folder / str(staged.location)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactCorrupt, match="damaged"):
        load_features(engine, exp, folder=folder)
