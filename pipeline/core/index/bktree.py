"""A BK-tree over 64-bit hashes, held in flat numpy arrays and searched by compiled code.

Owns the tree layout: node i stores its hash, id, a live flag and the Hamming distance to its
parent; children form a singly linked list (``first_child`` / ``next_sibling``), so a node costs
26 bytes instead of a Python object with a dict of children (~190 bytes in pybktree). Deletion
clears the live flag: the node keeps routing searches (a BK-tree cannot unlink an inner node
without re-inserting its subtree), and is dropped at the next :meth:`BKTree.compact`.

Why still a BK-tree when multi-index hashing is faster at scale: it is the structure the
pipeline's design names, it is compact, and at small radii (r <= 4) it visits a few percent of
nodes and is competitive; ``pipeline bench index`` measures where each one wins.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.core.index._kernels import njit_cached, popcount64
from pipeline.core.index.base import (
    Hit,
    I64Array,
    U64Array,
    as_i64,
    as_u64,
    check_radius,
    reader_copy,
)

_NONE = -1


@njit_cached()
def _insert_many(
    hashes: np.ndarray,
    ids: np.ndarray,
    live: np.ndarray,
    first_child: np.ndarray,
    next_sibling: np.ndarray,
    edge: np.ndarray,
    size: int,
    new_hashes: np.ndarray,
    new_ids: np.ndarray,
) -> int:
    """Insert new nodes at slots size.. (arrays already have room); return the new size."""
    for k in range(new_hashes.shape[0]):
        h = new_hashes[k]
        slot = size
        hashes[slot] = h
        ids[slot] = new_ids[k]
        live[slot] = True
        first_child[slot] = -1
        next_sibling[slot] = -1
        edge[slot] = 0
        size += 1
        if slot == 0:
            continue
        node = 0
        while True:
            d = popcount64(hashes[node] ^ h)
            # Siblings are kept sorted by edge so searches can stop early.
            prev = -1
            child = first_child[node]
            while child != -1 and edge[child] < d:
                prev = child
                child = next_sibling[child]
            if child != -1 and edge[child] == d:
                node = child
                continue
            edge[slot] = d
            next_sibling[slot] = child
            if prev == -1:
                first_child[node] = slot
            else:
                next_sibling[prev] = slot
            break
    return size


@njit_cached()
def _breadth_first_order(
    first_child: np.ndarray, next_sibling: np.ndarray, size: int
) -> np.ndarray:
    """Old slot of each new slot when nodes are renumbered breadth-first (siblings adjacent)."""
    order = np.empty(size, dtype=np.int64)
    if size == 0:
        return order
    order[0] = 0
    head = 0
    tail = 1
    while head < tail:
        node = order[head]
        head += 1
        child = first_child[node]
        while child != -1:
            order[tail] = child
            tail += 1
            child = next_sibling[child]
    return order


@njit_cached()
def _search(
    hashes: np.ndarray,
    ids: np.ndarray,
    live: np.ndarray,
    first_child: np.ndarray,
    next_sibling: np.ndarray,
    edge: np.ndarray,
    size: int,
    query: np.uint64,
    radius: int,
    stack: np.ndarray,
    stack_distance: np.ndarray,
    out_ids: np.ndarray,
    out_dist: np.ndarray,
) -> int:
    """Depth-first search; returns the number of hits (may exceed the output buffers).

    A child's distance to the query is computed while its sibling run is scanned (adjacent in
    memory after a relayout) and carried on the stack, so a popped node's hash is never
    re-read from a cold cache line.
    """
    if size == 0:
        return 0
    cap = out_ids.shape[0]
    found = 0
    stack[0] = 0
    stack_distance[0] = popcount64(hashes[0] ^ query)
    top = 1
    while top > 0:
        top -= 1
        node = stack[top]
        d = stack_distance[top]
        if d <= radius and live[node]:
            if found < cap:
                out_ids[found] = ids[node]
                out_dist[found] = d
            found += 1
        low = d - radius
        high = d + radius
        child = first_child[node]
        while child != -1:
            e = edge[child]
            if e > high:
                break
            if e >= low:
                stack[top] = child
                stack_distance[top] = popcount64(hashes[child] ^ query)
                top += 1
            child = next_sibling[child]
    return found


@njit_cached()
def _find_live(
    hashes: np.ndarray,
    ids: np.ndarray,
    live: np.ndarray,
    first_child: np.ndarray,
    next_sibling: np.ndarray,
    edge: np.ndarray,
    size: int,
    target_hash: np.uint64,
    target_id: int,
) -> int:
    """Slot of the live node with exactly this hash and id, or -1 (follows distance-0 paths)."""
    if size == 0:
        return -1
    node = 0
    while node != -1:
        d = popcount64(hashes[node] ^ target_hash)
        if d == 0 and live[node] and ids[node] == target_id:
            return node
        child = first_child[node]
        nxt = -1
        while child != -1:
            if edge[child] == d:
                nxt = child
                break
            child = next_sibling[child]
        node = nxt
    return -1


class BKTree:
    """Exact Hamming-radius search in a BK-tree (metric tree keyed by Hamming distance)."""

    name = "bktree"

    def __init__(self, capacity: int = 1024) -> None:
        capacity = max(16, capacity)
        self._hashes: U64Array = np.zeros(capacity, dtype=np.uint64)
        self._ids: I64Array = np.zeros(capacity, dtype=np.int64)
        self._live = np.zeros(capacity, dtype=np.bool_)
        self._first_child = np.full(capacity, _NONE, dtype=np.int32)
        self._next_sibling = np.full(capacity, _NONE, dtype=np.int32)
        self._edge = np.zeros(capacity, dtype=np.uint8)
        self._size = 0
        self._live_count = 0
        self._stack = np.zeros(capacity, dtype=np.int32)
        self._stack_distance = np.zeros(capacity, dtype=np.int32)
        self._out_ids: I64Array = np.zeros(64, dtype=np.int64)
        self._out_dist = np.zeros(64, dtype=np.int64)

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (
            self._hashes,
            self._ids,
            self._live,
            self._first_child,
            self._next_sibling,
            self._edge,
        )

    def _reserve(self, extra: int) -> None:
        needed = self._size + extra
        capacity = self._hashes.shape[0]
        if needed <= capacity:
            return
        new_capacity = max(needed, capacity * 2)
        grow = new_capacity - capacity
        self._hashes = np.concatenate([self._hashes, np.zeros(grow, np.uint64)])
        self._ids = np.concatenate([self._ids, np.zeros(grow, np.int64)])
        self._live = np.concatenate([self._live, np.zeros(grow, np.bool_)])
        self._first_child = np.concatenate([self._first_child, np.full(grow, _NONE, np.int32)])
        self._next_sibling = np.concatenate([self._next_sibling, np.full(grow, _NONE, np.int32)])
        self._edge = np.concatenate([self._edge, np.zeros(grow, np.uint8)])
        self._stack = np.zeros(new_capacity, dtype=np.int32)
        self._stack_distance = np.zeros(new_capacity, dtype=np.int32)

    def add(self, ids: Sequence[int] | I64Array, hashes: Sequence[int] | U64Array) -> None:
        id_arr, hash_arr = as_i64(ids), as_u64(hashes)
        if id_arr.shape != hash_arr.shape:
            raise ValueError("ids and hashes differ in length")
        self._reserve(id_arr.size)
        before = self._size
        self._size = _insert_many(*self._arrays(), self._size, hash_arr, id_arr)
        self._live_count += int(id_arr.size)
        if id_arr.size >= max(1024, before):
            # After a bulk load, renumber so each node's children are adjacent in memory.
            self._relayout()

    def _relayout(self) -> None:
        size = self._size
        order = _breadth_first_order(self._first_child, self._next_sibling, size)
        new_slot = np.empty(size + 1, dtype=np.int64)
        new_slot[order] = np.arange(size)
        new_slot[size] = _NONE  # maps the "no node" marker (-1 indexes the last element)

        def remap(links: np.ndarray) -> np.ndarray:
            out = np.full(links.shape[0], _NONE, dtype=np.int32)
            out[:size] = new_slot[links[:size][order]]
            return out

        first_child, next_sibling = remap(self._first_child), remap(self._next_sibling)
        for name in ("_hashes", "_ids", "_live", "_edge"):
            array = getattr(self, name)
            array[:size] = array[:size][order]
        self._first_child, self._next_sibling = first_child, next_sibling

    def remove(self, ids: Sequence[int] | I64Array, hashes: Sequence[int] | U64Array) -> int:
        id_arr, hash_arr = as_i64(ids), as_u64(hashes)
        removed = 0
        for id_, h in zip(id_arr.tolist(), hash_arr.tolist(), strict=True):
            slot = _find_live(*self._arrays(), self._size, np.uint64(h), id_)
            if slot >= 0:
                self._live[slot] = False
                removed += 1
        self._live_count -= removed
        return removed

    def search(self, query: int, radius: int) -> list[Hit]:
        check_radius(radius)
        while True:
            found = _search(
                *self._arrays(),
                self._size,
                np.uint64(query),
                radius,
                self._stack,
                self._stack_distance,
                self._out_ids,
                self._out_dist,
            )
            if found <= self._out_ids.shape[0]:
                break
            self._out_ids = np.zeros(found * 2, dtype=np.int64)
            self._out_dist = np.zeros(found * 2, dtype=np.int64)
        hits = list(
            zip(self._out_ids[:found].tolist(), self._out_dist[:found].tolist(), strict=True)
        )
        hits.sort(key=lambda hit: (hit[1], hit[0]))
        return hits

    def search_many(self, queries: Sequence[int] | U64Array, radius: int) -> list[list[Hit]]:
        return [self.search(int(q), radius) for q in as_u64(queries)]

    def compact(self) -> None:
        """Rebuild from live nodes only (drops tombstones; O(n log n) inserts)."""
        keep = self._live[: self._size]
        ids, hashes = self._ids[: self._size][keep].copy(), self._hashes[: self._size][keep].copy()
        fresh = BKTree(capacity=int(ids.size))
        if ids.size:
            fresh.add(ids, hashes)
        self.__dict__.update(fresh.__dict__)

    def entries(self) -> tuple[I64Array, U64Array]:
        keep = self._live[: self._size]
        return self._ids[: self._size][keep].copy(), self._hashes[: self._size][keep].copy()

    def snapshot(self) -> BKTree:
        """A full copy: inserts link new nodes into existing ones in place (the BK-tree is
        never chosen automatically; a list served by it pays O(n) per published change)."""
        size = self._size
        return reader_copy(
            self,
            _hashes=self._hashes[:size].copy(),
            _ids=self._ids[:size].copy(),
            _live=self._live[:size].copy(),
            _first_child=self._first_child[:size].copy(),
            _next_sibling=self._next_sibling[:size].copy(),
            _edge=self._edge[:size].copy(),
            _stack=np.zeros(max(size, 16), dtype=np.int32),
            _stack_distance=np.zeros(max(size, 16), dtype=np.int32),
            _out_ids=np.zeros(64, dtype=np.int64),
            _out_dist=np.zeros(64, dtype=np.int64),
        )

    @property
    def tombstones(self) -> int:
        """Deleted nodes still routing searches."""
        return self._size - self._live_count

    def __len__(self) -> int:
        return self._live_count

    @property
    def nbytes(self) -> int:
        return int(
            sum(a.nbytes for a in self._arrays()) + self._stack.nbytes + self._stack_distance.nbytes
        )
