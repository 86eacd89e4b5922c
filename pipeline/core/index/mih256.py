"""Multi-index hashing over 256-bit hashes (PDQ): exact Hamming-radius search at radius ~31.

Owns the 256-bit layout and its probe rule; the pigeonhole rule, the probe-and-verify loop,
the de-duplication by "first table whose probe reaches it", the unsorted delta, tombstones and
the rebuild schedule are those of :mod:`pipeline.core.index.mih` (read it first).

What differs is memory. A 256-bit hash is 32 bytes, and PDQ's radius (31 of 256 bits) needs
~12 tables, so storing the hash inline in every table (as the 64-bit index does) would cost
~400 bytes a hash. Here the (hash, id) rows are stored once, sorted by chunk 0, so table 0 is
just a directory over them; every other table is a directory plus a uint32 position per entry
into those rows. Bytes per hash: 32 (hash) + 4 (id, int32 while ids allow) + 4 x (M - 1)
positions + the directories (2**w int32 offsets per table). Candidates cost one random read
of the row each, which is why M is kept near 256 / log2(n) (about one entry per bucket) but
no larger: more tables add positions, fewer add candidates.

Chunks are contiguous runs of bits counted from the most significant (word 0's top bit);
wider chunks first. :func:`choose_chunks` is the rule. Must not do I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.core.index._kernels import njit_cached, popcount64
from pipeline.core.index.base import (
    Hit,
    I64Array,
    U64Array,
    as_i64,
    check_radius,
    reader_copy,
)
from pipeline.core.index.mih import MERGE_FRACTION, _flip_masks
from pipeline.core.index.wide import WIDE_BITS, WORDS, as_words, query_words, words_to_int

#: 8-bit chunks (M = 32) at the most; at the least 11 (23-24 bits: 64 MB directories each).
MIN_CHUNKS, MAX_CHUNKS = 11, 32
#: Widest chunk: a 2**24-offset directory is 64 MB.
MAX_WIDTH = 24


def chunk_widths(chunks: int, radius: int = 31) -> tuple[int, ...]:
    """Widths of M contiguous chunks covering 256 bits for searches at ``radius``.

    With r = s*M + a, tables 0..a are probed at s bits and the rest at s - 1 (the pigeonhole
    rule): a probe at s bits costs ~w/2 times one at s - 1, so the tables probed at the
    larger radius get the wider chunks (ceil(256 / M) bits, at most :data:`MAX_WIDTH`) and
    the others share what is left, wider first. At M = 12, r = 31: 8x22 + 4x20 rather than
    4x22 + 8x21, which cut candidates from ~7,300 to ~5,700 a query at 10M hashes for 1.7
    more bytes a hash (directories of 2**22 instead of 2**21 offsets).
    """
    base, extra = divmod(WIDE_BITS, chunks)
    even = tuple(base + 1 if i < extra else base for i in range(chunks))
    per_table, wide_tables = divmod(radius, chunks)
    wide_tables += 1
    if per_table == 0 or wide_tables >= chunks:
        return even  # every table probed at the same radius
    wide = min(MAX_WIDTH, -(-WIDE_BITS // chunks))
    rest, narrow_tables = WIDE_BITS - wide * wide_tables, chunks - wide_tables
    narrow, longer = divmod(rest, narrow_tables)
    if narrow < 1:
        return even
    return (wide,) * wide_tables + tuple(
        narrow + 1 if i < longer else narrow for i in range(narrow_tables)
    )


def choose_chunks(size: int, radius: int) -> int:
    """M for ``size`` hashes searched at ``radius``: the documented rule.

    M = max(ceil(256 / (round(log2 n) - 1)), ceil((r + 1) / 3)), clamped to [11, 32].
    Chunks one bit narrower than log2 n put ~2 entries in a bucket; that halves the
    directories and costs fewer candidates than another table's 4 bytes a hash would save.
    The radius term keeps each table's radius at most 2 (V(w, 2) ~ w**2 / 2 probes).
    At 10M hashes and r = 31: M = 12 (8x22 + 4x20 bits), 8 tables probed at 2 bits and 4 at
    1: ~2,100 probes and ~5,700 candidates a query; 32 + 4 + 44 + 15 = ~95 bytes a hash.
    At 1M: M = 14 (~107 bytes a hash: the directories weigh more on a smaller list).
    """
    width = max(8, round(math.log2(max(size, 2))) - 1)
    by_size = math.ceil(WIDE_BITS / min(width, MAX_WIDTH))
    by_radius = math.ceil((radius + 1) / 3)
    return min(MAX_CHUNKS, max(MIN_CHUNKS, by_size, by_radius))


@njit_cached(inline="always")
def _chunk_key(hashes: np.ndarray, row: int, start: int, width: int) -> Any:
    """Bits [start, start + width) of row ``row`` (bit 0 = word 0's most significant)."""
    end = start + width
    first = start // 64
    last = (end - 1) // 64
    mask = np.uint64((1 << width) - 1)
    if first == last:
        return (hashes[row, first] >> np.uint64(64 * (first + 1) - end)) & mask
    low_bits = end - 64 * last  # bits taken from the next word, 1..63
    high = hashes[row, first] << np.uint64(low_bits)
    low = hashes[row, last] >> np.uint64(64 - low_bits)
    return (high | low) & mask


@njit_cached(nogil=True)  # builds run off the event loop: see mih._build_table
def _counting_sort(keys: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(offsets[2**w + 1] int32, order uint32): rows grouped by key, stable."""
    n = keys.shape[0]
    offsets = np.zeros((1 << width) + 1, dtype=np.int32)
    for i in range(n):
        offsets[keys[i] + 1] += 1
    for k in range(1 << width):
        offsets[k + 1] += offsets[k]
    cursor = offsets[:-1].astype(np.int64)
    order = np.empty(n, dtype=np.uint32)
    for i in range(n):
        key = keys[i]
        order[cursor[key]] = i
        cursor[key] += 1
    return offsets, order


@njit_cached(nogil=True)
def _keys(hashes: np.ndarray, start: int, width: int) -> np.ndarray:
    n = hashes.shape[0]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = np.int64(_chunk_key(hashes, i, start, width))
    return out


@njit_cached()
def _probe(
    hashes: np.ndarray,
    ids: np.ndarray,
    directories: np.ndarray,
    directory_base: np.ndarray,
    positions: np.ndarray,
    starts: np.ndarray,
    widths: np.ndarray,
    table_radius: np.ndarray,
    masks: np.ndarray,
    mask_base: np.ndarray,
    query: np.ndarray,
    radius: int,
    rows: np.ndarray,
    tables_of: np.ndarray,
    out_ids: np.ndarray,
    out_dist: np.ndarray,
) -> int:
    """Every (id, distance) within ``radius``, in two passes: gather the candidate rows of
    every probed bucket, then verify them. The verify loop does nothing but independent
    32-byte loads and popcounts, so the core keeps many of its cache misses in flight (one
    loop doing both stalls on each bucket's directory read). Returns the hit count, or minus
    the candidate count when ``rows`` is too small (the caller grows it and asks again)."""
    n = hashes.shape[0]
    tables = starts.shape[0]
    q = query.reshape(1, 4)
    q0, q1, q2, q3 = query[0], query[1], query[2], query[3]
    qkeys = np.empty(tables, dtype=np.uint64)
    for t in range(tables):
        qkeys[t] = _chunk_key(q, 0, starts[t], widths[t])
    room = rows.shape[0]
    candidates = 0
    for t in range(tables):
        if table_radius[t] < 0:
            continue
        base = directory_base[t]
        position_base = (t - 1) * n
        for m in range(mask_base[t], mask_base[t + 1]):
            key = np.int64(qkeys[t] ^ masks[m])
            begin = directories[base + key]
            end = directories[base + key + 1]
            if candidates + (end - begin) <= room:
                for j in range(begin, end):
                    rows[candidates] = j if t == 0 else np.int64(positions[position_base + j])
                    tables_of[candidates] = t
                    candidates += 1
            else:
                candidates += end - begin
    if candidates > room:
        return -candidates
    cap = out_ids.shape[0]
    found = 0
    for c in range(candidates):
        row = rows[c]
        d = (
            popcount64(hashes[row, 0] ^ q0)
            + popcount64(hashes[row, 1] ^ q1)
            + popcount64(hashes[row, 2] ^ q2)
            + popcount64(hashes[row, 3] ^ q3)
        )
        if d > radius:
            continue
        # Keep it only if no earlier table's probe reached it (dedupe without a set).
        t = tables_of[c]
        seen = False
        for e in range(t):
            if table_radius[e] < 0:
                continue
            if (
                popcount64(_chunk_key(hashes, row, starts[e], widths[e]) ^ qkeys[e])
                <= table_radius[e]
            ):
                seen = True
                break
        if seen:
            continue
        if found < cap:
            out_ids[found] = ids[row]
            out_dist[found] = d
        found += 1
    return found


@njit_cached()
def _scan(
    hashes: np.ndarray,
    ids: np.ndarray,
    count: int,
    query: np.ndarray,
    radius: int,
    out_ids: np.ndarray,
    out_dist: np.ndarray,
    found: int,
) -> int:
    """Append every (id, distance) within ``radius`` among the first ``count`` rows."""
    cap = out_ids.shape[0]
    for i in range(count):
        d = (
            popcount64(hashes[i, 0] ^ query[0])
            + popcount64(hashes[i, 1] ^ query[1])
            + popcount64(hashes[i, 2] ^ query[2])
            + popcount64(hashes[i, 3] ^ query[3])
        )
        if d <= radius:
            if found < cap:
                out_ids[found] = ids[i]
                out_dist[found] = d
            found += 1
    return found


class MultiIndexHash256:
    """Exact Hamming-radius search by multi-index hashing over 256-bit hashes.

    Hashes are ints below 2**256 or rows of a ``(n, 4)`` uint64 array, most significant word
    first (:mod:`pipeline.core.index.wide`). ``chunks``, ``expected_size``, ``radius`` and
    ``merge_threshold`` mean what they mean for :class:`pipeline.core.index.mih.MultiIndexHash`.
    """

    name = "mih"

    def __init__(
        self,
        chunks: int | None = None,
        *,
        expected_size: int = 1 << 20,
        radius: int = 31,
        merge_threshold: int = 4096,
    ) -> None:
        if chunks is not None and not MIN_CHUNKS <= chunks <= MAX_CHUNKS:
            raise ValueError(f"chunks must be in [{MIN_CHUNKS}, {MAX_CHUNKS}], got {chunks}")
        check_radius(radius, WIDE_BITS)
        if merge_threshold < 1:
            raise ValueError(f"merge_threshold must be >= 1, got {merge_threshold}")
        self._fixed_chunks = chunks
        self._radius_hint = radius
        self._min_merge = merge_threshold
        self._set_chunks(chunks or choose_chunks(expected_size, radius))
        self._delta_ids: I64Array = np.empty(256, np.int64)
        self._delta_hashes: U64Array = np.empty((256, WORDS), np.uint64)
        self._delta_count = 0
        self._tombstones: set[int] = set()
        self._out_ids: I64Array = np.zeros(256, np.int64)
        self._out_dist = np.zeros(256, np.int64)
        self._rows: I64Array = np.empty(4096, np.int64)  # candidate buffer of _probe
        self._tables_of = np.empty(4096, np.int8)
        self._rebuild(np.empty(0, np.int64), np.empty((0, WORDS), np.uint64))

    # -- building -----------------------------------------------------------------------------

    def _set_chunks(self, chunks: int) -> None:
        self._chunks = chunks
        self._widths = np.array(chunk_widths(chunks, self._radius_hint), dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self._widths)[:-1]]).astype(np.int64)

    def _planned_chunks(self, size: int) -> int:
        if self._fixed_chunks is not None:
            return self._fixed_chunks
        # Small lists keep one M while they grow (as in the 64-bit index).
        return choose_chunks(max(size, 1 << 16), self._radius_hint)

    def _rebuild(self, ids: I64Array, hashes: U64Array) -> None:
        self._set_chunks(self._planned_chunks(int(ids.size)))
        if ids.size >= 1 << 32:
            raise ValueError("a 256-bit index holds fewer than 2**32 hashes")
        id_dtype = np.int64 if ids.size and int(ids.max()) >= 1 << 31 else np.int32
        directories, order = _counting_sort(
            _keys(hashes, int(self._starts[0]), int(self._widths[0])), int(self._widths[0])
        )
        self._hashes = np.ascontiguousarray(hashes[order])
        self._ids = np.ascontiguousarray(ids[order], dtype=id_dtype)
        parts, bases, positions = [directories], [0], []
        for t in range(1, self._chunks):
            offsets, table_order = _counting_sort(
                _keys(self._hashes, int(self._starts[t]), int(self._widths[t])),
                int(self._widths[t]),
            )
            bases.append(bases[-1] + parts[-1].size)
            parts.append(offsets)
            positions.append(table_order)
        self._directories = np.concatenate(parts)
        self._directory_base = np.array(bases, dtype=np.int64)
        self._positions = (
            np.concatenate(positions) if positions and ids.size else np.empty(0, np.uint32)
        )
        self._built_size = int(ids.size)
        self._plans: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def replan(self, radius: int) -> bool:
        """Expect searches at ``radius`` from now on; rebuild (then swap) if that changes M or
        the chunk widths (:func:`chunk_widths`). Any radius is answered exactly either way."""
        check_radius(radius, WIDE_BITS)
        self._radius_hint = radius
        chunks = self._planned_chunks(self._built_size + self._delta_count)
        if chunk_widths(chunks, radius) == tuple(self._widths.tolist()):
            return False
        self._merge()
        return True

    def _merge(self, extra_ids: I64Array | None = None, extra: U64Array | None = None) -> None:
        """Fold the delta (and a bulk batch) in, drop tombstones; build, then swap."""
        id_parts = [self._ids.astype(np.int64), self._delta_ids[: self._delta_count]]
        hash_parts = [self._hashes, self._delta_hashes[: self._delta_count]]
        if extra_ids is not None and extra is not None:
            id_parts.append(extra_ids)
            hash_parts.append(extra)
        ids, hashes = np.concatenate(id_parts), np.concatenate(hash_parts)
        if self._tombstones:
            keep = ~np.isin(ids, np.fromiter(self._tombstones, dtype=np.int64))
            ids, hashes = ids[keep], hashes[keep]
        self._tombstones.clear()
        self._delta_count = 0
        self._delta_ids = np.empty(256, np.int64)
        self._delta_hashes = np.empty((256, WORDS), np.uint64)
        self._rebuild(np.ascontiguousarray(ids), np.ascontiguousarray(hashes))

    def _merge_threshold(self) -> int:
        return max(self._min_merge, self._built_size // MERGE_FRACTION)

    # -- the HammingIndex interface -------------------------------------------------------------

    def add(self, ids: Sequence[int] | I64Array, hashes: Sequence[int] | U64Array) -> None:
        id_arr, hash_arr = as_i64(ids), as_words(hashes)
        if id_arr.shape[0] != hash_arr.shape[0]:
            raise ValueError("ids and hashes differ in length")
        if self._delta_count + id_arr.size > self._merge_threshold():
            self._merge(id_arr, hash_arr)
            return
        needed = self._delta_count + id_arr.size
        if needed > self._delta_ids.size:
            size = max(needed, self._delta_ids.size * 2)
            grown_ids, grown = np.empty(size, np.int64), np.empty((size, WORDS), np.uint64)
            grown_ids[: self._delta_count] = self._delta_ids[: self._delta_count]
            grown[: self._delta_count] = self._delta_hashes[: self._delta_count]
            self._delta_ids, self._delta_hashes = grown_ids, grown
        self._delta_ids[self._delta_count : needed] = id_arr
        self._delta_hashes[self._delta_count : needed] = hash_arr
        self._delta_count = needed

    def remove(self, ids: Sequence[int] | I64Array, hashes: Sequence[int] | U64Array) -> int:
        id_arr, hash_arr = as_i64(ids), as_words(hashes)
        removed = 0
        for id_, row in zip(id_arr.tolist(), hash_arr, strict=True):
            delta = np.flatnonzero(
                (self._delta_ids[: self._delta_count] == id_)
                & (self._delta_hashes[: self._delta_count] == row).all(axis=1)
            )
            if delta.size:
                last = self._delta_count - 1
                slot = int(delta[0])
                self._delta_ids[slot] = self._delta_ids[last]
                self._delta_hashes[slot] = self._delta_hashes[last]
                self._delta_count = last
                removed += 1
            elif id_ not in self._tombstones and any(
                hit_id == id_ for hit_id, _ in self._search_main(row, 0)
            ):
                self._tombstones.add(id_)
                removed += 1
        if len(self._tombstones) > self._merge_threshold():
            self._merge()
        return removed

    def discard(self, ids: Sequence[int] | I64Array) -> None:
        """Delete ids the caller knows are live here, without their hashes (the matcher keeps
        no copy of a 256-bit hash outside its index)."""
        id_arr = as_i64(ids)
        count = self._delta_count
        in_delta = np.isin(self._delta_ids[:count], id_arr)
        delta_ids = set(self._delta_ids[:count][in_delta].tolist())
        if in_delta.any():
            keep = ~in_delta
            kept = int(keep.sum())
            self._delta_ids[:kept] = self._delta_ids[:count][keep]
            self._delta_hashes[:kept] = self._delta_hashes[:count][keep]
            self._delta_count = kept
        self._tombstones.update(i for i in id_arr.tolist() if i not in delta_ids)
        if len(self._tombstones) > self._merge_threshold():
            self._merge()

    def _probe_plan(self, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-table radii and the flat flip masks with each table's start (cached)."""
        plan = self._plans.get(radius)
        if plan is None:
            per_table, extra = divmod(radius, self._chunks)
            table_radius = np.array(
                [per_table if t <= extra else per_table - 1 for t in range(self._chunks)],
                dtype=np.int64,
            )
            masks = [
                _flip_masks(int(self._widths[t]), max(int(table_radius[t]), 0))
                if table_radius[t] >= 0
                else np.empty(0, np.uint64)
                for t in range(self._chunks)
            ]
            bases = np.concatenate([[0], np.cumsum([m.size for m in masks])]).astype(np.int64)
            plan = self._plans[radius] = (table_radius, np.concatenate(masks), bases)
        return plan

    def _search_main(self, query: U64Array, radius: int) -> list[Hit]:
        if self._built_size == 0:
            return []
        table_radius, masks, mask_base = self._probe_plan(radius)
        while True:
            found = _probe(
                self._hashes,
                self._ids,
                self._directories,
                self._directory_base,
                self._positions,
                self._starts,
                self._widths,
                table_radius,
                masks,
                mask_base,
                query,
                radius,
                self._rows,
                self._tables_of,
                self._out_ids,
                self._out_dist,
            )
            if found < 0:
                self._rows = np.empty(-found * 2, np.int64)
                self._tables_of = np.empty(-found * 2, np.int8)
            elif found <= self._out_ids.size:
                break
            else:
                self._out_ids = np.zeros(found * 2, np.int64)
                self._out_dist = np.zeros(found * 2, np.int64)
        return list(
            zip(self._out_ids[:found].tolist(), self._out_dist[:found].tolist(), strict=True)
        )

    def search(self, query: int, radius: int) -> list[Hit]:
        check_radius(radius, WIDE_BITS)
        return self._search_words(query_words(query), radius)

    def _search_words(self, query: U64Array, radius: int) -> list[Hit]:
        hits = self._search_main(query, radius)
        if self._tombstones:
            hits = [hit for hit in hits if hit[0] not in self._tombstones]
        if self._delta_count:
            while True:
                found = _scan(
                    self._delta_hashes,
                    self._delta_ids,
                    self._delta_count,
                    query,
                    radius,
                    self._out_ids,
                    self._out_dist,
                    0,
                )
                if found <= self._out_ids.size:
                    break
                self._out_ids = np.zeros(found * 2, np.int64)
                self._out_dist = np.zeros(found * 2, np.int64)
            hits.extend(
                zip(self._out_ids[:found].tolist(), self._out_dist[:found].tolist(), strict=True)
            )
        hits.sort(key=lambda hit: (hit[1], hit[0]))
        return hits

    def search_many(self, queries: Sequence[int] | U64Array, radius: int) -> list[list[Hit]]:
        check_radius(radius, WIDE_BITS)
        return [self._search_words(row, radius) for row in as_words(queries)]

    def __len__(self) -> int:
        return self._built_size - len(self._tombstones) + self._delta_count

    def entries(self) -> tuple[I64Array, U64Array]:
        ids, hashes = self._ids.astype(np.int64), self._hashes
        if self._tombstones:
            keep = ~np.isin(ids, np.fromiter(self._tombstones, np.int64, len(self._tombstones)))
            ids, hashes = ids[keep], hashes[keep]
        return (
            np.concatenate([ids, self._delta_ids[: self._delta_count]]),
            np.concatenate([hashes, self._delta_hashes[: self._delta_count]]),
        )

    def snapshot(self) -> MultiIndexHash256:
        # As MultiIndexHash.snapshot; _rows and _tables_of are the probe's scratch buffers.
        count = self._delta_count
        return reader_copy(
            self,
            _delta_ids=self._delta_ids[:count].copy(),
            _delta_hashes=self._delta_hashes[:count].copy(),
            _tombstones=set(self._tombstones),
            _out_ids=np.zeros(256, np.int64),
            _out_dist=np.zeros(256, np.int64),
            _rows=np.empty(4096, np.int64),
            _tables_of=np.empty(4096, np.int8),
            _plans=dict(self._plans),
        )

    @property
    def chunks(self) -> int:
        """M, the number of tables."""
        return self._chunks

    @property
    def radius(self) -> int:
        """The radius M is planned for (see :meth:`replan`)."""
        return self._radius_hint

    @property
    def indexed(self) -> int:
        """Entries held in the tables, tombstoned ones included."""
        return self._built_size

    @property
    def pending(self) -> int:
        """Entries in the delta, scanned linearly until the next rebuild."""
        return self._delta_count

    @property
    def tombstones(self) -> int:
        """Deleted entries still in the tables, filtered from results until the next rebuild."""
        return len(self._tombstones)

    @property
    def nbytes(self) -> int:
        held = (
            self._hashes.nbytes
            + self._ids.nbytes
            + self._directories.nbytes
            + self._positions.nbytes
            + self._delta_ids.nbytes
            + self._delta_hashes.nbytes
        )
        return int(held + 60 * len(self._tombstones))


__all__ = ["MultiIndexHash256", "choose_chunks", "chunk_widths", "words_to_int"]
