"""The bounded set of active alerts: what is active when, and what a full set drops."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.active_set import ActiveSet


def test_items_are_active_until_their_end_then_forgotten() -> None:
    active: ActiveSet[str] = ActiveSet(10)
    active.add("a", "alert a", ends_at=100.0)
    active.add("b", "alert b", ends_at=50.0)
    assert active.active(now=10.0) == ["alert b", "alert a"]  # soonest-ending first
    assert active.active(now=50.0) == ["alert a"]  # ends at 50: over at 50
    assert len(active) == 1
    assert active.active(now=100.0) == []
    assert len(active) == 0


def test_adding_the_same_key_again_replaces_it() -> None:
    active: ActiveSet[str] = ActiveSet(10)
    active.add("a", "first", ends_at=100.0)
    assert active.add("a", "again", ends_at=200.0) == 0
    assert len(active) == 1
    assert active.active(now=150.0) == ["again"]


def test_a_full_set_drops_the_items_ending_soonest_and_says_how_many() -> None:
    active: ActiveSet[str] = ActiveSet(2)
    assert active.add("a", "a", ends_at=300.0) == 0
    assert active.add("b", "b", ends_at=100.0) == 0
    assert active.add("c", "c", ends_at=200.0) == 1  # b ends soonest
    assert active.active(now=0.0) == ["c", "a"]
    assert active.add("d", "d", ends_at=50.0) == 1  # the new one ends soonest: it goes
    assert active.active(now=0.0) == ["c", "a"]


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ActiveSet(0)


operations = st.lists(
    st.tuples(
        st.sampled_from(["add", "active"]),
        st.sampled_from("abcdefgh"),
        st.integers(0, 50).map(float),
    ),
    max_size=80,
)


@given(capacity=st.integers(1, 5), steps=operations)
def test_matches_a_plain_dict_model(capacity: int, steps: list[tuple[str, str, float]]) -> None:
    """Against the obvious model: a dict, trimmed by min(end) when over capacity."""
    active: ActiveSet[str] = ActiveSet(capacity)
    model: dict[str, float] = {}
    now = 0.0
    for op, key, value in steps:
        if op == "add":
            model[key] = now + value
            dropped = 0
            while len(model) > capacity:
                # Equal ends: the smallest key goes (the set's heap orders by (end, key)).
                soonest = min(model, key=lambda k: (model[k], k))
                del model[soonest]
                dropped += 1
            assert active.add(key, key, now + value) == dropped
        else:
            now += value / 10
            model = {k: end for k, end in model.items() if end > now}
            got = active.active(now)
            assert sorted(got) == sorted(model)
            assert [model[k] for k in got] == sorted(model.values())
        assert len(active) <= capacity
