"""Multi-index hashing: exact Hamming-radius search that stays fast at 10M hashes.

Owns the layout and the probe rule. The 64 bits are split into M contiguous chunks; table i
buckets every hash by its chunk i (a CSR directory of 2**w_i offsets, with each bucket storing
the full hash and the id (int32 while ids allow) inline, because fetching the hash by id costs a
cache miss per candidate). Pigeonhole, in its tight form (Norouzi et al., 2012): if d(h, q) <= r and
r = s*M + a with 0 <= a < M, then some chunk i <= a differs in <= s bits, or some chunk i > a
differs in <= s-1 bits. So table i is probed at every key within s (or s-1) bits of the query's
chunk, each candidate is verified by its full distance, and a candidate is kept only by the
first table whose probe could reach it, which removes duplicates without a set.

Live updates: new entries go to a small unsorted delta that is scanned linearly; deletions of
indexed entries are tombstones filtered from results. The tables are rebuilt (counting sort,
O(n)) and swapped in when the delta or the tombstones grow past 1/32 of the indexed size, or
when the expected radius changes M (:meth:`MultiIndexHash.replan`): always by the writer,
never by a search (readers search :meth:`MultiIndexHash.snapshot` copies). Must not do I/O.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import cache

import numba
import numpy as np

from pipeline.core.index._kernels import njit_cached, popcount64, scan_within
from pipeline.core.index.base import (
    Hit,
    I64Array,
    U64Array,
    as_i64,
    as_u64,
    check_radius,
    reader_copy,
)

BITS = 64
#: M >= 3 keeps each chunk directory at <= 2**22 int32 offsets (16 MB); beyond 10 chunks of
#: 6-7 bits a bucket holds thousands of entries at 10M hashes and probing stops paying.
MIN_CHUNKS, MAX_CHUNKS = 3, 10

#: The delta (and the tombstones) are folded in past this fraction of the indexed size. At 10M
#: hashes a rebuild (3 tables) takes ~1.9 s on the 2-vCPU development machine, ~190 ns an
#: entry, and the delta scan ~0.54 ns an entry: a delta of 1/32 (312k) adds ~0.17 ms to each
#: search, and a bulk addition in 20k-record chunks rebuilds every ~16 chunks. (A load from
#: empty goes in as one batch: :class:`pipeline.core.matching.Matcher` defers it.)
MERGE_FRACTION = 32


def chunk_widths(chunks: int) -> tuple[int, ...]:
    """Widths of M contiguous chunks covering 64 bits, wider chunks first (22/21/21 for 3)."""
    base, extra = divmod(BITS, chunks)
    return tuple(base + 1 if i < extra else base for i in range(chunks))


def choose_chunks(size: int, radius: int) -> int:
    """M for an index of ``size`` hashes searched at ``radius``: the documented rule.

    M = max(round(64 / log2 n), ceil((r + 1) / 3)), clamped to [3, 10].
    The first term makes buckets hold about one entry (w ~ log2 n), so probes rather than
    bucket scans dominate; the second keeps the per-table radius floor(r / M) at most 2, since
    the probes per table, V(w, s), grow like w**s. At 10M hashes this gives M = 3 for r <= 8,
    4 for r = 10 and 5 for r = 12. Measured at 10M clustered pHash-like hashes on the 2-vCPU
    development machine (queries/s with M = 3/4/5): r = 8: 14k/8.4k/7.1k; r = 10: 3.5k/
    3.1-3.8k/2.6k; r = 12: 1.2k/1.5k/1.4k. So the rule's M is the fastest at r = 8 and within
    ~10% of the fastest at r = 10 and 12. M >= 3 keeps each directory at <= 2**22 offsets.
    """
    by_size = round(BITS / math.log2(max(size, 4)))
    by_radius = math.ceil((radius + 1) / 3)
    return min(MAX_CHUNKS, max(MIN_CHUNKS, by_size, by_radius))


@cache
def _flip_masks(width: int, max_bits: int) -> np.ndarray:
    """All width-bit masks with at most max_bits set, fewest bits first."""
    count = sum(math.comb(width, k) for k in range(max_bits + 1))
    if count * 16 > 1 << width:
        # A large share of all keys (big radius on wide chunks, e.g. 4M of 4.2M at w=22,
        # r=21): filtering every key by popcount takes ~0.1 s where combinations take seconds.
        keys = np.arange(1 << width, dtype=np.uint64)
        bits = np.bitwise_count(keys)
        keep = bits <= max_bits
        return np.ascontiguousarray(keys[keep][np.argsort(bits[keep], kind="stable")])
    masks = [0]
    for k in range(1, max_bits + 1):
        for combo in itertools.combinations(range(width), k):
            value = 0
            for bit in combo:
                value |= 1 << bit
            masks.append(value)
    return np.array(masks, dtype=np.uint64)


# nogil: a build runs on the hash-list feed's thread while the event loop serves (a 10M-entry
# table takes ~0.6 s, which would otherwise hold the GIL, and the loop, all that time).
@njit_cached(nogil=True)
def _build_table(
    hashes: np.ndarray, ids: np.ndarray, shift: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counting sort by chunk key: (offsets[2**w + 1], bucket hashes, bucket ids)."""
    n = hashes.shape[0]
    mask = np.uint64((1 << width) - 1)
    # int32 offsets halve the directory (2**22 of them at M=3); indexes stay below 2**31.
    offsets = np.zeros((1 << width) + 1, dtype=np.int32)
    for i in range(n):
        key = (hashes[i] >> np.uint64(shift)) & mask
        offsets[key + 1] += 1
    for k in range(1 << width):
        offsets[k + 1] += offsets[k]
    cursor = offsets[:-1].astype(np.int64)
    out_hashes = np.empty(n, dtype=np.uint64)
    out_ids = np.empty_like(ids)
    for i in range(n):
        key = (hashes[i] >> np.uint64(shift)) & mask
        pos = cursor[key]
        out_hashes[pos] = hashes[i]
        out_ids[pos] = ids[i]
        cursor[key] = pos + 1
    return offsets, out_hashes, out_ids


@njit_cached()
def _probe(
    offsets: numba.typed.List,
    bucket_hashes: numba.typed.List,
    bucket_ids: numba.typed.List,
    shifts: np.ndarray,
    widths: np.ndarray,
    table_radius: np.ndarray,
    masks: numba.typed.List,
    query: np.uint64,
    radius: int,
    out_ids: np.ndarray,
    out_dist: np.ndarray,
) -> int:
    cap = out_ids.shape[0]
    found = 0
    tables = shifts.shape[0]
    for t in range(tables):
        if table_radius[t] < 0:
            continue
        chunk_mask = np.uint64((1 << widths[t]) - 1)
        qkey = (query >> np.uint64(shifts[t])) & chunk_mask
        table_offsets = offsets[t]
        table_hashes = bucket_hashes[t]
        table_ids = bucket_ids[t]
        table_masks = masks[t]
        for m in range(table_masks.shape[0]):
            key = qkey ^ table_masks[m]
            start = table_offsets[key]
            end = table_offsets[key + 1]
            for j in range(start, end):
                h = table_hashes[j]
                d = popcount64(h ^ query)
                if d > radius:
                    continue
                # Keep it only if no earlier table's probe reached it (dedupe without a set).
                seen = False
                for e in range(t):
                    if table_radius[e] < 0:
                        continue
                    emask = np.uint64((1 << widths[e]) - 1)
                    ed = popcount64(
                        ((h >> np.uint64(shifts[e])) & emask)
                        ^ ((query >> np.uint64(shifts[e])) & emask)
                    )
                    if ed <= table_radius[e]:
                        seen = True
                        break
                if seen:
                    continue
                if found < cap:
                    out_ids[found] = table_ids[j]
                    out_dist[found] = d
                found += 1
    return found


class MultiIndexHash:
    """Exact Hamming-radius search by multi-index hashing over 64-bit hashes.

    ``chunks`` fixes M; by default M follows :func:`choose_chunks` for the indexed size and
    ``radius``, the radius the index expects to be searched at (any radius is answered
    exactly; the expected one is answered fastest). Every rebuild re-chooses M for the size
    reached, and :meth:`replan` re-chooses it for a new expected radius.

    ``merge_threshold`` is the smallest delta (or tombstone count) that triggers a rebuild;
    the effective threshold is ``max(merge_threshold, indexed size // MERGE_FRACTION)``.
    Tests set it to 1-8 so that small sets live in the tables.
    """

    name = "mih"

    def __init__(
        self,
        chunks: int | None = None,
        *,
        expected_size: int = 1 << 20,
        radius: int = 8,
        merge_threshold: int = 4096,
    ) -> None:
        if chunks is not None and not MIN_CHUNKS <= chunks <= MAX_CHUNKS:
            raise ValueError(f"chunks must be in [{MIN_CHUNKS}, {MAX_CHUNKS}], got {chunks}")
        check_radius(radius)
        if merge_threshold < 1:
            raise ValueError(f"merge_threshold must be >= 1, got {merge_threshold}")
        self._fixed_chunks = chunks
        self._radius_hint = radius
        self._min_merge = merge_threshold
        self._set_chunks(chunks or choose_chunks(expected_size, radius))
        self._tables: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._typed: tuple[numba.typed.List, ...] | None = None
        self._built_size = 0
        self._delta_ids: I64Array = np.empty(1024, np.int64)
        self._delta_hashes: U64Array = np.empty(1024, np.uint64)
        self._delta_count = 0
        self._tombstones: set[int] = set()
        self._out_ids: I64Array = np.zeros(256, np.int64)
        self._out_dist = np.zeros(256, np.int64)
        self._rebuild(np.empty(0, np.int64), np.empty(0, np.uint64))

    # -- building -----------------------------------------------------------------------------

    def _set_chunks(self, chunks: int) -> None:
        self._chunks = chunks
        self._widths = np.array(chunk_widths(chunks), dtype=np.int64)
        self._shifts = np.array(
            [BITS - int(self._widths[: i + 1].sum()) for i in range(chunks)], dtype=np.int64
        )

    def _planned_chunks(self, size: int) -> int:
        if self._fixed_chunks is not None:
            return self._fixed_chunks
        # Below 2**16 entries the tables are tiny whatever M is; the floor keeps small lists
        # from being rebuilt with a new M at every merge while they grow.
        return choose_chunks(max(size, 1 << 16), self._radius_hint)

    def _rebuild(self, ids: I64Array, hashes: U64Array) -> None:
        chunks = self._planned_chunks(int(ids.size))
        if chunks != self._chunks:
            self._set_chunks(chunks)
        # Each table stores (hash, id) inline per entry: int32 ids make that 12 bytes, not 16,
        # which at 10M hashes is 36+3 instead of 48+3 bytes/hash with 3 tables (48, not 64,
        # with 4). The matcher's ids stay below 2**31 unless a worker applies 2 billion updates
        # in one run; past that the tables fall back to int64.
        if ids.size and int(ids.max()) >= 1 << 31:
            ids = np.ascontiguousarray(ids, dtype=np.int64)
        else:
            ids = np.ascontiguousarray(ids, dtype=np.int32)
        self._tables = [
            _build_table(hashes, ids, int(shift), int(width))
            for shift, width in zip(self._shifts, self._widths, strict=True)
        ]
        self._built_size = int(ids.size)
        self._typed = None
        self._plans: dict[int, tuple[np.ndarray, numba.typed.List]] = {}

    def replan(self, radius: int) -> bool:
        """Expect searches at ``radius`` from now on; rebuild (then swap) if that changes M.

        Returns True when the tables were rebuilt. Cost: one O(n) rebuild, as a merge.
        """
        check_radius(radius)
        self._radius_hint = radius
        if self._planned_chunks(self._built_size + self._delta_count) == self._chunks:
            return False
        self._merge()
        return True

    def _typed_tables(self) -> tuple[numba.typed.List, ...]:
        if self._typed is None:
            offsets, bucket_hashes, bucket_ids = (
                numba.typed.List(),
                numba.typed.List(),
                numba.typed.List(),
            )
            for table_offsets, table_hashes, table_ids in self._tables:
                offsets.append(table_offsets)
                bucket_hashes.append(table_hashes)
                bucket_ids.append(table_ids)
            self._typed = (offsets, bucket_hashes, bucket_ids)
        return self._typed

    def _merge(
        self, extra_ids: I64Array | None = None, extra_hashes: U64Array | None = None
    ) -> None:
        """Fold the delta (and a bulk batch) into the tables, drop tombstones; build, then swap."""
        # Table 0 holds every indexed entry, so no separate copy of (id, hash) is kept.
        _, main_hashes, main_ids = self._tables[0]
        id_parts = [main_ids, self._delta_ids[: self._delta_count]]
        hash_parts = [main_hashes, self._delta_hashes[: self._delta_count]]
        if extra_ids is not None and extra_hashes is not None:
            id_parts.append(extra_ids)
            hash_parts.append(extra_hashes)
        ids, hashes = np.concatenate(id_parts), np.concatenate(hash_parts)
        if self._tombstones:
            dead = np.fromiter(self._tombstones, dtype=np.int64)
            keep = ~np.isin(ids, dead)
            ids, hashes = ids[keep], hashes[keep]
        self._tombstones.clear()
        self._delta_count = 0
        self._delta_ids, self._delta_hashes = np.empty(1024, np.int64), np.empty(1024, np.uint64)
        self._rebuild(np.ascontiguousarray(ids), np.ascontiguousarray(hashes))

    def _merge_threshold(self) -> int:
        return max(self._min_merge, self._built_size // MERGE_FRACTION)

    # -- the HammingIndex interface -------------------------------------------------------------

    def add(self, ids: Sequence[int] | I64Array, hashes: Sequence[int] | U64Array) -> None:
        id_arr, hash_arr = as_i64(ids), as_u64(hashes)
        if id_arr.shape != hash_arr.shape:
            raise ValueError("ids and hashes differ in length")
        if self._delta_count + id_arr.size > self._merge_threshold():
            # Large batches (initial loads) go straight into a rebuild, never through the delta.
            self._merge(id_arr, hash_arr)
            return
        self._delta_ids, self._delta_hashes = self._grow_delta(id_arr.size)
        self._append_delta(id_arr, hash_arr)

    def _grow_delta(self, extra: int) -> tuple[I64Array, U64Array]:
        needed = self._delta_count + extra
        if needed <= self._delta_ids.size:
            return self._delta_ids, self._delta_hashes
        size = max(needed, self._delta_ids.size * 2)
        ids = np.empty(size, np.int64)
        hashes = np.empty(size, np.uint64)
        ids[: self._delta_count] = self._delta_ids[: self._delta_count]
        hashes[: self._delta_count] = self._delta_hashes[: self._delta_count]
        return ids, hashes

    def _append_delta(self, ids: I64Array, hashes: U64Array) -> None:
        end = self._delta_count + ids.size
        self._delta_ids[self._delta_count : end] = ids
        self._delta_hashes[self._delta_count : end] = hashes
        self._delta_count = end

    def remove(self, ids: Sequence[int] | I64Array, hashes: Sequence[int] | U64Array) -> int:
        id_arr, hash_arr = as_i64(ids), as_u64(hashes)
        removed = 0
        for id_, h in zip(id_arr.tolist(), hash_arr.tolist(), strict=True):
            delta = np.flatnonzero(
                (self._delta_ids[: self._delta_count] == id_)
                & (self._delta_hashes[: self._delta_count] == np.uint64(h))
            )
            if delta.size:
                last = self._delta_count - 1
                slot = int(delta[0])
                self._delta_ids[slot] = self._delta_ids[last]
                self._delta_hashes[slot] = self._delta_hashes[last]
                self._delta_count = last
                removed += 1
            elif id_ not in self._tombstones and any(
                hit_id == id_ for hit_id, _ in self._search_main(int(h), 0)
            ):
                self._tombstones.add(id_)
                removed += 1
        if len(self._tombstones) > self._merge_threshold():
            self._merge()
        return removed

    def _probe_plan(self, radius: int) -> tuple[np.ndarray, numba.typed.List]:
        """Per-table search radii and flip masks for ``radius`` (cached until a rebuild)."""
        plan = self._plans.get(radius)
        if plan is None:
            per_table, extra = divmod(radius, self._chunks)
            table_radius = np.array(
                [per_table if t <= extra else per_table - 1 for t in range(self._chunks)],
                dtype=np.int64,
            )
            masks = numba.typed.List()
            for t in range(self._chunks):
                masks.append(_flip_masks(int(self._widths[t]), max(int(table_radius[t]), 0)))
            plan = self._plans[radius] = (table_radius, masks)
        return plan

    def _search_main(self, query: int, radius: int) -> list[Hit]:
        if self._built_size == 0:
            return []
        table_radius, masks = self._probe_plan(radius)
        offsets, bucket_hashes, bucket_ids = self._typed_tables()
        while True:
            found = _probe(
                offsets,
                bucket_hashes,
                bucket_ids,
                self._shifts,
                self._widths,
                table_radius,
                masks,
                np.uint64(query),
                radius,
                self._out_ids,
                self._out_dist,
            )
            if found <= self._out_ids.size:
                break
            self._out_ids = np.zeros(found * 2, np.int64)
            self._out_dist = np.zeros(found * 2, np.int64)
        return list(
            zip(self._out_ids[:found].tolist(), self._out_dist[:found].tolist(), strict=True)
        )

    def search(self, query: int, radius: int) -> list[Hit]:
        check_radius(radius)
        hits = self._search_main(query, radius)
        if self._tombstones:
            hits = [hit for hit in hits if hit[0] not in self._tombstones]
        if self._delta_count:
            while True:
                found = scan_within(
                    self._delta_hashes,
                    self._delta_ids,
                    self._delta_count,
                    np.uint64(query),
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
        return [self.search(int(q), radius) for q in as_u64(queries)]

    def __len__(self) -> int:
        return self._built_size - len(self._tombstones) + self._delta_count

    def entries(self) -> tuple[I64Array, U64Array]:
        _, hashes, ids = self._tables[0]
        if self._tombstones:
            keep = ~np.isin(ids, np.fromiter(self._tombstones, np.int64, len(self._tombstones)))
            ids, hashes = ids[keep], hashes[keep]
        return (
            np.concatenate([ids, self._delta_ids[: self._delta_count]]).astype(np.int64),
            np.concatenate([hashes, self._delta_hashes[: self._delta_count]]),
        )

    def snapshot(self) -> MultiIndexHash:
        # Rebuilds make new tables; add and remove change the delta and tombstones in place;
        # searches write their hits into scratch buffers: the copy gets its own of each.
        count = self._delta_count
        return reader_copy(
            self,
            _delta_ids=self._delta_ids[:count].copy(),
            _delta_hashes=self._delta_hashes[:count].copy(),
            _tombstones=set(self._tombstones),
            _out_ids=np.zeros(256, np.int64),
            _out_dist=np.zeros(256, np.int64),
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
        tables = sum(o.nbytes + h.nbytes + i.nbytes for o, h, i in self._tables)
        delta = self._delta_ids.nbytes + self._delta_hashes.nbytes
        # Python set entries cost ~ 60 bytes each; counted so bytes/hash is honest.
        return int(tables + delta + 60 * len(self._tombstones))
