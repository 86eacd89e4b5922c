"""256-bit hashes (PDQ) as index rows, and the brute-force 256-bit reference index.

Owns the layout every 256-bit index shares: a hash is given either as a Python int below
2**256 or as a row of a ``(n, 4)`` uint64 array, word 0 the most significant (so the words
read left to right as the hash's 64 hex digits do). ``entries()`` returns that array form.
The contract is :class:`pipeline.core.index.base.HammingIndex`'s, with ``search(query: int,
radius)`` taking the hash as an int. Must not do I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from pipeline.core.index.base import (
    Hit,
    I64Array,
    U64Array,
    as_i64,
    check_radius,
    reader_copy,
)

#: Width of a wide hash and its words.
WIDE_BITS = 256
WORDS = WIDE_BITS // 64


def as_words(values: Sequence[int] | U64Array | Iterable[int]) -> U64Array:
    """256-bit hashes as a contiguous ``(n, 4)`` uint64 array, most significant word first.

    Accepts such an array as is, or ints in [0, 2**256) (ValueError otherwise).
    """
    if isinstance(values, np.ndarray) and values.ndim == 2:
        if values.shape[1] != WORDS:
            raise ValueError(f"256-bit hashes need {WORDS} uint64 words a row, got {values.shape}")
        return np.ascontiguousarray(values, dtype=np.uint64)
    ints = [int(v) for v in values]
    if any(not 0 <= v < 1 << WIDE_BITS for v in ints):
        raise ValueError("256-bit hashes must be ints in [0, 2**256)")
    raw = b"".join(v.to_bytes(WIDE_BITS // 8, "big") for v in ints)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(ints), WORDS)


def query_words(query: int) -> U64Array:
    """One hash as its 4 words (most significant first)."""
    row: U64Array = as_words([query])[0]
    return row


def words_to_int(row: U64Array) -> int:
    """A row of :func:`as_words` back to the int."""
    value = 0
    for word in row.tolist():
        value = (value << 64) | int(word)
    return value


class BruteForceIndex256:
    """Linear scan over 256-bit hashes: the reference the 256-bit MIH is tested against.

    Same rules as :class:`pipeline.core.index.base.BruteForceIndex` (dead slots marked, then
    compacted; duplicate ids refused), 41 bytes an entry.
    """

    name = "scan"

    def __init__(self) -> None:
        self._ids: I64Array = np.empty(0, dtype=np.int64)
        self._hashes: U64Array = np.empty((0, WORDS), dtype=np.uint64)
        self._live: npt.NDArray[np.bool_] = np.empty(0, dtype=np.bool_)
        self._live_count = 0

    def add(self, ids: Sequence[int] | I64Array, hashes: Sequence[int] | U64Array) -> None:
        id_arr, hash_arr = as_i64(ids), as_words(hashes)
        if id_arr.shape[0] != hash_arr.shape[0]:
            raise ValueError("ids and hashes differ in length")
        if np.unique(id_arr).size != id_arr.size or np.isin(id_arr, self._ids[self._live]).any():
            raise ValueError("duplicate index id")
        self._ids = np.concatenate([self._ids, id_arr])
        self._hashes = np.concatenate([self._hashes, hash_arr])
        self._live = np.concatenate([self._live, np.ones(id_arr.size, dtype=np.bool_)])
        self._live_count += int(id_arr.size)

    def remove(self, ids: Sequence[int] | I64Array, hashes: Sequence[int] | U64Array) -> int:
        id_arr, hash_arr = as_i64(ids), as_words(hashes)
        removed = 0
        for id_, row in zip(id_arr.tolist(), hash_arr, strict=True):
            same = (self._hashes == row).all(axis=1)
            slots = np.flatnonzero((self._ids == id_) & same & self._live)
            if slots.size:
                self._live[slots[0]] = False
                removed += 1
        self._live_count -= removed
        if self._ids.size - self._live_count > self._live_count:
            keep = self._live
            self._ids, self._hashes = self._ids[keep], self._hashes[keep]
            self._live = np.ones(self._ids.size, dtype=np.bool_)
        return removed

    def _distances(self, query: U64Array) -> npt.NDArray[np.int64]:
        distances: npt.NDArray[np.int64] = np.bitwise_count(self._hashes ^ query).sum(
            axis=1, dtype=np.int64
        )
        return distances

    def search(self, query: int, radius: int) -> list[Hit]:
        check_radius(radius, WIDE_BITS)
        distances = self._distances(query_words(query))
        slots = np.flatnonzero((distances <= radius) & self._live)
        hits = list(zip(self._ids[slots].tolist(), distances[slots].tolist(), strict=True))
        hits.sort(key=lambda hit: (hit[1], hit[0]))
        return hits

    def search_many(self, queries: Sequence[int] | U64Array, radius: int) -> list[list[Hit]]:
        return [self.search(words_to_int(row), radius) for row in as_words(queries)]

    def __len__(self) -> int:
        return self._live_count

    def entries(self) -> tuple[I64Array, U64Array]:
        return self._ids[self._live].copy(), self._hashes[self._live].copy()

    def discard(self, ids: Sequence[int] | I64Array) -> None:
        """Delete ids without their hashes (see :meth:`MultiIndexHash256.discard`)."""
        dead = np.isin(self._ids, as_i64(ids)) & self._live
        self._live[dead] = False
        self._live_count -= int(dead.sum())

    def snapshot(self) -> BruteForceIndex256:
        return reader_copy(self, _live=self._live.copy())

    @property
    def nbytes(self) -> int:
        return int(self._ids.nbytes + self._hashes.nbytes + self._live.nbytes)
