"""The worker's broker connectivity, wired to its metrics and its log.

Owns the call sites of :mod:`pipeline.connectivity`: a success is recorded in the state and in
``screening_broker_last_{fetch,produce,contact}_timestamp_seconds`` at once, and
:meth:`BrokerWatch.check` (called every second by the worker) logs one line when the broker
goes away and one when it comes back, and lets the client-noise filter report what it
suppressed. The rule itself (when is the broker unreachable) is the pure state's; nothing here
talks to Kafka.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pipeline.connectivity import BrokerConnectivity, BrokerTransition
from pipeline.logs import flush_client_noise
from pipeline.metrics import PipelineMetrics

log = logging.getLogger(__name__)


class BrokerWatch:
    """Records successful broker requests and announces reachability changes."""

    def __init__(
        self,
        connectivity: BrokerConnectivity,
        metrics: PipelineMetrics,
        bootstrap_servers: str,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.connectivity = connectivity
        self._metrics = metrics
        self._bootstrap_servers = bootstrap_servers
        self._wall_clock = wall_clock
        self._lost_at: float | None = None
        metrics.report_broker_reachable(lambda: connectivity.reachable)

    def fetched(self, unix_seconds: float) -> None:
        """A fetch response arrived at ``unix_seconds`` (the client's own time stamp)."""
        self.connectivity.fetched()
        self._metrics.broker_fetched(unix_seconds)

    def produced(self) -> None:
        """The broker acknowledged an output record just now."""
        self.connectivity.produced()
        self._metrics.broker_produced(self._wall_clock())

    def answered(self) -> None:
        """The broker answered another request (a metadata request of the topic check) now."""
        self.connectivity.answered()
        self._metrics.broker_answered(self._wall_clock())

    def check(self) -> BrokerTransition | None:
        """Log a change of reachability (once per change); returns it."""
        transition = self.connectivity.transition()
        if transition is BrokerTransition.LOST:
            self._lost_at = self._wall_clock() - self.connectivity.silent_seconds()
            log.error(
                "Kafka broker at %s is unreachable: %s. /readyz answers 503 until it answers "
                "again; uploads wait in Kafka, unfinished outputs are retried",
                self._bootstrap_servers,
                self.connectivity.reason(),
            )
        elif transition is BrokerTransition.REGAINED:
            silent = (
                ""
                if self._lost_at is None
                else (f" after {self._wall_clock() - self._lost_at:.0f}s without an answer")
            )
            log.warning("Kafka broker at %s is reachable again%s", self._bootstrap_servers, silent)
        flush_client_noise()
        return transition
