"""Start-up order of the worker's Faust app: the web server first, then wait for the broker.

Owns :class:`WebFirst`, the Faust boot strategy (Faust's documented extension point for the
order services start in) that starts the web server before anything that needs Kafka, and
:class:`BrokerGate`, the service after it that waits until the broker answers and creates the
pipeline's topics. Before, the worker created its topics before Faust started and Faust starts
its producer before its web server: a worker started while the broker was away gave up (or
hung in the admin client) with no /livez to ask. Now /livez answers 200 while it waits (waiting
is not a reason to restart it) and /readyz 503, with the broker's reason after
``PIPELINE_BROKER_UNREACHABLE_AFTER_SECONDS``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from faust.app.base import BootStrategy
from mode import Service

from pipeline.backoff import backoff_seconds
from pipeline.connectivity import BrokerConnectivity

log = logging.getLogger(__name__)


class BrokerGate(Service):
    """Returns from start-up once the broker answered and ``prepare`` (create the topics, note
    their ids: :meth:`pipeline.topic_guard.TopicGuard.establish`) succeeded; retries with
    capped backoff until then (or until the worker stops)."""

    def __init__(
        self,
        bootstrap_servers: str,
        prepare: Callable[[], Awaitable[None]],
        connectivity: BrokerConnectivity,
        *,
        backoff_max_seconds: float = 10.0,
        **kwargs: Any,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._prepare = prepare
        self._connectivity = connectivity
        self._backoff_max = backoff_max_seconds
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        failures = 0
        while not self.should_stop:
            try:
                await self._prepare()  # bounded by the connect timeout of its client
            except Exception as exc:  # any failure to reach or ask the broker: wait, retry
                failures += 1
                if failures == 1:
                    log.warning(
                        "waiting for the Kafka broker at %s (%s); /livez answers meanwhile, "
                        "/readyz says 503",
                        self._bootstrap_servers,
                        type(exc).__name__,
                    )
                await self.sleep(backoff_seconds(failures - 1, 0.5, self._backoff_max))
            else:
                self._connectivity.answered()
                if failures:
                    log.warning(
                        "Kafka broker at %s answered after %d failed attempt(s); starting",
                        self._bootstrap_servers,
                        failures,
                    )
                return


class WebFirst(BootStrategy):
    """Faust's server boot order with the web server moved first and ``gate`` after it."""

    def __init__(self, app: Any, gate: Service, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._gate = gate

    def server(self) -> Iterable[Any]:
        return self._chain(
            self.sensors(),
            self.web_server(),
            [self._gate],
            self.kafka_producer(),
            self.kafka_consumer(),
            self.agents(),
            self.kafka_conductor(),
            self.tables(),
        )
