"""Liveness and readiness of one worker, as plain state the web views report.

Owns the rules: a worker is *live* while it can do its job or recover by itself: its hashing
pool can be started, and no background service (hash-list feed, alert delivery) has been failing
continuously for longer than ``unhealthy_after_seconds``; a supervisor restarts failed services
with backoff, so a short broker outage is not a reason to restart the worker, a long one is. It
is *ready* only when every hash list has been read up to the high watermark seen at start and
the screening agent is running, so a load balancer or orchestrator never routes traffic to a
worker that would under-match, and while it can reach its broker (see
:mod:`pipeline.connectivity`; an outage makes a worker not ready, never not live) and its topics
exist (see :mod:`pipeline.topic_guard`) and it reads the uploads topic it should (see
:mod:`pipeline.uploads_reset`). Must not do
I/O; the services that know set the flags.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.connectivity import BrokerConnectivity


@dataclass
class ServiceState:
    """How one supervised background service is doing."""

    #: Failures since the service last reported itself running (reset then).
    failures: int = 0
    #: Restarts since the worker started.
    restarts: int = 0
    #: Clock reading at the first failure of the current run of failures; None when running.
    failing_since: float | None = None
    #: Class name of the last error (never its message: it may hold addresses or data).
    last_error: str | None = None
    #: True once the service has reported itself running at least once.
    started: bool = False

    @property
    def state(self) -> str:
        """``starting``, ``running`` or ``failing``."""
        if self.failing_since is not None:
            return "failing"
        return "running" if self.started else "starting"


@dataclass
class WorkerHealth:
    """Mutable flags set by the services of one worker (single event-loop thread, no locks)."""

    lists_caught_up: bool = False
    screening_started: bool = False
    pool_broken_reason: str | None = None
    details: dict[str, str] = field(default_factory=dict)
    #: Entries held per list (the list has no config on the topic, so they match nothing).
    #: Shown, not a reason to be unready: the other lists screen as configured.
    held_entries: dict[str, int] = field(default_factory=dict)
    #: A service failing continuously for longer than this makes the worker not live.
    unhealthy_after_seconds: float = 300.0
    clock: Callable[[], float] = time.monotonic
    services: dict[str, ServiceState] = field(default_factory=dict)
    #: The broker's reachability; None: not tracked (tests of other parts).
    broker: BrokerConnectivity | None = None
    #: Why the worker's topics are not usable now (vanished, being re-created); None when
    #: they are (see pipeline.topic_guard).
    topics_problem: str | None = None
    #: Why the worker is not reading uploads where it should (the uploads topic was re-created
    #: and its positions are being moved to the new topic's start); None when it is (see
    #: pipeline.uploads_reset).
    uploads_problem: str | None = None

    def register_service(self, name: str) -> None:
        """Make a service known (reported from the start, before anything happened to it)."""
        self.services.setdefault(name, ServiceState())

    def service_failed(self, name: str, error: str) -> ServiceState:
        """Record a failure of ``name`` (about to be restarted); returns its state."""
        state = self.services.setdefault(name, ServiceState())
        state.failures += 1
        state.restarts += 1
        state.last_error = error
        if state.failing_since is None:
            state.failing_since = self.clock()
        return state

    def service_running(self, name: str) -> None:
        """Record that ``name`` is doing its work again (cheap: call it on every cycle)."""
        state = self.services.setdefault(name, ServiceState())
        state.failures = 0
        state.failing_since = None
        state.started = True

    def failing_services(self) -> list[str]:
        """Services failing continuously for longer than ``unhealthy_after_seconds``."""
        now = self.clock()
        return sorted(
            name
            for name, state in self.services.items()
            if state.failing_since is not None
            and now - state.failing_since > self.unhealthy_after_seconds
        )

    @property
    def live(self) -> bool:
        """False when the worker cannot screen anything, or recover, until restarted."""
        return self.pool_broken_reason is None and not self.failing_services()

    @property
    def ready(self) -> bool:
        """True when uploads routed here would be screened against complete lists."""
        broker_reachable = self.broker is None or self.broker.reachable
        return (
            self.live
            and self.lists_caught_up
            and self.screening_started
            and broker_reachable
            and self.topics_problem is None
            and self.uploads_problem is None
        )

    def report(self) -> dict[str, object]:
        """A JSON-able summary for /readyz and /livez bodies."""
        now = self.clock()
        return {
            "live": self.live,
            "ready": self.ready,
            "lists_caught_up": self.lists_caught_up,
            "screening_started": self.screening_started,
            "pool_broken_reason": self.pool_broken_reason,
            "topics_problem": self.topics_problem,
            "uploads_problem": self.uploads_problem,
            "services": {
                name: {
                    "state": state.state,
                    "failures": state.failures,
                    "restarts": state.restarts,
                    "failing_for_seconds": (
                        None if state.failing_since is None else round(now - state.failing_since, 1)
                    ),
                    "last_error": state.last_error,
                }
                for name, state in sorted(self.services.items())
            },
            **({} if self.broker is None else {"broker": self.broker.report()}),
            **self.details,
            "held_entries": dict(sorted(self.held_entries.items())),
        }
