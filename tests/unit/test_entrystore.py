"""Entries in columns, published views and deferred builds: the matcher still equals brute force.

The matcher keeps its entries in :class:`pipeline.core.entrystore.EntryStore` columns, builds
its indexes once after a deferred load, and answers matches from immutable published views.
Checked here against the brute-force reference of test_matching through loads, re-publishes
and retractions (before, during and after a deferred build), for every index kind; a view keeps
answering as of its moment whatever the writer does next; keys are exact even when their
hashes collide; and an entry costs bytes, not a Python object graph.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core import entrystore
from pipeline.core.entrystore import EntryBatch, EntryStore
from pipeline.core.hashlist import Category, HashListEntry, ListConfig
from pipeline.core.matching import Matcher
from pipeline.core.types import Algorithm
from tests.unit.test_matching import LISTS, centres, entry, reference

ALGORITHMS = [Algorithm.PHASH, Algorithm.DHASH, Algorithm.MD5]


def spread(i: int) -> int:
    """Well-spread 64-bit values: distinct i land ~32 bits apart."""
    return (i * 0x9E3779B97F4A7C15 + 12345) % (1 << 64)


@pytest.mark.parametrize("index_kind", ["auto", "mih", "bktree", "scan"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_deferred_loads_equal_reference_through_updates(
    index_kind: str, data: st.DataObject
) -> None:
    matcher = Matcher(index_kind)
    for config in LISTS.values():
        matcher.set_list(config)
    live: dict[tuple[str, str], HashListEntry] = {}
    centre = data.draw(centres)
    # Phases: updates applied directly, then deferred (nothing published until build), then
    # direct again: rows from before and during the deferral are replaced and retracted.
    for phase in ("direct", "deferred", "direct"):
        if phase == "deferred":
            matcher.defer_builds()
            published = matcher.view
        for _ in range(data.draw(st.integers(0, 25))):
            key = (data.draw(st.sampled_from(["eokm", "iwf", "unconfigured"])),
                   f"e{data.draw(st.integers(0, 9))}")  # fmt: skip
            if data.draw(st.integers(0, 3)) == 0:
                matcher.retract([key])
                live.pop(key, None)
                continue
            value = centre
            for bit in data.draw(st.lists(st.integers(0, 63), max_size=12)):
                value ^= 1 << bit
            new = entry(*key, data.draw(st.sampled_from(ALGORITHMS)), value)
            matcher.upsert([new])
            live[new.key] = new
        if phase == "deferred":
            assert matcher.view is published  # a deferred load publishes nothing
            matcher.build()
        query = {Algorithm.PHASH: centre, Algorithm.DHASH: centre ^ 3, Algorithm.MD5: centre}
        assert matcher.match(query) == reference(live, query)
        assert len(matcher) == len(live)


def test_a_deferred_build_indexes_everything_once_and_then_publishes() -> None:
    matcher = Matcher("mih")
    matcher.set_list(LISTS["eokm"])
    matcher.defer_builds()
    before = matcher.view
    matcher.upsert(entry("eokm", f"e{i}", Algorithm.PHASH, spread(i)) for i in range(5000))
    matcher.retract([("eokm", "e0")])
    assert len(matcher.hamming_index(Algorithm.PHASH)) == 0  # nothing indexed yet
    assert matcher.match({Algorithm.PHASH: spread(1)}) == []
    matcher.build()
    assert matcher.view is not before
    assert len(matcher.hamming_index(Algorithm.PHASH)) == 4999
    assert [m.entry_id for m in matcher.match({Algorithm.PHASH: spread(1)})] == ["e1"]
    assert matcher.match({Algorithm.PHASH: spread(0)}) == []  # retracted during the load


@pytest.mark.parametrize("index_kind", ["mih", "scan", "bktree"])
def test_a_view_answers_as_of_its_moment_whatever_the_writer_does(index_kind: str) -> None:
    matcher = Matcher(index_kind)
    matcher.set_list(LISTS["eokm"])
    matcher.upsert(entry("eokm", f"e{i}", Algorithm.PHASH, spread(i)) for i in range(3000))
    matcher.upsert([entry("eokm", "md5", Algorithm.MD5, 99)])
    view = matcher.view
    query = {Algorithm.PHASH: spread(7), Algorithm.MD5: 99}
    expected = view.match(query, ())
    assert [m.entry_id for m in expected] == ["e7", "md5"]
    # Retract, re-publish with another hash, add more (delta and tombstones of the writer's
    # index), then a whole rebuild: the old view sees none of it, the new one all of it.
    matcher.retract([("eokm", "e7"), ("eokm", "md5")])
    matcher.upsert([entry("eokm", "e8", Algorithm.PHASH, spread(7))])
    matcher.upsert(entry("eokm", f"n{i}", Algorithm.PHASH, spread(i + 5000)) for i in range(5000))
    assert view.match(query, ()) == expected
    assert [m.entry_id for m in matcher.match(query)] == ["e8"]


def test_pdq_entries_are_replaced_and_retracted_without_a_copy_of_their_hash() -> None:
    matcher = Matcher()
    matcher.set_list(ListConfig.create("pdq", action="block"))
    values = {f"p{i}": sum(spread(i * 4 + w) << (64 * w) for w in range(4)) for i in range(1500)}
    matcher.upsert(entry("pdq", key, Algorithm.PDQ, value) for key, value in values.items())
    matcher.retract([("pdq", "p1")])
    matcher.upsert([entry("pdq", "p2", Algorithm.PDQ, values["p3"])])  # p2 changes its hash

    def found(value: int) -> set[str]:
        view = matcher.view
        hits = view.hamming[Algorithm.PDQ].search(value, 0)
        return {view.rows.entry_id(row) for row, _ in hits}

    assert found(values["p1"]) == set()
    assert found(values["p2"]) == set()
    assert found(values["p3"]) == {"p2", "p3"}
    assert len(matcher.hamming_index(Algorithm.PDQ)) == len(matcher) == 1499


def test_keys_are_exact_when_their_hashes_collide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(entrystore, "key_hash", lambda list_name, entry_id: 7)
    matcher = Matcher()
    matcher.set_list(LISTS["eokm"])
    matcher.set_list(LISTS["iwf"])
    matcher.upsert(entry(name, f"e{i}", Algorithm.MD5, i) for name in LISTS for i in range(50))
    matcher.retract([("iwf", "e3")])
    matcher.upsert([entry("eokm", "e4", Algorithm.MD5, 3)])  # replaces eokm/e4 only
    assert len(matcher) == 149
    assert [(m.list_name, m.entry_id) for m in matcher.match({Algorithm.MD5: 3})] == [
        ("eokm", "e3"),
        ("eokm", "e4"),
    ]
    assert [(m.list_name, m.entry_id) for m in matcher.match({Algorithm.MD5: 4})] == [("iwf", "e4")]


def test_the_store_finds_live_rows_by_key() -> None:
    store = EntryStore()
    batch = EntryBatch(["a", "a", "b"], ["1", "2", "1"], [Algorithm.PHASH] * 3, [1, 2, 3],
                       [Category.CSAM] * 3)  # fmt: skip
    rows = store.add(batch)
    assert rows.tolist() == [0, 1, 2]
    assert store.find(["b", "a", "c"], ["1", "2", "1"]).tolist() == [2, 1, -1]
    store.retire(np.array([1]))
    assert store.find(["a", "a"], ["1", "2"]).tolist() == [0, -1]
    assert store.reader().entry_id(2) == "1"
    assert store.reader().list_name(2) == "b"


def test_an_entry_costs_bytes_not_objects() -> None:
    # The dict-of-dataclasses matcher held ~730 bytes an entry (issue 13); the columns, the
    # key index and a 64-bit MIH index come to well under 150 at this size.
    count = 200_000
    rng = np.random.default_rng(1)
    values = rng.integers(0, 2**63, count, dtype=np.int64).tolist()
    batch = EntryBatch(
        list_names=["eokm"] * count,
        entry_ids=[f"{i:08d}" for i in range(count)],
        algorithms=[Algorithm.PHASH] * count,
        values=values,
        categories=[Category.CSAM] * count,
    )
    tracemalloc.start()
    try:
        matcher = Matcher()
        matcher.set_list(LISTS["eokm"])
        matcher.defer_builds()
        before = tracemalloc.get_traced_memory()[0]
        matcher.upsert_batch(batch)
        matcher.build()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held / count < 150, held / count
    assert len(matcher) == count
    assert [m.entry_id for m in matcher.match({Algorithm.PHASH: values[5]})] == ["00000005"]
