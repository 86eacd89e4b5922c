"""Every Hamming index returns exactly what a brute-force scan returns, through updates.

MIH keeps small sets in its linear delta unless told otherwise, so most MIH factories here
set a tiny ``merge_threshold``: then the sets hypothesis draws (up to ~80 hashes) live in the
tables, deletions become tombstones and merges rebuild and swap the tables, which is the code
that serves a 10M-entry list.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.index.base import BruteForceIndex, HammingIndex
from pipeline.core.index.bktree import BKTree
from pipeline.core.index.mih import (
    MultiIndexHash,
    choose_chunks,
    chunk_widths,
)
from pipeline.core.index.select import build_hamming_index, choose_index_kind

FACTORIES: dict[str, Callable[[], HammingIndex]] = {
    "bktree": lambda: BKTree(capacity=16),
    # The default threshold: small sets stay in the delta (the scan kernel).
    "mih-delta": lambda: MultiIndexHash(expected_size=1000, radius=8),
    # Tables from the first few entries on: M = 4 (r = 8), 5 (r = 12), 10 (r = 64), 3 and 5.
    "mih-r8-tables": lambda: MultiIndexHash(radius=8, merge_threshold=2),
    "mih-r12-tables": lambda: MultiIndexHash(radius=12, merge_threshold=1),
    "mih-r64-tables": lambda: MultiIndexHash(radius=64, merge_threshold=3),
    "mih-3-tables": lambda: MultiIndexHash(3, merge_threshold=1),
    "mih-5-tables": lambda: MultiIndexHash(5, merge_threshold=4),
}

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)


def flip_random_bits(value: int, positions: list[int]) -> int:
    for bit in positions:
        value ^= 1 << bit
    return value


@st.composite
def clustered_hashes(draw: st.DrawFn) -> list[int]:
    """A few centres, each with neighbours a few random bits away (duplicates included)."""
    centres = draw(st.lists(u64, min_size=1, max_size=6))
    out: list[int] = []
    for centre in centres:
        out.append(centre)
        for _ in range(draw(st.integers(0, 12))):
            flips = draw(st.lists(st.integers(0, 63), max_size=6))
            out.append(flip_random_bits(centre, flips))
    return out


@st.composite
def with_duplicates(draw: st.DrawFn, base: st.SearchStrategy[list[int]]) -> list[int]:
    """``base`` plus exact copies of some of its members, in random order."""
    hashes = draw(base)
    if hashes:
        hashes += draw(st.lists(st.sampled_from(hashes), max_size=8))
    return draw(st.permutations(hashes))


hash_sets = with_duplicates(st.one_of(st.lists(u64, max_size=60), clustered_hashes()))


@st.composite
def near_queries(draw: st.DrawFn, hashes: list[int]) -> list[int]:
    """Strangers plus members with 0-20 random (distinct) bits flipped."""
    queries = draw(st.lists(u64, min_size=1, max_size=3))
    for _ in range(draw(st.integers(0, 6)) if hashes else 0):
        member = draw(st.sampled_from(hashes))
        flips = draw(st.lists(st.integers(0, 63), max_size=20, unique=True))
        queries.append(flip_random_bits(member, flips))
    return queries


def both(factory: str, hashes: list[int]) -> tuple[HammingIndex, BruteForceIndex]:
    index, reference = FACTORIES[factory](), BruteForceIndex()
    ids = list(range(len(hashes)))
    if hashes:
        index.add(ids, hashes)
        reference.add(ids, hashes)
    return index, reference


def check_mih_state(index: HammingIndex, live: int) -> None:
    """MIH's bookkeeping adds up: tables + delta - tombstones = live entries."""
    if isinstance(index, MultiIndexHash):
        assert index.indexed + index.pending - index.tombstones == live == len(index)


@pytest.mark.parametrize("factory", sorted(FACTORIES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hashes=hash_sets, data=st.data())
def test_search_equals_brute_force(factory: str, hashes: list[int], data: st.DataObject) -> None:
    index, reference = both(factory, hashes)
    if isinstance(index, MultiIndexHash) and factory != "mih-delta" and len(hashes) > 4:
        assert index.indexed == len(hashes)  # the tables, not the delta, answer
    queries = data.draw(near_queries(hashes))
    # The edges (exact match, everything) and the working radii every time, plus random ones.
    radii = [0, 8, 12, 64, *data.draw(st.lists(st.integers(0, 64), min_size=1, max_size=3))]
    for radius in radii:
        assert index.search_many(queries, radius) == reference.search_many(queries, radius)
    check_mih_state(index, len(hashes))


@pytest.mark.parametrize("factory", sorted(FACTORIES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hashes=hash_sets, data=st.data())
def test_interleaved_inserts_deletes_and_queries(
    factory: str, hashes: list[int], data: st.DataObject
) -> None:
    index, reference = both(factory, hashes)
    live = dict(enumerate(hashes))
    next_id = len(hashes)
    actions = ["add", "add-copies", "remove", "remove-wrong-hash", "remove-missing", "query"]
    if isinstance(index, MultiIndexHash):
        actions.append("replan")
    for _ in range(data.draw(st.integers(1, 25))):
        action = data.draw(st.sampled_from(actions))
        if action in ("add", "add-copies"):
            if action == "add-copies" and live:
                new = data.draw(st.lists(st.sampled_from(sorted(live.values())), min_size=1))
            else:
                new = data.draw(st.lists(u64, min_size=1, max_size=5))
            ids = list(range(next_id, next_id + len(new)))
            next_id += len(new)
            index.add(ids, new)
            reference.add(ids, new)
            live.update(zip(ids, new, strict=True))
        elif action == "remove" and live:
            victims = data.draw(st.lists(st.sampled_from(sorted(live)), min_size=1, unique=True))
            gone = [live.pop(victim) for victim in victims]
            assert index.remove(victims, gone) == len(victims)
            reference.remove(victims, gone)
        elif action == "remove-wrong-hash" and live:
            victim = data.draw(st.sampled_from(sorted(live)))
            assert index.remove([victim], [live[victim] ^ 1]) == 0
        elif action == "remove-missing":
            assert index.remove([next_id + 999], [0]) == 0
        elif action == "replan":
            assert isinstance(index, MultiIndexHash)
            index.replan(data.draw(st.integers(0, 64)))
        if live and data.draw(st.booleans()):
            member = live[data.draw(st.sampled_from(sorted(live)))]
            query = flip_random_bits(member, data.draw(st.lists(st.integers(0, 63), max_size=14)))
        else:
            query = data.draw(u64)
        radius = data.draw(st.integers(0, 64))
        assert index.search(query, radius) == reference.search(query, radius)
        assert len(index) == len(live)
        check_mih_state(index, len(live))
    ids, stored = index.entries()
    assert sorted(zip(ids.tolist(), stored.tolist(), strict=True)) == sorted(live.items())


@pytest.mark.parametrize("factory", sorted(FACTORIES))
def test_larger_clustered_set_with_merges(factory: str) -> None:
    # Big enough to cross MIH's default merge threshold several times while updating.
    rng = np.random.default_rng(7)
    centres = rng.integers(0, 1 << 63, size=3000, dtype=np.uint64) << np.uint64(1)
    flips = np.uint64(1) << rng.integers(0, 64, size=3000).astype(np.uint64)
    hashes = np.concatenate([centres, centres ^ flips, centres[:100]])
    index, reference = FACTORIES[factory](), BruteForceIndex()
    for start in range(0, hashes.size, 1500):
        ids = np.arange(start, min(start + 1500, hashes.size))
        index.add(ids, hashes[ids])
        reference.add(ids, hashes[ids])
    victims = np.arange(0, hashes.size, 3)
    assert index.remove(victims, hashes[victims]) == victims.size
    reference.remove(victims, hashes[victims])
    near = hashes[::97].copy()
    for _ in range(3):  # three random bits each (a bit may flip back: 1 or 3 bits away)
        near ^= np.uint64(1) << rng.integers(0, 64, size=near.size).astype(np.uint64)
    queries = np.concatenate([near, rng.integers(0, 1 << 63, 20, dtype=np.uint64)])
    for radius in (0, 4, 8, 12):
        assert index.search_many(queries, radius) == reference.search_many(queries, radius)


def test_tiny_merge_threshold_drives_tables_tombstones_and_merges() -> None:
    # Guards the property tests above: with a tiny threshold they really reach the tables.
    index = MultiIndexHash(radius=8, merge_threshold=3)
    index.add([0, 1, 2, 3], [10, 11, 12, 13])  # 4 > 3: straight into the tables
    assert (index.indexed, index.pending, index.tombstones) == (4, 0, 0)
    index.add([4], [14])
    assert (index.indexed, index.pending) == (4, 1)
    assert index.remove([1, 2, 4], [11, 12, 14]) == 3
    assert (index.indexed, index.pending, index.tombstones) == (4, 0, 2)
    assert index.remove([0, 3], [10, 13]) == 2  # 4 tombstones > 3: rebuilt without them
    assert (index.indexed, index.pending, index.tombstones) == (0, 0, 0)
    assert len(index) == 0


@pytest.mark.parametrize("factory", ["mih-delta", "mih-r8-tables", "bktree"])
def test_a_search_changes_nothing_and_a_snapshot_ignores_later_updates(factory: str) -> None:
    # Readers search snapshots while the writer updates the index (pipeline.core.matching).
    rng = np.random.default_rng(3)
    hashes = rng.integers(0, 1 << 63, size=300, dtype=np.uint64)
    index, reference = FACTORIES[factory](), BruteForceIndex()
    index.add(np.arange(100), hashes[:100])
    reference.add(np.arange(100), hashes[:100])
    state = (len(index), index.entries()[0].tolist())
    for _ in range(300):
        index.search(int(hashes[0]), 8)
    assert (len(index), index.entries()[0].tolist()) == state
    snapshot = index.snapshot()
    index.add(np.arange(100, 300), hashes[100:])
    index.remove(np.arange(0, 100, 2), hashes[:100:2])
    queries = np.concatenate([hashes[:20], hashes[150:170]]) ^ np.uint64(0b1011)
    for radius in (3, 8, 20):
        assert snapshot.search_many(queries, radius) == reference.search_many(queries, radius)
    reference.add(np.arange(100, 300), hashes[100:])
    reference.remove(np.arange(0, 100, 2), hashes[:100:2])
    assert index.search_many(queries, 8) == reference.search_many(queries, 8)


def test_replan_rebuilds_only_when_the_chunk_count_changes() -> None:
    rng = np.random.default_rng(5)
    hashes = rng.integers(0, 1 << 63, size=300, dtype=np.uint64)
    index, reference = MultiIndexHash(radius=8, merge_threshold=1), BruteForceIndex()
    index.add(np.arange(300), hashes)
    reference.add(np.arange(300), hashes)
    assert index.chunks == choose_chunks(1 << 16, 8) == 4
    assert index.replan(9) is False  # still 4 chunks: nothing rebuilt
    assert index.replan(12) is True
    assert (index.chunks, index.radius) == (5, 12)
    assert index.replan(12) is False
    queries = hashes[:30] ^ np.uint64(0b1010_0101)
    for radius in (3, 4, 12, 13):
        assert index.search_many(queries, radius) == reference.search_many(queries, radius)


def test_radius_out_of_range_is_a_caller_error() -> None:
    for factory in FACTORIES.values():
        with pytest.raises(ValueError, match="radius"):
            factory().search(0, 65)
    with pytest.raises(ValueError, match="chunks"):
        MultiIndexHash(2)
    with pytest.raises(ValueError, match="merge_threshold"):
        MultiIndexHash(merge_threshold=0)


def test_chunking_rule() -> None:
    assert chunk_widths(3) == (22, 21, 21)
    assert sum(chunk_widths(5)) == 64
    # At 10M hashes: 3 up to r = 8 (the fastest measured, 14k queries/s against 8.4k with
    # 4 tables), 4 at r = 10 and 5 at r = 12 (each within ~10% of the fastest measured).
    assert [choose_chunks(10_000_000, r) for r in (4, 8, 10, 12)] == [3, 3, 4, 5]


def test_selection_rule_and_factory() -> None:
    # The measured crossovers (select.py): MIH from 10k entries up to r = 12, from 30k up to
    # r = 17, never beyond.
    assert [choose_index_kind(n, 8) for n in (500, 9_999, 10_000)] == ["scan", "scan", "mih"]
    assert [choose_index_kind(n, 12) for n in (9_999, 10_000)] == ["scan", "mih"]
    assert [choose_index_kind(n, 17) for n in (10_000, 29_999, 30_000)] == ["scan", "scan", "mih"]
    assert [choose_index_kind(n, 18) for n in (30_000, 10_000_000)] == ["scan", "scan"]
    for kind in ("auto", "bktree", "mih", "scan"):
        assert len(build_hamming_index(kind, 100, 8)) == 0
    planned = build_hamming_index("auto", 10_000_000, 10)
    assert isinstance(planned, MultiIndexHash)
    assert planned.radius == 10  # M follows the size at each build: choose_chunks(n, 10)
    with pytest.raises(ValueError, match="unknown index kind"):
        build_hamming_index("faiss", 100, 8)


def test_bktree_compaction_drops_tombstones_and_keeps_results() -> None:
    rng = np.random.default_rng(11)
    hashes = rng.integers(0, 1 << 63, size=500, dtype=np.uint64)
    tree, reference = BKTree(), BruteForceIndex()
    tree.add(np.arange(500), hashes)
    reference.add(np.arange(500), hashes)
    tree.remove(np.arange(0, 500, 2), hashes[::2])
    reference.remove(np.arange(0, 500, 2), hashes[::2])
    assert tree.tombstones == 250
    tree.compact()
    assert tree.tombstones == 0
    assert len(tree) == 250
    for query in hashes[:40]:
        assert tree.search(int(query), 20) == reference.search(int(query), 20)


@pytest.mark.parametrize("first_id", [0, (1 << 31) - 2, 1 << 40])
def test_mih_ids_beyond_int32_fall_back_to_int64_tables(first_id: int) -> None:
    rng = np.random.default_rng(13)
    hashes = rng.integers(0, 1 << 63, size=50, dtype=np.uint64)
    ids = np.arange(first_id, first_id + 50, dtype=np.int64)
    index, reference = MultiIndexHash(radius=8, merge_threshold=1), BruteForceIndex()
    index.add(ids, hashes)
    reference.add(ids, hashes)
    assert index.remove(ids[:5], hashes[:5]) == 5
    reference.remove(ids[:5], hashes[:5])
    queries = hashes ^ np.uint64(0b110)
    assert index.search_many(queries, 8) == reference.search_many(queries, 8)
    assert sorted(index.entries()[0].tolist()) == ids[5:].tolist()
