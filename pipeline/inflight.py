"""Which uploads taken from the stream are safe to acknowledge: pure bookkeeping, no I/O.

Uploads are screened concurrently and finish in any order (an inline upload in milliseconds, a
slow URL after its fetch deadline), but a partition's offset may be committed only up to its
oldest unfinished upload, or a crash would skip that upload (at-least-once). This window hands
out a ticket per upload in the order the stream delivered them and, when one finishes, returns
the items now safe to acknowledge: the finished prefix of that ticket's partition.

The order is kept here rather than left to Faust's own bookkeeping of out-of-order acks: in
faust-streaming 0.15 ``Consumer._new_offset`` checks for a gap at the head against the committed
offset off by one (with 10 committed and 10 still in flight, acked 11 and 12 commit 13), and not
at all before a partition's first commit. Acknowledging only in-order prefixes keeps Faust's
"acked" list gap-free, where its rule is right.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class Ticket(Generic[T]):
    """One admitted item; compared by identity (a redelivered offset gets a ticket of its own)."""

    partition: Hashable
    item: T
    finished: bool = field(default=False, init=False)


class InFlight(Generic[T]):
    """Admitted items per partition in delivery order; single-threaded (one event loop)."""

    def __init__(self) -> None:
        self._queues: dict[Hashable, deque[Ticket[T]]] = {}
        self._count = 0

    def admit(self, partition: Hashable, item: T) -> Ticket[T]:
        """Register ``item`` as the newest of ``partition``; finish its ticket when done."""
        ticket = Ticket(partition, item)
        self._queues.setdefault(partition, deque()).append(ticket)
        self._count += 1
        return ticket

    def finish(self, ticket: Ticket[T]) -> list[T]:
        """Mark ``ticket`` finished; return the items now safe to acknowledge, oldest first.

        That is every finished item at the head of the ticket's partition: nothing while an
        older item of the same partition is still unfinished. Finishing a ticket twice raises
        ValueError (a bookkeeping bug must not acknowledge silently).
        """
        queue = self._queues.get(ticket.partition)
        if ticket.finished or queue is None:
            raise ValueError("ticket already finished or not issued by this window")
        ticket.finished = True
        released: list[T] = []
        while queue and queue[0].finished:
            released.append(queue.popleft().item)
        if not queue:
            del self._queues[ticket.partition]
        self._count -= len(released)
        return released

    def __len__(self) -> int:
        """Items admitted and not yet released (being screened, or finished behind an older
        unfinished item of their partition)."""
        return self._count

    def oldest_unfinished(self) -> dict[Hashable, T]:
        """The item at the head of each partition (the one holding its commits back)."""
        return {partition: queue[0].item for partition, queue in self._queues.items()}
