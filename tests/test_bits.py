"""The packed-bit contract: LSB first, so PostgreSQL's get_bit(payload, i) is example i."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail import bits


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
    from memtail.db.engine import make_engine

    engine = make_engine(sqlite_url)
    flags = np.random.default_rng(1).random(77) < 0.5
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TEMP TABLE blob (b BLOB)"))
        conn.execute(sa.text("INSERT INTO blob VALUES (:b)"), {"b": bits.pack(flags)})
        stored = conn.execute(sa.text("SELECT b FROM blob")).scalar_one()
    engine.dispose()
    assert np.array_equal(bits.unpack(stored, 77), flags)
