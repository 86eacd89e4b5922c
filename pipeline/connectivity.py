"""Whether this worker can reach its Kafka broker, as plain state /readyz and the log read.

Owns the rule: the broker is *reachable* while some request of this worker to it succeeded
within the last ``unreachable_after_seconds``: a fetch response (an empty one counts: an idle
topic has no records to deliver, so a record received would be no evidence either way), a
produce acknowledgement, or a metadata answer at start. Until the first success the silence is
counted from the worker's start, so a worker that never reached its broker is unreachable too.
The hash-list feed tails its topic on every worker and fetches every fetch wait (0.5 s by
default) even when nothing arrives, so a connected worker is never silent for long.

Also owns the transitions (:meth:`BrokerConnectivity.transition`), so that exactly one line is
logged when the broker goes away and one when it comes back, however often it is asked.
Must not do I/O or read any clock but the injected one; callers record successes and read.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class BrokerTransition(enum.StrEnum):
    """A change of reachability since it was last announced."""

    LOST = "lost"
    REGAINED = "regained"


@dataclass
class BrokerConnectivity:
    """Successful requests to the broker, by kind (single event-loop thread, no locks)."""

    #: Silence longer than this (seconds) makes the broker unreachable (/readyz 503).
    unreachable_after_seconds: float = 15.0
    clock: Callable[[], float] = time.monotonic
    #: Clock readings of the last successful fetch response and produce acknowledgement.
    last_fetch: float | None = None
    last_produce: float | None = None
    #: Clock reading at start (or the last metadata answer, whichever is later).
    last_contact: float = field(default=-1.0)
    _announced_reachable: bool = field(default=True, repr=False)

    def __post_init__(self) -> None:
        if self.last_contact < 0:
            self.last_contact = self.clock()

    def fetched(self) -> None:
        """A fetch response arrived (with or without records)."""
        self.last_fetch = self.clock()

    def produced(self) -> None:
        """The broker acknowledged a produced record."""
        self.last_produce = self.clock()

    def answered(self) -> None:
        """Some other request succeeded (metadata, topic creation)."""
        self.last_contact = self.clock()

    def silent_seconds(self) -> float:
        """Seconds since the last success of any kind (since start if none yet)."""
        readings = (self.last_fetch, self.last_produce, self.last_contact)
        newest = max(t for t in readings if t is not None)
        return max(0.0, self.clock() - newest)

    @property
    def reachable(self) -> bool:
        """False once the broker has been silent for longer than the limit."""
        return self.silent_seconds() <= self.unreachable_after_seconds

    def reason(self) -> str | None:
        """Why the broker counts as unreachable, in words for /readyz; None while reachable."""
        if self.reachable:
            return None
        return (
            f"no request to the Kafka broker succeeded for {self.silent_seconds():.1f}s "
            f"(limit {self.unreachable_after_seconds:g}s)"
        )

    def transition(self) -> BrokerTransition | None:
        """LOST or REGAINED when reachability changed since the last call that returned one;
        None otherwise. The worker starts out announced as reachable: a broker that answers
        from the start is never announced at all."""
        reachable = self.reachable
        if reachable == self._announced_reachable:
            return None
        self._announced_reachable = reachable
        return BrokerTransition.REGAINED if reachable else BrokerTransition.LOST

    def report(self) -> dict[str, object]:
        """A JSON-able summary for the /readyz and /livez bodies."""
        now = self.clock()

        def ago(reading: float | None) -> float | None:
            return None if reading is None else round(now - reading, 1)

        return {
            "reachable": self.reachable,
            "reason": self.reason(),
            "seconds_since_fetch": ago(self.last_fetch),
            "seconds_since_produce": ago(self.last_produce),
            "unreachable_after_seconds": self.unreachable_after_seconds,
        }
