"""A bounded set of things that are active until a known end: alerts a sink must be reminded of.

Owns the bookkeeping behind re-asserting alerts to a sink that forgets them (Alertmanager keeps
alerts in memory and expects clients to send the active ones again, as Prometheus does): which
items are still active at a given time, and which to drop when the set is full. The cap bounds
memory: when it is reached, the item that ends soonest is dropped (it has the least time left to
be forgotten in), and the caller counts it.

Pure: times are plain numbers the caller passes in (Unix seconds in the pipeline); no clock, no
I/O. Not thread-safe (the pipeline uses it from one event loop).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class ActiveSet(Generic[T]):
    """Items keyed by id, each active until its end; at most ``capacity`` of them."""

    capacity: int
    _items: dict[str, tuple[float, T]] = field(default_factory=dict, init=False)
    #: (end, id) of every add; entries whose end no longer matches ``_items`` are stale.
    _ends: list[tuple[float, str]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError("capacity must be at least 1")

    def __len__(self) -> int:
        return len(self._items)

    def add(self, key: str, item: T, ends_at: float) -> int:
        """Remember ``item`` under ``key`` until ``ends_at`` (replacing an earlier one with the
        same key). Returns how many items were dropped to stay within the capacity: the soonest
        to end go first, which may be this one."""
        self._items[key] = (ends_at, item)
        heapq.heappush(self._ends, (ends_at, key))
        dropped = 0
        while len(self._items) > self.capacity:
            self._pop_soonest()
            dropped += 1
        self._compact()
        return dropped

    def active(self, now: float) -> list[T]:
        """The items still active at ``now`` (ending later), soonest-ending first; the ended
        ones are forgotten."""
        while self._ends and self._ends[0][0] <= now:
            ends_at, key = heapq.heappop(self._ends)
            current = self._items.get(key)
            if current is not None and current[0] == ends_at:  # else a replaced entry
                del self._items[key]
        return [item for _, item in sorted(self._items.values(), key=lambda pair: pair[0])]

    def _pop_soonest(self) -> str | None:
        """Forget the item that ends soonest; returns its key (None when empty)."""
        while self._ends:
            ends_at, key = heapq.heappop(self._ends)
            current = self._items.get(key)
            if current is not None and current[0] == ends_at:
                del self._items[key]
                return key
        return None

    def _compact(self) -> None:
        """Keep the heap within twice the live items (replaced keys leave stale entries)."""
        if len(self._ends) > 2 * len(self._items) + 16:
            self._ends = [(end, key) for key, (end, _) in self._items.items()]
            heapq.heapify(self._ends)
