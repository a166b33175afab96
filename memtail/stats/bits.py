"""The one storage format for per-example booleans: packed bits, least significant first.

Subset membership and correctness vectors are stored 8 examples per byte with
``numpy.packbits(x, bitorder="little")``. Bit ``i % 8`` of byte ``i // 8`` is example
``i``, which is exactly what PostgreSQL's ``get_bit(bytea, i)`` reads, so analysts can
query one example of one trial in SQL without decoding anything. Padding bits of the last
byte are zero; a payload of the wrong length or with set padding bits is rejected, because
that means it was written for a different experiment.

The estimator wants the transpose: for each example, its bits over the k trials.
``TrialBits`` holds that, packed along the trial axis in uint64 words (bit ``t % 64`` of
word ``t // 64`` is trial ``t``), so a count over trials is a popcount and
``popcount(M_i & T_j)`` over an example pair's words is the entry G[i, j] = sum_t M[t, i]
T[t, j] that influence needs. ``TrialBits.from_rows`` builds it straight from stored rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memtail.stats import kernels


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


def rows_matrix(
    payloads: Sequence[bytes | memoryview] | np.ndarray, n: int, *, what: str = "payload"
) -> np.ndarray:
    """Validate payloads of ``n`` bits each into a (rows, packed_length(n)) uint8 matrix.

    A uint8 matrix of that shape is accepted as is (after the padding check), so callers
    that already hold the rows as one array pay no copy.
    """
    width = packed_length(n)
    if isinstance(payloads, np.ndarray):
        if payloads.dtype != np.uint8 or payloads.ndim != 2 or payloads.shape[1] != width:
            raise PayloadError(
                f"{what}: expected a (rows, {width}) uint8 matrix for {n} examples; got "
                f"{payloads.dtype} {payloads.shape}"
            )
        matrix = payloads
    elif not payloads:
        return np.zeros((0, width), dtype=np.uint8)
    else:
        buf = np.frombuffer(b"".join(bytes(p) for p in payloads), dtype=np.uint8)
        if buf.size != width * len(payloads):
            for row, payload in enumerate(payloads):
                check(np.frombuffer(bytes(payload), dtype=np.uint8), n, what=f"{what}[{row}]")
        matrix = buf.reshape(len(payloads), width)
    tail = n % 8
    if tail and matrix.size and np.any(matrix[:, -1] >> tail):
        bad = int(np.flatnonzero(matrix[:, -1] >> tail)[0])
        raise PayloadError(f"{what}[{bad}]: padding bits past example {n - 1} are set")
    return matrix


def unpack_rows(payloads: list[bytes], n: int, *, what: str = "payload") -> np.ndarray:
    """Decode many payloads of ``n`` bits each into a (len(payloads), n) bool matrix."""
    matrix = rows_matrix(payloads, n, what=what)
    return np.unpackbits(matrix, axis=1, count=n, bitorder="little").astype(bool)


# Words per example are rounded up to a multiple of this, so that every example's words
# are whole 64-byte cache lines and a compiled kernel handles them 8 at a time (512 bits).
WORD_MULTIPLE = 8
# Rows decoded per step by the numpy loops over rows (bounds the temporary bool block to
# this many bytes per example).
_ROWS_PER_STEP = 512
# from_rows transposes with the compiled kernel from this many bits on, when installed.
_COMPILED_MIN_BITS = 2**22


def column_counts(
    payloads: Sequence[bytes | memoryview] | np.ndarray, n: int, *, what: str = "payload"
) -> np.ndarray:
    """Per example, how many of the rows have its bit set (int64), straight from rows.

    The sum over trials of one payload kind, e.g. n_in(i) from subsets: what new trials
    add to an experiment's counts, without transposing them (``TrialBits`` is faster for
    thousands of trials, this for a few hundred).
    """
    rows = rows_matrix(payloads, n, what=what)
    total = np.zeros(n, dtype=np.int64)
    for t0 in range(0, rows.shape[0], _ROWS_PER_STEP):
        block = np.unpackbits(rows[t0 : t0 + _ROWS_PER_STEP], axis=1, count=n, bitorder="little")
        total += np.add.reduce(block, axis=0, dtype=np.int32)  # int32: half the traffic
    return total


def trial_words(k: int) -> int:
    """uint64 words per example for ``k`` trials, padded to a multiple of WORD_MULTIPLE."""
    return max(1, -(-k // (64 * WORD_MULTIPLE))) * WORD_MULTIPLE


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class TrialBits:
    """Booleans of n examples over k trials, packed along the trial axis, example-major.

    ``words[i]`` holds example i: bit ``t % 64`` of word ``t // 64`` (little-endian, i.e.
    byte ``t // 8`` bit ``t % 8`` of the row's bytes) is trial t. Bits of trials >= k are
    zero, so popcounts need no masking.
    """

    words: np.ndarray  # (n, trial_words(k)) uint64, read-only
    n_trials: int

    def __post_init__(self) -> None:
        k, w = int(self.n_trials), self.words
        if w.dtype != np.uint64 or w.ndim != 2 or w.shape[1] != trial_words(k) or k < 0:
            raise PayloadError(
                f"TrialBits needs (n, {trial_words(max(k, 0))}) uint64 words for {k} trials; "
                f"got {w.dtype} {w.shape}"
            )
        raw = w.astype("<u8", copy=False).view(np.uint8)[:, k // 8 :]
        if raw.size and (np.any(raw[:, 0] >> (k % 8)) or np.any(raw[:, 1:])):
            raise PayloadError(f"TrialBits: bits set past trial {k - 1}")
        w = w.view()  # read-only without touching the caller's array
        w.setflags(write=False)
        object.__setattr__(self, "words", w)
        object.__setattr__(self, "n_trials", k)

    @property
    def n_examples(self) -> int:
        return int(self.words.shape[0])

    @classmethod
    def from_bool(cls, matrix: np.ndarray) -> TrialBits:
        """From a (k trials, n examples) 0/1 matrix (the estimator's M, C or T)."""
        m = np.asarray(matrix)
        if m.ndim != 2:
            raise PayloadError(f"expected a (k trials, n examples) matrix, got shape {m.shape}")
        k, n = m.shape
        out = np.zeros((n, trial_words(k) * 8), dtype=np.uint8)
        out[:, : packed_length(k)] = np.packbits(m.T != 0, axis=1, bitorder="little")
        return cls(out.view("<u8").astype(np.uint64, copy=False), k)

    @classmethod
    def from_rows(
        cls,
        payloads: Sequence[bytes | memoryview] | np.ndarray,
        n: int,
        *,
        what: str = "payload",
        compiled: bool | None = None,
    ) -> TrialBits:
        """Transpose k stored rows (one payload of ``n`` bits per trial) into TrialBits.

        ``compiled``: use the numba kernel (None: when numba is installed); the pure numpy
        path gives the same words.
        """
        rows = rows_matrix(payloads, n, what=what)
        k = rows.shape[0]
        if compiled is None:  # the kernel's launch costs more than small inputs take
            compiled = k * n >= _COMPILED_MIN_BITS and kernels.compiled() is not None
        compiled_kernels = kernels.compiled(required=True) if compiled else None
        if compiled_kernels is not None:
            out = compiled_kernels.transpose_rows(np.ascontiguousarray(rows), n, trial_words(k) * 8)
        else:
            out = np.zeros((n, trial_words(k) * 8), dtype=np.uint8)
            for t0 in range(0, k, _ROWS_PER_STEP):  # t0 is a multiple of 8
                block = np.unpackbits(
                    rows[t0 : t0 + _ROWS_PER_STEP], axis=1, count=n, bitorder="little"
                )
                packed = np.packbits(block.T, axis=1, bitorder="little")
                out[:, t0 // 8 : t0 // 8 + packed.shape[1]] = packed
        return cls(out.view("<u8").astype(np.uint64, copy=False), k)

    def to_bool(self) -> np.ndarray:
        """The (k trials, n examples) bool matrix."""
        raw = self.words.astype("<u8", copy=False).view(np.uint8)
        return np.unpackbits(raw, axis=1, count=self.n_trials, bitorder="little").T.astype(bool)

    def take(self, index: np.ndarray) -> TrialBits:
        """The examples ``index`` (any integer index or boolean mask), same trials."""
        return TrialBits(np.ascontiguousarray(self.words[index]), self.n_trials)

    def counts(self) -> np.ndarray:
        """Per example, the trials whose bit is set (int64)."""
        return _popcount_rows(self.words)

    def and_counts(self, other: TrialBits) -> np.ndarray:
        """Per example, the trials set in both (hits_in = masks.and_counts(train_correct))."""
        if other.words.shape != self.words.shape or other.n_trials != self.n_trials:
            raise PayloadError(
                f"cannot combine bits of {self.n_examples} examples x {self.n_trials} trials "
                f"with {other.n_examples} x {other.n_trials}"
            )
        return _popcount_rows(self.words & other.words)


def _popcount_rows(words: np.ndarray) -> np.ndarray:
    """Set bits per row of a uint64 matrix, as int64."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(words).sum(axis=1, dtype=np.int64)
    raw = np.ascontiguousarray(words).view(np.uint8)
    return np.unpackbits(raw, axis=1).sum(axis=1, dtype=np.int64)
