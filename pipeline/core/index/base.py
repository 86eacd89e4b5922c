"""The Hamming index interface and the brute-force reference every index is checked against.

Owns the contract: ids are non-negative ints chosen by the caller, unique within an index and
never reused after removal (the matcher allocates them monotonically; indexes do not keep an id
set to check it, which at 10M entries would outweigh the index); hashes are unsigned ints of at
most 64 bits; ``search`` is exact (every stored id whose hash is
within ``radius`` bits of the query, nothing else), sorted by (distance, id). Removal takes the
hash next to the id so that an index never needs an id -> position map of its own.

Readers and the writer never share an index: the writer (one thread) adds and removes, and
hands readers :meth:`HammingIndex.snapshot` copies, which share the large built arrays (never
changed in place once built) and copy what ``add`` and ``remove`` change in place. Searching
never changes an index's entries or layout (only its scratch buffers, a snapshot's own).
Must not do I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

#: One search hit: (id, Hamming distance).
Hit = tuple[int, int]

U64Array = npt.NDArray[np.uint64]
I64Array = npt.NDArray[np.int64]


@runtime_checkable
class HammingIndex(Protocol):
    """Exact Hamming-radius search with insert and delete while serving."""

    @property
    def name(self) -> str:
        """Short name of the index kind, as settings and benchmarks spell it."""
        ...

    def add(self, ids: Sequence[int] | I64Array, hashes: Sequence[int] | U64Array) -> None:
        """Insert ids with their hashes (ids new to this index; see the module contract)."""
        ...

    def remove(self, ids: Sequence[int] | I64Array, hashes: Sequence[int] | U64Array) -> int:
        """Delete ids stored with exactly these hashes; return how many were present."""
        ...

    def search(self, query: int, radius: int) -> list[Hit]:
        """Every (id, distance) with distance <= radius, sorted by (distance, id)."""
        ...

    def search_many(self, queries: Sequence[int] | U64Array, radius: int) -> list[list[Hit]]:
        """``search`` for each query, in order (indexes may batch the work)."""
        ...

    def __len__(self) -> int:
        """Number of live ids."""
        ...

    def entries(self) -> tuple[I64Array, U64Array]:
        """Every live (id, hash), as two arrays in no particular order (to rebuild elsewhere)."""
        ...

    @property
    def nbytes(self) -> int:
        """Bytes of memory held by the index (the bytes/hash figure divides this)."""
        ...

    def snapshot(self) -> HammingIndex:
        """A copy for readers, unaffected by later ``add`` and ``remove`` on this index (see
        the module docstring); cost: what changed since the last build, not the whole index."""
        ...


IndexT = TypeVar("IndexT")


def reader_copy(index: IndexT, **own: object) -> IndexT:
    """A shallow copy of ``index`` with the attributes in ``own`` replaced: the shared part of
    every :meth:`HammingIndex.snapshot`."""
    copy = object.__new__(type(index))
    copy.__dict__.update(index.__dict__)
    copy.__dict__.update(own)
    return copy


def as_u64(values: Sequence[int] | U64Array | Iterable[int]) -> U64Array:
    """Hashes as a contiguous uint64 array (Python ints above 2**63 are accepted)."""
    if isinstance(values, np.ndarray):
        return np.ascontiguousarray(values, dtype=np.uint64)
    return np.fromiter((int(v) for v in values), dtype=np.uint64)


def as_i64(values: Sequence[int] | I64Array | Iterable[int]) -> I64Array:
    """Ids as a contiguous int64 array; negative ids are a ``ValueError``."""
    arr = (
        np.ascontiguousarray(values, dtype=np.int64)
        if isinstance(values, np.ndarray)
        else np.fromiter((int(v) for v in values), dtype=np.int64)
    )
    if arr.size and int(arr.min()) < 0:
        raise ValueError("index ids must be non-negative")
    return arr


def check_radius(radius: int, bits: int = 64) -> None:
    """Radius must be within [0, bits]; anything else is a caller bug."""
    if not 0 <= radius <= bits:
        raise ValueError(f"radius must be in [0, {bits}], got {radius}")


class BruteForceIndex:
    """Linear scan with numpy XOR + popcount: the reference for exactness, and a fine small index.

    Deletion marks a slot dead; dead slots are compacted away when they exceed the live ones.
    Everything is in three arrays (17 bytes an entry): no per-id Python objects.
    """

    name = "scan"

    def __init__(self) -> None:
        self._ids: I64Array = np.empty(0, dtype=np.int64)
        self._hashes: U64Array = np.empty(0, dtype=np.uint64)
        self._live: npt.NDArray[np.bool_] = np.empty(0, dtype=np.bool_)
        self._live_count = 0

    def add(self, ids: Sequence[int] | I64Array, hashes: Sequence[int] | U64Array) -> None:
        id_arr, hash_arr = as_i64(ids), as_u64(hashes)
        if id_arr.shape != hash_arr.shape:
            raise ValueError("ids and hashes differ in length")
        # The reference index checks the id contract the others trust (see the module doc).
        if np.unique(id_arr).size != id_arr.size or np.isin(id_arr, self._ids[self._live]).any():
            raise ValueError("duplicate index id")
        self._ids = np.concatenate([self._ids, id_arr])
        self._hashes = np.concatenate([self._hashes, hash_arr])
        self._live = np.concatenate([self._live, np.ones(id_arr.size, dtype=np.bool_)])
        self._live_count += int(id_arr.size)

    def remove(self, ids: Sequence[int] | I64Array, hashes: Sequence[int] | U64Array) -> int:
        id_arr, hash_arr = as_i64(ids), as_u64(hashes)
        removed = 0
        for id_, h in zip(id_arr.tolist(), hash_arr.tolist(), strict=True):
            slots = np.flatnonzero((self._ids == id_) & (self._hashes == np.uint64(h)) & self._live)
            if slots.size:
                self._live[slots[0]] = False
                removed += 1
        self._live_count -= removed
        if self._ids.size - self._live_count > self._live_count:
            keep = self._live
            self._ids, self._hashes = self._ids[keep], self._hashes[keep]
            self._live = np.ones(self._ids.size, dtype=np.bool_)
        return removed

    def search(self, query: int, radius: int) -> list[Hit]:
        check_radius(radius)
        distances = np.bitwise_count(self._hashes ^ np.uint64(query))
        slots = np.flatnonzero((distances <= radius) & self._live)
        hits = list(
            zip(self._ids[slots].tolist(), distances[slots].astype(np.int64).tolist(), strict=True)
        )
        hits.sort(key=lambda hit: (hit[1], hit[0]))
        return hits

    def search_many(self, queries: Sequence[int] | U64Array, radius: int) -> list[list[Hit]]:
        return [self.search(int(q), radius) for q in as_u64(queries)]

    def __len__(self) -> int:
        return self._live_count

    def entries(self) -> tuple[I64Array, U64Array]:
        return self._ids[self._live].copy(), self._hashes[self._live].copy()

    def snapshot(self) -> BruteForceIndex:
        # add and compaction make new arrays; remove clears live flags in place.
        return reader_copy(self, _live=self._live.copy())

    @property
    def nbytes(self) -> int:
        return int(self._ids.nbytes + self._hashes.nbytes + self._live.nbytes)
