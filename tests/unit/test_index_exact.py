"""Exact-digest sets find ids by full digest through adds, removals and merges."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.index.exact import ExactHashSet
from pipeline.core.types import Algorithm


@pytest.mark.parametrize("algorithm", [Algorithm.MD5, Algorithm.SHA1, Algorithm.SHA256])
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_matches_a_dict_reference(algorithm: Algorithm, data: st.DataObject) -> None:
    digest = st.integers(0, (1 << algorithm.bits) - 1)
    # Digests sharing their top 64 bits exercise the full-digest confirmation.
    base = data.draw(digest)
    pool = [*data.draw(st.lists(digest, max_size=20)), base, base ^ 1, base ^ 2]
    exact, reference = ExactHashSet(algorithm), {}
    for id_ in range(data.draw(st.integers(0, 60))):
        d = data.draw(st.sampled_from(pool))
        exact.add(id_, d)
        reference[id_] = d
        if reference and data.draw(st.booleans()):
            victim = data.draw(st.sampled_from(sorted(reference)))
            assert exact.remove(victim, reference.pop(victim))
    for d in pool:
        assert exact.lookup(d) == sorted(i for i, v in reference.items() if v == d)
    assert len(exact) == len(reference)


def test_many_entries_across_merges() -> None:
    rng = random.Random(3)
    exact = ExactHashSet(Algorithm.SHA256)
    digests = [rng.getrandbits(256) for _ in range(20_000)]
    exact.add_many(list(range(len(digests))), digests)
    for id_ in range(0, 20_000, 2):
        assert exact.remove(id_, digests[id_])
    assert not exact.remove(0, digests[0])
    assert exact.lookup(digests[1]) == [1]
    assert exact.lookup(digests[2]) == []
    assert len(exact) == 10_000
    assert exact.nbytes / len(exact) < 120


def test_perceptual_algorithms_are_refused() -> None:
    with pytest.raises(ValueError, match="not an exact digest"):
        ExactHashSet(Algorithm.PHASH)
