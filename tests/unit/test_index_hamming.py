"""Every Hamming index returns exactly what a brute-force scan returns, through updates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.index.base import BruteForceIndex, HammingIndex
from pipeline.core.index.bktree import BKTree
from pipeline.core.index.mih import MultiIndexHash, choose_chunks, chunk_widths
from pipeline.core.index.select import build_hamming_index, choose_index_kind

FACTORIES = {
    "bktree": lambda: BKTree(capacity=16),
    "mih-auto": lambda: MultiIndexHash(expected_size=1000, radius=8),
    "mih-3": lambda: MultiIndexHash(3),
    "mih-5": lambda: MultiIndexHash(5),
}

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)


@st.composite
def clustered_hashes(draw: st.DrawFn) -> list[int]:
    """A few centres, each with neighbours a few bits away, plus exact duplicates."""
    centres = draw(st.lists(u64, min_size=1, max_size=6))
    out: list[int] = []
    for centre in centres:
        out.append(centre)
        for _ in range(draw(st.integers(0, 12))):
            flips = draw(st.lists(st.integers(0, 63), max_size=6))
            value = centre
            for bit in flips:
                value ^= 1 << bit
            out.append(value)
    return out


hash_sets = st.one_of(st.lists(u64, max_size=60), clustered_hashes())


def both(factory: str, hashes: list[int]) -> tuple[HammingIndex, BruteForceIndex]:
    index, reference = FACTORIES[factory](), BruteForceIndex()
    ids = list(range(len(hashes)))
    if hashes:
        index.add(ids, hashes)
        reference.add(ids, hashes)
    return index, reference


@pytest.mark.parametrize("factory", sorted(FACTORIES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hashes=hash_sets, queries=st.lists(u64, min_size=1, max_size=4), data=st.data())
def test_search_equals_brute_force(
    factory: str, hashes: list[int], queries: list[int], data: st.DataObject
) -> None:
    index, reference = both(factory, hashes)
    # Query members (perturbed) as well as strangers, at every interesting radius.
    queries = queries + [h ^ (1 << data.draw(st.integers(0, 63))) for h in hashes[:3]]
    for radius in (0, 1, 4, 8, 10, 12, 33, 64):
        for query in queries:
            assert index.search(query, radius) == reference.search(query, radius)
    assert len(index) == len(reference)


@pytest.mark.parametrize("factory", sorted(FACTORIES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hashes=hash_sets, data=st.data())
def test_interleaved_inserts_deletes_and_queries(
    factory: str, hashes: list[int], data: st.DataObject
) -> None:
    index, reference = both(factory, hashes)
    live = dict(enumerate(hashes))
    next_id = len(hashes)
    for _ in range(data.draw(st.integers(1, 25))):
        action = data.draw(st.sampled_from(["add", "remove", "remove-missing", "query"]))
        if action == "add":
            new = data.draw(st.lists(u64, min_size=1, max_size=5))
            ids = list(range(next_id, next_id + len(new)))
            next_id += len(new)
            index.add(ids, new)
            reference.add(ids, new)
            live.update(zip(ids, new, strict=True))
        elif action == "remove" and live:
            victim = data.draw(st.sampled_from(sorted(live)))
            assert index.remove([victim], [live[victim]]) == 1
            reference.remove([victim], [live.pop(victim)])
        elif action == "remove-missing":
            assert index.remove([next_id + 999], [0]) == 0
        query = data.draw(u64) if not live else live[data.draw(st.sampled_from(sorted(live)))]
        radius = data.draw(st.sampled_from([0, 3, 8, 12, 64]))
        assert index.search(query, radius) == reference.search(query, radius)
        assert len(index) == len(live)


@pytest.mark.parametrize("factory", sorted(FACTORIES))
def test_larger_clustered_set_with_merges(factory: str) -> None:
    # Big enough to cross MIH's merge threshold several times while updating.
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
    queries = np.concatenate([hashes[::97] ^ np.uint64(0b1011), rng.integers(0, 1 << 63, 20)])
    for radius in (0, 4, 8, 12):
        assert index.search_many(queries, radius) == reference.search_many(queries, radius)


def test_radius_out_of_range_is_a_caller_error() -> None:
    for factory in FACTORIES.values():
        with pytest.raises(ValueError, match="radius"):
            factory().search(0, 65)


def test_chunking_rule() -> None:
    assert chunk_widths(3) == (22, 21, 21)
    assert sum(chunk_widths(5)) == 64
    # The measured best M at 10M hashes (shared/MEASUREMENTS.md).
    assert [choose_chunks(10_000_000, r) for r in (4, 8, 10, 12)] == [3, 3, 4, 5]


def test_selection_rule_and_factory() -> None:
    assert choose_index_kind(500, 8) == "scan"
    assert choose_index_kind(1_000_000, 8) == "mih"
    for kind in ("auto", "bktree", "mih", "scan"):
        assert len(build_hamming_index(kind, 100, 8)) == 0
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
