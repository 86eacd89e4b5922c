"""The Faust application: topics declared once, the screening agent, web views, services.

Owns the wiring only. The screening agent takes uploads in batches, screens them concurrently
(hashing runs in a process pool, so the event loop stays free for heartbeats), writes every
output, and waits until the broker has acknowledged all of them before the batch's offsets can
be committed (Faust acks a ``take`` batch when the loop asks for the next one): at-least-once,
and every output is keyed by upload id so a replay overwrites rather than duplicates downstream
state. The agent waits for the hash lists to be loaded before screening anything, so an upload
is never allowed because the lists were still loading.

Services beside the agent: the hash-list feed (every worker reads every list entry) and the
alert delivery (its own consumer group, so a dead sink cannot stall screening).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.alerting import AlertDeliveryService, AlertSink
from pipeline.config import Settings
from pipeline.core.matching import Matcher
from pipeline.hashlist_feed import HashListFeed
from pipeline.health import WorkerHealth
from pipeline.metrics import PipelineMetrics
from pipeline.models import DeadLetter, SourceRef, Stage
from pipeline.screening import Screener, ScreeningOutcome

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

    async def emit(outcome: ScreeningOutcome) -> list[Awaitable[Any]]:
        """Send every record of one outcome; returns the delivery futures."""
        key = outcome.verdict.upload_id.encode()
        futures = [await verdicts.send(key=key, value=outcome.verdict.model_dump_json().encode())]
        if outcome.block is not None:
            futures.append(
                await blocks.send(key=key, value=outcome.block.model_dump_json().encode())
            )
        for alert in outcome.alerts:
            futures.append(await alerts.send(key=key, value=alert.model_dump_json().encode()))
        if outcome.dead_letter is not None:
            dl = outcome.dead_letter
            metrics.dead_letter(dl.stage, dl.reason)
            futures.append(await dead_letters.send(key=key, value=dl.model_dump_json().encode()))
        return futures

    def record(outcome: ScreeningOutcome, emitted_at: float) -> None:
        verdict = outcome.verdict
        metrics.verdict(verdict.action)
        metrics.processed(
            "invalid"
            if verdict.error and verdict.error.stage is Stage.PARSE
            else "error"
            if verdict.error
            else "screened"
        )
        for stage, seconds in verdict.stage_seconds.items():
            metrics.observe_stage(stage, seconds)
        start = outcome.received_at.timestamp() if outcome.received_at else None
        if start is not None and emitted_at >= start:
            metrics.end_to_end_seconds.observe(emitted_at - start)

    @app.agent(uploads, name="screen-uploads")
    async def screen_uploads(stream: faust.StreamT[bytes]) -> None:
        while not health.lists_caught_up:  # never screen against half-loaded lists
            await asyncio.sleep(0.1)
        health.screening_started = True
        metrics.ready.set(1)
        log.info("screening uploads from %r", settings.topic_uploads)
        batches: Any = stream
        async for events in batches.take_events(
            settings.batch_size, within=settings.batch_timeout_seconds
        ):
            outcomes = await asyncio.gather(
                *(
                    screener.screen(
                        e.value,
                        e.key,
                        SourceRef(
                            topic=e.message.topic,
                            partition=e.message.partition,
                            offset=e.message.offset,
                        ),
                    )
                    for e in events
                )
            )
            started = time.perf_counter()
            futures: list[Awaitable[Any]] = []
            for outcome in outcomes:
                futures += await emit(outcome)
            await asyncio.gather(*futures)  # durable before this batch's offsets are committed
            emitted_at = time.time()
            emit_seconds = (time.perf_counter() - started) / max(1, len(outcomes))
            for outcome in outcomes:
                metrics.observe_stage(Stage.EMIT, emit_seconds)
                record(outcome, emitted_at)

    feed = HashListFeed(
        bootstrap_servers=bootstrap_servers,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        topic=settings.topic_hashlists,
        target=MatcherTarget(matcher, metrics),
        health=health,
        metrics=metrics,
    )

    async def dead_letter(letter: DeadLetter) -> None:
        metrics.dead_letter(letter.stage, letter.reason)
        fut = await dead_letters.send(
            key=(letter.upload_id or "").encode() or None, value=letter.model_dump_json().encode()
        )
        await fut

    delivery = AlertDeliveryService(
        bootstrap_servers=bootstrap_servers,
        topic=settings.topic_alerts,
        group_id=f"{settings.app_id}-alerts",
        sinks=sinks,
        metrics=metrics,
        dead_letter=dead_letter,
        backoff_max_seconds=settings.alert_backoff_max_seconds,
        session_timeout_seconds=settings.broker_session_timeout_seconds,
        heartbeat_interval_seconds=settings.heartbeat_interval_seconds,
        worker_id=settings.worker_id,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )

    @app.task  # type: ignore[untyped-decorator]
    async def run_hashlist_feed() -> None:
        await feed.run()

    @app.task  # type: ignore[untyped-decorator]
    async def run_alert_delivery() -> None:
        await delivery.run()

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
        for tp in consumer.assignment():
            if tp.topic != settings.topic_uploads:
                continue
            high = consumer.highwater(tp)
            # Faust keeps the last offset handed to a stream per partition (no public getter).
            read = getattr(consumer, "_read_offset", {}).get(tp)
            if high is not None:
                lag = high - (read + 1 if read is not None else 0)
                metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, lag))

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
