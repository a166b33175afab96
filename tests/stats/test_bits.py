"""The packed-bit contract: LSB first, so PostgreSQL's get_bit(payload, i) is example i."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.stats import bits


@pytest.mark.parametrize("n", [1, 7, 8, 9, 64, 1000, 1797])
def test_round_trip(n: int) -> None:
    rng = np.random.default_rng(n)
    flags = rng.random(n) < 0.5
    payload = bits.pack(flags)
    assert len(payload) == bits.packed_length(n) == (n + 7) // 8
    assert np.array_equal(bits.unpack(payload, n), flags)


def test_bit_order_is_lsb_first() -> None:
    flags = np.zeros(10, dtype=bool)
    flags[[0, 3, 9]] = True
    # Example 0 -> bit 0 (value 1), example 3 -> value 8; example 9 -> bit 1 of byte 1.
    assert bits.pack(flags) == bytes([0b0000_1001, 0b0000_0010])


def test_unpack_rows_matches_unpack() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.random((5, 21)) < 0.3
    payloads = [bits.pack(row) for row in matrix]
    assert np.array_equal(bits.unpack_rows(payloads, 21), matrix)
    assert bits.unpack_rows([], 21).shape == (0, 21)


def test_wrong_length_is_rejected() -> None:
    payload = bits.pack(np.ones(16, dtype=bool))
    with pytest.raises(bits.PayloadError, match="2 bytes but 17 examples need 3"):
        bits.unpack(payload, 17, what="train_correct")
    with pytest.raises(bits.PayloadError, match=r"train_correct\[1\]: 1 bytes"):
        bits.unpack_rows([payload, payload[:1]], 16, what="train_correct")


def test_set_padding_bits_are_rejected() -> None:
    # 12 examples use 12 bits of 16; a set bit 13 means the payload is not ours.
    with pytest.raises(bits.PayloadError, match="padding bits"):
        bits.unpack(bytes([0xFF, 0xFF]), 12)
    with pytest.raises(bits.PayloadError, match="padding bits"):
        bits.unpack_rows([bytes([0, 0]), bytes([0, 0x10])], 12)


def test_pack_rejects_matrices() -> None:
    with pytest.raises(bits.PayloadError, match="1-D"):
        bits.pack(np.zeros((2, 2), dtype=bool))


@pytest.mark.postgres
def test_get_bit_reads_example_i_in_postgres(pg_engine: Engine) -> None:
    rng = np.random.default_rng(42)
    flags = rng.random(1000) < 0.5
    payload = bits.pack(flags)
    with pg_engine.begin() as conn:
        conn.execute(sa.text("CREATE TEMP TABLE blob (b bytea)"))
        conn.execute(sa.text("INSERT INTO blob VALUES (:b)"), {"b": payload})
        read = (
            conn.execute(
                sa.text("SELECT get_bit(b, i) FROM blob, generate_series(0, 999) AS i ORDER BY i")
            )
            .scalars()
            .all()
        )
        stored = conn.execute(sa.text("SELECT b FROM blob")).scalar_one()
    assert np.array_equal(np.array(read, dtype=bool), flags)
    assert np.array_equal(bits.unpack(stored, 1000), flags)


def test_round_trip_through_sqlite(sqlite_url: str) -> None:
    from memtail.store.engine import make_engine

    engine = make_engine(sqlite_url)
    flags = np.random.default_rng(1).random(77) < 0.5
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TEMP TABLE blob (b BLOB)"))
        conn.execute(sa.text("INSERT INTO blob VALUES (:b)"), {"b": bits.pack(flags)})
        stored = conn.execute(sa.text("SELECT b FROM blob")).scalar_one()
    engine.dispose()
    assert np.array_equal(bits.unpack(stored, 77), flags)


@pytest.mark.parametrize("k, n", [(0, 5), (1, 1), (7, 9), (64, 8), (65, 13), (513, 100)])
@pytest.mark.parametrize("compiled", [False, True])
def test_trial_bits_transpose_rows(k: int, n: int, compiled: bool) -> None:
    if compiled:
        pytest.importorskip("numba")
    rng = np.random.default_rng(k * 31 + n)
    matrix = rng.random((k, n)) < 0.6
    payloads = [bits.pack(row) for row in matrix]
    packed = bits.TrialBits.from_rows(payloads, n, compiled=compiled)
    assert packed.n_trials == k and packed.n_examples == n
    assert packed.words.shape == (n, bits.trial_words(k)) and packed.words.dtype == np.uint64
    assert bits.trial_words(k) % bits.WORD_MULTIPLE == 0
    assert np.array_equal(packed.words, bits.TrialBits.from_bool(matrix).words)
    assert np.array_equal(packed.to_bool(), matrix)
    # Word layout: trial t of example i is bit t % 64 of word t // 64.
    for i, t in zip(
        rng.integers(0, n, 20).tolist(), rng.integers(0, max(k, 1), 20).tolist(), strict=True
    ):
        if k:
            assert bool((int(packed.words[i, t // 64]) >> (t % 64)) & 1) == matrix[t, i]
    other = rng.random((k, n)) < 0.5
    assert np.array_equal(packed.counts(), matrix.sum(axis=0))
    both = packed.and_counts(bits.TrialBits.from_bool(other))
    assert np.array_equal(both, (matrix & other).sum(axis=0))
    index = rng.permutation(n)[: n // 2 + 1]
    assert np.array_equal(packed.take(index).to_bool(), matrix[:, index])
    with pytest.raises(ValueError, match="read-only"):
        packed.words[0, 0] = 1


def test_trial_bits_reject_bad_rows_and_words() -> None:
    with pytest.raises(bits.PayloadError, match=r"subset\[1\]: padding bits"):
        bits.TrialBits.from_rows([bytes([0, 0]), bytes([0, 0x10])], 12, what="subset")
    with pytest.raises(bits.PayloadError, match=r"subset\[1\]: 1 bytes"):
        bits.TrialBits.from_rows([bytes([0, 0]), bytes([0])], 12, what="subset")
    with pytest.raises(bits.PayloadError, match=r"\(rows, 2\) uint8 matrix"):
        bits.TrialBits.from_rows(np.zeros((3, 3), np.uint8), 12)
    words = np.zeros((2, bits.trial_words(5)), np.uint64)
    words[1, 0] = 1 << 5  # trial 5 of 5
    with pytest.raises(bits.PayloadError, match="bits set past trial 4"):
        bits.TrialBits(words, 5)
    with pytest.raises(bits.PayloadError, match="uint64 words for 5 trials"):
        bits.TrialBits(np.zeros((2, 1), np.uint64), 5)
    a = bits.TrialBits.from_bool(np.ones((3, 4), bool))
    with pytest.raises(bits.PayloadError, match="cannot combine"):
        a.and_counts(bits.TrialBits.from_bool(np.ones((3, 5), bool)))
