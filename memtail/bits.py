"""The one storage format for per-example booleans: packed bits, least significant first.

Subset membership and correctness vectors are stored 8 examples per byte with
``numpy.packbits(x, bitorder="little")``. Bit ``i % 8`` of byte ``i // 8`` is example
``i``, which is exactly what PostgreSQL's ``get_bit(bytea, i)`` reads, so analysts can
query one example of one trial in SQL without decoding anything. Padding bits of the last
byte are zero; a payload of the wrong length or with set padding bits is rejected, because
that means it was written for a different experiment.
"""

from __future__ import annotations

import numpy as np


class PayloadError(ValueError):
    """A packed payload does not match the number of examples it should hold."""


def packed_length(n: int) -> int:
    """Bytes needed for ``n`` packed booleans."""
    return (n + 7) // 8


def pack(flags: np.ndarray) -> bytes:
    """Pack a 1-D boolean vector into bytes, example ``i`` at bit ``i``."""
    flags = np.asarray(flags)
    if flags.ndim != 1:
        raise PayloadError(f"pack expects a 1-D vector, got shape {flags.shape}")
    return np.packbits(flags.astype(bool, copy=False), bitorder="little").tobytes()


def unpack(payload: bytes | memoryview, n: int, *, what: str = "payload") -> np.ndarray:
    """Decode ``n`` booleans packed by :func:`pack`; validates length and padding."""
    raw = np.frombuffer(bytes(payload), dtype=np.uint8)
    check(raw, n, what=what)
    return np.unpackbits(raw, count=n, bitorder="little").astype(bool)


def check(raw: np.ndarray | bytes, n: int, *, what: str = "payload") -> None:
    """Reject payloads that cannot hold exactly ``n`` examples."""
    if isinstance(raw, bytes | bytearray | memoryview):
        raw = np.frombuffer(bytes(raw), dtype=np.uint8)
    expected = packed_length(n)
    if raw.size != expected:
        raise PayloadError(
            f"{what}: {raw.size} bytes but {n} examples need {expected}; "
            "the payload belongs to a different experiment or was truncated"
        )
    tail = n % 8
    if tail and raw[-1] >> tail:
        raise PayloadError(f"{what}: padding bits past example {n - 1} are set")


def unpack_rows(payloads: list[bytes], n: int, *, what: str = "payload") -> np.ndarray:
    """Decode many payloads of ``n`` bits each into a (len(payloads), n) bool matrix."""
    width = packed_length(n)
    if not payloads:
        return np.zeros((0, n), dtype=bool)
    buf = np.frombuffer(b"".join(bytes(p) for p in payloads), dtype=np.uint8)
    if buf.size != width * len(payloads):
        for row, payload in enumerate(payloads):
            check(np.frombuffer(bytes(payload), dtype=np.uint8), n, what=f"{what}[{row}]")
    matrix = buf.reshape(len(payloads), width)
    tail = n % 8
    if tail and np.any(matrix[:, -1] >> tail):
        bad = int(np.flatnonzero(matrix[:, -1] >> tail)[0])
        raise PayloadError(f"{what}[{bad}]: padding bits past example {n - 1} are set")
    return np.unpackbits(matrix, axis=1, count=n, bitorder="little").astype(bool)
