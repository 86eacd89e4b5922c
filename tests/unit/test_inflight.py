"""The in-flight window releases an upload for acknowledgement only when it and every older
upload of its partition are finished: a committed offset never passes an unfinished upload."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.inflight import InFlight


def test_an_upload_finished_behind_a_slow_one_waits_for_it() -> None:
    window: InFlight[str] = InFlight()
    slow = window.admit("p0", "slow")
    quick = window.admit("p0", "quick")
    assert window.finish(quick) == []
    assert len(window) == 2
    assert window.finish(slow) == ["slow", "quick"]
    assert len(window) == 0


def test_partitions_do_not_wait_for_each_other() -> None:
    window: InFlight[str] = InFlight()
    window.admit("p0", "slow")
    other = window.admit("p1", "other")
    assert window.finish(other) == ["other"]
    assert window.oldest_unfinished() == {"p0": "slow"}


def test_finishing_a_ticket_twice_is_a_bug_not_a_second_ack() -> None:
    window: InFlight[str] = InFlight()
    ticket = window.admit("p0", "a")
    window.finish(ticket)
    with pytest.raises(ValueError, match="already finished"):
        window.finish(ticket)


@given(
    partitions=st.lists(st.integers(0, 3), min_size=1, max_size=40),
    data=st.data(),
)
def test_released_items_are_exactly_the_finished_prefixes(
    partitions: list[int], data: st.DataObject
) -> None:
    """Against a brute-force model: after any finishing order, an item has been released iff it
    and every older item of its partition are finished, and releases come in delivery order."""
    window: InFlight[int] = InFlight()
    tickets = [window.admit(p, i) for i, p in enumerate(partitions)]
    order = data.draw(st.permutations(range(len(tickets))))
    finished: set[int] = set()
    released: list[int] = []
    for index in order:
        released += window.finish(tickets[index])
        finished.add(index)
        expected = {
            i
            for i, p in enumerate(partitions)
            if all(j in finished for j in range(i + 1) if partitions[j] == p)
        }
        assert set(released) == expected
        assert len(window) == len(partitions) - len(released)
    for p in set(partitions):
        assert [i for i in released if partitions[i] == p] == [
            i for i, q in enumerate(partitions) if q == p
        ]
