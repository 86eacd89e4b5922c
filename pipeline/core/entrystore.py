"""List entries as columns: the compact state behind the matcher (tens of millions of entries).

Owns the rows and how a (list, entry id) key finds its row. A row is one entry ever added; rows
are numbered from 0 in the order added and never reused (the indexes use row numbers as their
ids). Per row: the list as a code into a small table of list names, the category and algorithm
as codes, a 64-bit copy of the hash (the hash itself for 64-bit algorithms; for wider ones a
fold of it, only used to tell a re-publish with an unchanged hash), a live flag, and the entry
id's bytes in one packed table (``bytes`` chunks of UTF-8, one per batch, and an offset per
row). No Python object per entry survives a batch: at 10M entries that is ~40 bytes a row here
against ~700 for the dict-of-dataclasses it replaces. An entry's source and note are not kept:
no match carries them (matches name list, entry id, category, algorithm and distance).

Keys are found through their 64-bit Python hash: a sorted array of (key hash, row) pairs plus a
small sorted run of recent ones, merged when the run grows past an eighth of the rows. Hashes
may collide, so every candidate row is confirmed against its list code and entry id bytes.

Rows once written never change (except the live flag, which only the writer reads), and the
arrays are only ever appended to in place or replaced by larger copies: a reader holding the
arrays of an earlier moment reads its rows safely while the writer appends. Single writer.
Must not do I/O.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.core.hashlist import Category
from pipeline.core.types import Algorithm

#: Codes of the category and algorithm columns (positions in these tuples).
CATEGORIES: tuple[Category, ...] = tuple(Category)
ALGORITHMS: tuple[Algorithm, ...] = tuple(Algorithm)
CATEGORY_CODES = {category: code for code, category in enumerate(CATEGORIES)}
ALGORITHM_CODES = {algorithm: code for code, algorithm in enumerate(ALGORITHMS)}

_MASK64 = (1 << 64) - 1


def fold64(value: int) -> int:
    """A hash of any width as 64 bits: itself below 2**64, else its 64-bit words XORed."""
    folded = 0
    while value:
        folded ^= value & _MASK64
        value >>= 64
    return folded


def key_hash(list_name: str, entry_id: str) -> int:
    """The 64-bit hash a key is found by (Python's: stable within one process only)."""
    return hash((list_name, entry_id))


@dataclass(frozen=True, slots=True)
class EntryBatch:
    """Entries to add, as columns of equal length (an entry repeated keeps its last row)."""

    list_names: Sequence[str]
    entry_ids: Sequence[str]
    algorithms: Sequence[Algorithm]
    values: Sequence[int]
    categories: Sequence[Category]

    def __len__(self) -> int:
        return len(self.entry_ids)


@dataclass(frozen=True, slots=True)
class RowReader:
    """What a reader needs of the rows as of one moment (see the module docstring)."""

    list_names: tuple[str, ...]
    list_codes: npt.NDArray[np.int32]
    categories: npt.NDArray[np.uint8]
    values64: npt.NDArray[np.uint64]
    id_offsets: npt.NDArray[np.int64]
    id_chunks: tuple[bytes, ...]
    id_chunk_starts: npt.NDArray[np.int64]

    def list_name(self, row: int) -> str:
        return self.list_names[int(self.list_codes[row])]

    def category(self, row: int) -> Category:
        return CATEGORIES[int(self.categories[row])]

    def value64(self, row: int) -> int:
        return int(self.values64[row])

    def entry_id(self, row: int) -> str:
        start, end = int(self.id_offsets[row]), int(self.id_offsets[row + 1])
        chunk = int(np.searchsorted(self.id_chunk_starts, start, side="right")) - 1
        base = int(self.id_chunk_starts[chunk])
        return self.id_chunks[chunk][start - base : end - base].decode()


def _grown(array: npt.NDArray[np.generic], needed: int) -> npt.NDArray[np.generic]:
    """``array`` if it holds ``needed`` slots, else a copy with room for ~1.25x that."""
    if needed <= array.size:
        return array
    bigger = np.empty(max(needed + needed // 4, 1024), dtype=array.dtype)
    bigger[: array.size] = array
    return bigger


class EntryStore:
    """The rows (see the module docstring). ``add`` appends, ``retire`` marks rows dead."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._name_codes: dict[str, int] = {}
        self._rows = 0
        self._list_codes = np.empty(0, np.int32)
        self._categories = np.empty(0, np.uint8)
        self._algorithms = np.empty(0, np.uint8)
        self._values64 = np.empty(0, np.uint64)
        self._live = np.empty(0, np.bool_)
        self._id_offsets = np.zeros(1, np.int64)
        self._id_chunks: list[bytes] = []
        self._id_chunk_starts: list[int] = []
        self._id_bytes = 0
        # key hash -> row: a large sorted run and a small one (see the module docstring).
        self._keys = np.empty(0, np.int64)
        self._key_rows = np.empty(0, np.int32)
        self._recent_keys = np.empty(0, np.int64)
        self._recent_rows = np.empty(0, np.int32)

    def __len__(self) -> int:
        """Rows ever added (live or not)."""
        return self._rows

    def list_code(self, name: str) -> int:
        code = self._name_codes.get(name)
        if code is None:
            code = self._name_codes[name] = len(self._names)
            self._names.append(name)
        return code

    # -- writing ---------------------------------------------------------------------------------

    def add(self, batch: EntryBatch) -> npt.NDArray[np.int64]:
        """Append every entry of ``batch`` as a new row; returns the rows (in batch order).

        The caller has retired the rows these keys had (:meth:`find`). Rows stay below 2**31
        (the key index stores them as int32): ValueError past that."""
        count = len(batch)
        first, end = self._rows, self._rows + count
        if end >= 1 << 31:
            raise ValueError("an entry store holds fewer than 2**31 rows")
        codes = self._name_codes
        list_codes = [
            code if (code := codes.get(name)) is not None else self.list_code(name)
            for name in batch.list_names
        ]
        self._list_codes = _grown(self._list_codes, end)  # type: ignore[assignment]
        self._categories = _grown(self._categories, end)  # type: ignore[assignment]
        self._algorithms = _grown(self._algorithms, end)  # type: ignore[assignment]
        self._values64 = _grown(self._values64, end)  # type: ignore[assignment]
        self._live = _grown(self._live, end)  # type: ignore[assignment]
        self._id_offsets = _grown(self._id_offsets, end + 1)  # type: ignore[assignment]
        self._list_codes[first:end] = list_codes
        self._categories[first:end] = [CATEGORY_CODES[c] for c in batch.categories]
        self._algorithms[first:end] = [ALGORITHM_CODES[a] for a in batch.algorithms]
        self._values64[first:end] = [v if v <= _MASK64 else fold64(v) for v in batch.values]
        self._live[first:end] = True
        encoded = [entry_id.encode() for entry_id in batch.entry_ids]
        lengths = np.fromiter(map(len, encoded), np.int64, count)
        self._id_offsets[first + 1 : end + 1] = self._id_bytes + np.cumsum(lengths)
        self._id_chunk_starts.append(self._id_bytes)
        self._id_chunks.append(b"".join(encoded))
        self._id_bytes += int(lengths.sum())
        self._rows = end
        rows = np.arange(first, end, dtype=np.int64)
        hashes = np.fromiter(map(key_hash, batch.list_names, batch.entry_ids), np.int64, count)
        self._index_keys(hashes, rows)
        return rows

    def retire(self, rows: Sequence[int] | npt.NDArray[np.int64]) -> None:
        """Mark rows dead: :meth:`find` no longer returns them."""
        self._live[np.asarray(rows, dtype=np.int64)] = False

    def _index_keys(self, hashes: npt.NDArray[np.int64], rows: npt.NDArray[np.int64]) -> None:
        keys = np.concatenate([self._recent_keys, hashes])
        key_rows = np.concatenate([self._recent_rows, rows.astype(np.int32)])
        order = np.argsort(keys, kind="stable")
        self._recent_keys, self._recent_rows = keys[order], key_rows[order]
        if self._recent_keys.size > max(4096, self._keys.size // 8):
            self.compact_keys()

    def compact_keys(self) -> None:
        """Merge the recent run into the large one, dropping dead rows' keys."""
        keys = np.concatenate([self._keys, self._recent_keys])
        rows = np.concatenate([self._key_rows, self._recent_rows])
        live = self._live[rows]
        keys, rows = keys[live], rows[live]
        order = np.argsort(keys, kind="stable")
        self._keys, self._key_rows = keys[order], rows[order]
        self._recent_keys = np.empty(0, np.int64)
        self._recent_rows = np.empty(0, np.int32)

    # -- reading (writer side) -------------------------------------------------------------------

    def find(self, list_names: Sequence[str], entry_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        """The live row of each key, or -1 (vectorised; only candidates are confirmed one by
        one against the stored list and entry id)."""
        count = len(entry_ids)
        found = np.full(count, -1, np.int64)
        if not count or not self._rows:
            return found
        hashes = np.fromiter(map(key_hash, list_names, entry_ids), np.int64, count)
        for keys, key_rows in (
            (self._keys, self._key_rows),
            (self._recent_keys, self._recent_rows),
        ):
            if not keys.size:
                continue
            starts = np.searchsorted(keys, hashes, side="left")
            ends = np.searchsorted(keys, hashes, side="right")
            for i in np.flatnonzero(ends > starts).tolist():
                for position in range(int(starts[i]), int(ends[i])):
                    row = int(key_rows[position])
                    if self._live[row] and self._is_key(row, list_names[i], entry_ids[i]):
                        found[i] = row
        return found

    def _is_key(self, row: int, list_name: str, entry_id: str) -> bool:
        if self._name_codes.get(list_name) != int(self._list_codes[row]):
            return False
        start, end = int(self._id_offsets[row]), int(self._id_offsets[row + 1])
        chunk = bisect.bisect_right(self._id_chunk_starts, start) - 1
        base = self._id_chunk_starts[chunk]
        return self._id_chunks[chunk][start - base : end - base] == entry_id.encode()

    def algorithm_codes(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
        return self._algorithms[rows]

    def same(self, row: int, algorithm: Algorithm, value: int, category: Category) -> bool:
        """Whether ``row`` holds this hash (by its 64-bit form) and category."""
        return (
            int(self._algorithms[row]) == ALGORITHM_CODES[algorithm]
            and int(self._categories[row]) == CATEGORY_CODES[category]
            and int(self._values64[row]) == (value if value <= _MASK64 else fold64(value))
        )

    def is_live(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        return self._live[rows]

    def reader(self) -> RowReader:
        """The rows as of now, for readers (see the module docstring)."""
        return RowReader(
            list_names=tuple(self._names),
            list_codes=self._list_codes,
            categories=self._categories,
            values64=self._values64,
            id_offsets=self._id_offsets,
            id_chunks=tuple(self._id_chunks),
            id_chunk_starts=np.array(self._id_chunk_starts, dtype=np.int64),
        )

    def pack(self) -> None:
        """Join the entry-id chunks into one and trim the arrays' spare room (after a load)."""
        if len(self._id_chunks) > 1:
            self._id_chunks = [b"".join(self._id_chunks)]
            self._id_chunk_starts = [0]
        end = self._rows
        self._list_codes = self._list_codes[:end].copy()
        self._categories = self._categories[:end].copy()
        self._algorithms = self._algorithms[:end].copy()
        self._values64 = self._values64[:end].copy()
        self._live = self._live[:end].copy()
        self._id_offsets = self._id_offsets[: end + 1].copy()
        self.compact_keys()

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns, the packed ids and the key index."""
        arrays = (
            self._list_codes,
            self._categories,
            self._algorithms,
            self._values64,
            self._live,
            self._id_offsets,
            self._keys,
            self._key_rows,
            self._recent_keys,
            self._recent_rows,
        )
        return sum(a.nbytes for a in arrays) + self._id_bytes
