"""Liveness and readiness of one worker, as plain state the web views report.

Owns the rules: a worker is *live* while its event loop answers and its hashing pool is usable;
it is *ready* only when every hash list has been read up to the high watermark seen at start and
the screening agent is running, so a load balancer or orchestrator never routes traffic to a
worker that would under-match. Must not do I/O; the services that know set the flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class WorkerHealth:
    """Mutable flags set by the services of one worker (single event-loop thread, no locks)."""

    lists_caught_up: bool = False
    screening_started: bool = False
    pool_broken_reason: str | None = None
    details: dict[str, str] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        """False when the worker cannot screen anything until restarted."""
        return self.pool_broken_reason is None

    @property
    def ready(self) -> bool:
        """True when uploads routed here would be screened against complete lists."""
        return self.live and self.lists_caught_up and self.screening_started

    def report(self) -> dict[str, object]:
        """A JSON-able summary for /readyz and /livez bodies."""
        return {
            "live": self.live,
            "ready": self.ready,
            "lists_caught_up": self.lists_caught_up,
            "screening_started": self.screening_started,
            "pool_broken_reason": self.pool_broken_reason,
            **self.details,
        }
