"""The Faust application: topics declared once, the screening agent, web views, services.

Owns the wiring only. The agent's flow (a bounded window of uploads screened concurrently, each
upload's outputs written as soon as it is done, offsets acknowledged in order per partition) is
:mod:`pipeline.agents`; writing outputs durably is :mod:`pipeline.outputs`. Hashing runs in a
process pool, so the event loop stays free for heartbeats.

Services beside the agent: the hash-list feed (every worker reads every list entry) and the
alert delivery (its own consumer group, so a dead sink cannot stall screening). Each runs under
:func:`supervise`: a failure is logged, counted and restarted with capped exponential backoff,
and shows in /livez (503 once a service has been failing continuously for too long).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.agents import ScreeningAgent
from pipeline.alerting import AlertDeliveryService, AlertSink
from pipeline.backoff import backoff_seconds
from pipeline.config import Settings
from pipeline.core.matching import Matcher
from pipeline.hashlist_feed import HashListFeed
from pipeline.health import WorkerHealth
from pipeline.metrics import SERVICES, PipelineMetrics, consumer_lag
from pipeline.outputs import OutputWriter
from pipeline.screening import Screener

log = logging.getLogger(__name__)


class MatcherTarget:
    """Applies hash-list operations to the matcher and keeps the index metrics current."""

    def __init__(self, matcher: Matcher, metrics: PipelineMetrics) -> None:
        self._matcher = matcher
        self._metrics = metrics
        self._known_lists: set[str] = set()

    def apply(self, operations: list[Any]) -> None:
        self._matcher.apply(operations)
        lists = set(self._matcher.lists)
        for name in lists - self._known_lists:
            self._metrics.register_list(name)
        self._known_lists |= lists
        self._metrics.set_index_entries(self._matcher.entry_counts(), self._known_lists)


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    health: WorkerHealth,
    metrics: PipelineMetrics,
    backoff_max_seconds: float = 30.0,
    backoff_base_seconds: float = 0.5,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run a background service until it returns, restarting it whenever it raises.

    The delay before a restart doubles with each failure since the service last reported itself
    running (``health.service_running``), up to ``backoff_max_seconds``, with jitter. Each failure
    is logged with its traceback, counted in ``screening_service_restarts_total{service}`` and
    recorded in ``health`` (which /livez reports). Raises only CancelledError (worker shutdown).
    """
    health.register_service(name)
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            state = health.service_failed(name, type(exc).__name__)
            metrics.service_restarted(name)
            delay = backoff_seconds(state.failures - 1, backoff_base_seconds, backoff_max_seconds)
            log.error(
                "%s failed (%s); restart %d in %.1fs",
                name,
                type(exc).__name__,
                state.restarts,
                delay,
                exc_info=True,
            )
            await sleep(delay)


def cap_faust_fetch_wait(max_wait_ms: int) -> None:
    """Make Faust's consumer long-poll at most ``max_wait_ms`` (Faust hard-codes 1500 ms).

    Only for brokers that hold a fetch for its whole wait (see Settings.fetch_max_wait_ms);
    the worker process applies it once, before the app starts its consumer.
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    create = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "capped_ms", None) == max_wait_ms:
        return

    def create_capped(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms  # read when the consumer starts its fetcher
        return consumer

    create_capped.capped_ms = max_wait_ms  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create_capped  # type: ignore[method-assign]


def create_app(
    settings: Settings,
    *,
    bootstrap_servers: str,
    screener: Screener,
    matcher: Matcher,
    metrics: PipelineMetrics,
    health: WorkerHealth,
    sinks: list[AlertSink],
) -> faust.App:
    """Build the worker's Faust app around already-constructed collaborators."""
    if settings.fetch_max_wait_ms is not None:
        cap_faust_fetch_wait(settings.fetch_max_wait_ms)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{bootstrap_servers}",
        value_serializer="raw",
        key_serializer="raw",
        # Faust listens on web_bind; web_host only names the worker in URLs it builds.
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        broker_session_timeout=settings.broker_session_timeout_seconds,
        broker_heartbeat_interval=settings.heartbeat_interval_seconds,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_disable_leader=True,
        producer_acks=-1,
        producer_max_request_size=settings.producer_max_request_bytes,
        datadir=settings.faust_data_dir,  # not the working directory (see Settings)
    )

    def topic(name: str) -> faust.TopicT:
        return app.topic(
            name, key_type=bytes, value_type=bytes, partitions=settings.topic_partitions
        )

    uploads = topic(settings.topic_uploads)
    verdicts = topic(settings.topic_verdicts)
    blocks = topic(settings.topic_blocks)
    alerts = topic(settings.topic_alerts)
    dead_letters = topic(settings.topic_dead_letters)

    topics_by_output = {
        "verdicts": verdicts,
        "blocks": blocks,
        "alerts": alerts,
        "dead_letters": dead_letters,
    }

    async def send(output: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        # force: publish now and hand back the delivery future, never attach the record to the
        # current event (where it would be published only when that event is acked).
        return await topics_by_output[output].send(key=key, value=value, force=True)

    writer = OutputWriter(
        send,
        metrics,
        worker_id=settings.worker_id,
        backoff_max_seconds=settings.emit_backoff_max_seconds,
    )
    agent = ScreeningAgent(
        screener=screener,
        writer=writer,
        metrics=metrics,
        health=health,
        max_in_flight=settings.max_in_flight,
        max_uncommitted=settings.max_uncommitted,
        retry_backoff_max_seconds=settings.emit_backoff_max_seconds,
    )
    metrics.report_readiness(lambda: health.ready)

    @app.agent(uploads, name="screen-uploads")
    async def screen_uploads(stream: faust.StreamT[bytes]) -> None:
        # Acks are ours: an upload is acknowledged once its outputs are written and every
        # older upload of its partition is (pipeline.agents), not when the next one arrives.
        manual: Any = stream.noack()  # type: ignore[attr-defined]  # StreamT omits noack()
        log.info("screening uploads from %r", settings.topic_uploads)
        await agent.run(manual.events(), manual.ack)

    feed = HashListFeed(
        bootstrap_servers=bootstrap_servers,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        topic=settings.topic_hashlists,
        target=MatcherTarget(matcher, metrics),
        health=health,
        metrics=metrics,
        on_running=lambda: health.service_running("hashlist_feed"),
    )

    delivery = AlertDeliveryService(
        bootstrap_servers=bootstrap_servers,
        topic=settings.topic_alerts,
        group_id=f"{settings.app_id}-alerts",
        sinks=sinks,
        metrics=metrics,
        dead_letter=writer.write_dead_letter,
        backoff_max_seconds=settings.alert_backoff_max_seconds,
        session_timeout_seconds=settings.broker_session_timeout_seconds,
        heartbeat_interval_seconds=settings.heartbeat_interval_seconds,
        worker_id=settings.worker_id,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        on_running=lambda: health.service_running("alert_delivery"),
    )
    for service in SERVICES:
        health.register_service(service)

    @app.task  # type: ignore[untyped-decorator]
    async def run_hashlist_feed() -> None:
        await supervise(
            "hashlist_feed",
            feed.run,
            health=health,
            metrics=metrics,
            backoff_max_seconds=settings.service_backoff_max_seconds,
        )

    @app.task  # type: ignore[untyped-decorator]
    async def run_alert_delivery() -> None:
        await supervise(
            "alert_delivery",
            delivery.run,
            health=health,
            metrics=metrics,
            backoff_max_seconds=settings.service_backoff_max_seconds,
        )

    @app.task  # type: ignore[untyped-decorator]
    async def close_clients_at_shutdown() -> None:
        """Waits for the worker to stop (Faust cancels its tasks), then closes HTTP pools."""
        try:
            await asyncio.Event().wait()
        finally:
            await screener.close()
            for sink in sinks:
                await sink.close()

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def report_lag() -> None:
        consumer = app.consumer
        lags: dict[tuple[str, int], int] = {}
        for tp in consumer.assignment():
            if tp.topic != settings.topic_uploads:
                continue
            try:  # position() waits while the client resets an unknown offset: bound it
                position = await asyncio.wait_for(consumer.position(tp), 2.0)
            except (TimeoutError, KafkaError, AssertionError):
                continue  # revoked or not fetched yet: no figure rather than a wrong one
            lag = consumer_lag(consumer.highwater(tp), position)
            if lag is not None:
                lags[(tp.topic, tp.partition)] = lag
        metrics.set_consumer_lag(lags)

    @app.page("/livez")
    class Livez(View):
        async def get(self, request: Request) -> Response:
            return self.json(health.report(), status=200 if health.live else 503)

    @app.page("/readyz")
    class Readyz(View):
        async def get(self, request: Request) -> Response:
            return self.json(health.report(), status=200 if health.ready else 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(
                generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0]
            )

    app.pipeline_services = (feed, delivery)  # type: ignore[attr-defined]
    return app
