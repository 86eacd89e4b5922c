"""The Faust application: the app built from settings, topics declared once, and the wiring.

Owns only the wiring: which agent reads which topic, which services run beside it, which views
the web server serves. The agent's flow is :mod:`pipeline.agents`, writing outputs durably
:mod:`pipeline.outputs`, the restart policy of services :mod:`pipeline.supervision`, the views
:mod:`pipeline.web`. Hashing runs in a process pool, so the event loop stays free for heartbeats.

Services beside the agent: the hash-list feed (every worker reads every list entry) and one alert
delivery per sink (each its own consumer group, so a dead sink stalls neither screening nor the
other sink), each supervised.
What the worker holds of uploads is bounded in bytes (:mod:`pipeline.prefetch`), and what a
burst took is handed back to the system once the worker is idle (:mod:`pipeline.memory`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from pipeline.adapters.topics import TopicInspector, topic_specs
from pipeline.agents import ScreeningAgent, report_upload_lag
from pipeline.alerting import AlertDeliveryService, AlertSink
from pipeline.broker_watch import BrokerWatch
from pipeline.config import Settings
from pipeline.connectivity import BrokerConnectivity
from pipeline.core.matching import Matcher
from pipeline.hashlist_feed import HashListFeed, MatcherTarget
from pipeline.health import WorkerHealth
from pipeline.memory import IdleTrim, glibc_malloc_trim
from pipeline.metrics import PipelineMetrics
from pipeline.outputs import OutputWriter
from pipeline.prefetch import PrefetchBoundedTopic, configure_faust_fetches, forget_content
from pipeline.quarantines import WorkerQuarantine
from pipeline.screening import Screener
from pipeline.seek_back import configure_faust_seek_back
from pipeline.startup import BrokerGate, WebFirst
from pipeline.supervision import supervise
from pipeline.topic_guard import TopicGuard
from pipeline.uploads_reset import FaustUploadPositions, UploadsReset, release_unacknowledged
from pipeline.web import register_views

log = logging.getLogger(__name__)


def build_faust_app(settings: Settings, bootstrap_servers: str) -> faust.App:
    """The Faust app for these settings (nothing registered on it yet)."""
    configure_faust_fetches(
        max_wait_ms=settings.fetch_max_wait_ms, max_bytes=settings.consumer_fetch_bytes
    )
    # A rebalance can drop records Faust already took from the client: seek every partition
    # back, also those with no commit yet (pipeline.seek_back).
    configure_faust_seek_back(earliest=True)  # as consumer_auto_offset_reset below
    return faust.App(
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
        # Per uploads partition and fetch (what the Kafka client holds beside the stream
        # buffer, which PrefetchBoundedTopic bounds): see Settings.consumer_prefetch_bytes.
        consumer_max_fetch_size=settings.consumer_fetch_bytes,
        producer_max_request_size=settings.producer_max_request_bytes,
        # Faust's default (1200 s) holds a batch for 20 minutes on a stalled broker before it
        # fails and OutputWriter's retries (and their log lines) start.
        producer_request_timeout=settings.producer_request_timeout_seconds,
        datadir=settings.faust_data_dir,  # not the working directory (see Settings)
    )


def output_sender(app: faust.App, settings: Settings) -> Any:
    """The ``send`` of :class:`OutputWriter`: one declared topic per output."""
    topics = {
        output: app.topic(name, key_type=bytes, value_type=bytes,
                          partitions=settings.topic_partitions)
        for output, name in (
            ("verdicts", settings.topic_verdicts),
            ("blocks", settings.topic_blocks),
            ("alerts", settings.topic_alerts),
            ("dead_letters", settings.topic_dead_letters),
        )
    }  # fmt: skip

    async def send(output: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        # force: publish now and hand back the delivery future, never attach the record to the
        # current event (where it would be published only when that event is acked).
        return await topics[output].send(key=key, value=value, force=True)

    return send


def create_app(
    settings: Settings,
    *,
    bootstrap_servers: str,
    screener: Screener,
    matcher: Matcher,
    metrics: PipelineMetrics,
    health: WorkerHealth,
    sinks: list[AlertSink],
    quarantine: WorkerQuarantine | None = None,
) -> faust.App:
    """Build the worker's Faust app around already-constructed collaborators."""
    app = build_faust_app(settings, bootstrap_servers)
    topics = guard_topics(app, settings, bootstrap_servers, metrics, health)
    broker = watch_broker(app, settings, bootstrap_servers, metrics, health, topics)
    writer = OutputWriter(
        output_sender(app, settings),
        metrics,
        worker_id=settings.worker_id,
        backoff_max_seconds=settings.emit_backoff_max_seconds,
        on_acknowledged=broker.produced,
        storage=topics,
    )
    agent = ScreeningAgent(
        screener=screener,
        writer=writer,
        metrics=metrics,
        health=health,
        max_in_flight=settings.max_in_flight,
        max_uncommitted=settings.max_uncommitted,
        retry_backoff_max_seconds=settings.emit_backoff_max_seconds,
        forget_content=forget_content,
        release_unacknowledged=release_unacknowledged,
    )
    # Faust's stream buffer counts records (4096): bound it in bytes too (pipeline.prefetch).
    uploads = PrefetchBoundedTopic(
        app,
        topics=[settings.topic_uploads],
        key_type=bytes,
        value_type=bytes,
        partitions=settings.topic_partitions,
        max_bytes=settings.consumer_prefetch_bytes,
    )

    @app.agent(uploads, name="screen-uploads")
    async def screen_uploads(stream: faust.StreamT[bytes]) -> None:
        # Acks are ours: an upload is acknowledged once its outputs are written and every
        # older upload of its partition is (pipeline.agents), not when the next one arrives.
        manual: Any = stream.noack()  # type: ignore[attr-defined]  # StreamT omits noack()
        log.info("screening uploads from %r", settings.topic_uploads)
        await agent.run(manual.events(), manual.ack)

    restart_uploads_when_recreated(app, settings, topics, agent, health, metrics)

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def report_lag() -> None:
        await report_upload_lag(app.consumer, settings.topic_uploads, metrics)

    trim_when_idle(app, agent)

    add_services(
        app, settings, bootstrap_servers, matcher, metrics, health, sinks, writer, quarantine,
        broker=broker, topics=topics,
    )  # fmt: skip

    @app.task  # type: ignore[untyped-decorator]
    async def close_clients_at_shutdown() -> None:
        """Waits for the worker to stop (Faust cancels its tasks), then closes HTTP pools and
        the topic guard's admin connection (before worker.py stops an embedded broker)."""
        try:
            await asyncio.Event().wait()
        finally:
            await topics.close()
            await screener.close()
            for sink in sinks:
                await sink.close()

    metrics.report_readiness(lambda: health.ready)
    register_views(app, health, metrics)
    return app


def trim_when_idle(app: faust.App, agent: ScreeningAgent) -> None:
    """Hand what a burst of uploads took back to the system once the worker is idle
    (pipeline.memory; nothing to do where the C library is not glibc)."""
    trim = glibc_malloc_trim()
    if trim is None:
        return
    idle = IdleTrim()

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def release_memory_when_idle() -> None:
        if idle.due(agent.taken, agent.in_flight, time.monotonic()):
            started = time.perf_counter()
            released = await asyncio.to_thread(trim)  # off the loop: it walks every arena
            log.debug(
                "idle after a burst: malloc_trim %s in %.0f ms",
                "released memory" if released else "found nothing to release",
                (time.perf_counter() - started) * 1000,
            )


def restart_uploads_when_recreated(
    app: faust.App,
    settings: Settings,
    topics: TopicGuard,
    agent: ScreeningAgent,
    health: WorkerHealth,
    metrics: PipelineMetrics,
) -> UploadsReset:
    """When the topic guard finds ``uploads`` deleted or re-created, read the new topic from
    its start and acknowledge nothing read from the old one (pipeline.uploads_reset)."""
    reset = UploadsReset(
        settings.topic_uploads,
        FaustUploadPositions(app, agent),
        agent,
        health=health,
        metrics=metrics,
        backoff_max_seconds=settings.emit_backoff_max_seconds,
    )

    def uploads_recreated(kinds: frozenset[str]) -> None:
        if "uploads" in kinds:
            reset.request("was deleted or re-created")

    topics.on_reset(uploads_recreated)
    return reset


def guard_topics(
    app: faust.App,
    settings: Settings,
    bootstrap_servers: str,
    metrics: PipelineMetrics,
    health: WorkerHealth,
) -> TopicGuard:
    """The worker's topics, created at start, checked before every output batch counts and
    every ``topic_check_interval_seconds``, re-created when they vanish (pipeline.topic_guard)."""
    kinds = {
        settings.topic_uploads: "uploads",
        settings.topic_hashlists: "hashlists",
        settings.topic_verdicts: "verdicts",
        settings.topic_blocks: "blocks",
        settings.topic_alerts: "alerts",
        settings.topic_dead_letters: "dead_letters",
    }
    inspector = TopicInspector(
        bootstrap_servers, connect_timeout_seconds=settings.broker_connect_timeout_seconds
    )
    guard = TopicGuard(
        inspector,
        topic_specs(settings),
        health=health,
        metrics=metrics,
        kinds=kinds,
        window=settings.topic_confirm_window_seconds,
    )

    @app.timer(interval=settings.topic_check_interval_seconds)  # type: ignore[untyped-decorator]
    async def check_topics() -> None:
        await guard.watch()

    return guard


def watch_broker(
    app: faust.App,
    settings: Settings,
    bootstrap_servers: str,
    metrics: PipelineMetrics,
    health: WorkerHealth,
    topics: TopicGuard,
) -> BrokerWatch:
    """Track the broker's reachability (/readyz, metrics, one log line per change), and start
    the web server before waiting for the broker (and creating the topics) at start."""
    if health.broker is None:
        health.broker = BrokerConnectivity(settings.broker_unreachable_after_seconds)
    watch = BrokerWatch(health.broker, metrics, bootstrap_servers)
    topics.on_answer(watch.answered)  # connectivity beside the hash-list feed's fetches
    gate = BrokerGate(bootstrap_servers, topics.establish, health.broker)
    app.boot_strategy = WebFirst(app, gate)

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def check_broker() -> None:
        watch.check()

    return watch


def add_services(
    app: faust.App,
    settings: Settings,
    bootstrap_servers: str,
    matcher: Matcher,
    metrics: PipelineMetrics,
    health: WorkerHealth,
    sinks: list[AlertSink],
    writer: OutputWriter,
    quarantine: WorkerQuarantine | None = None,
    broker: BrokerWatch | None = None,
    topics: TopicGuard | None = None,
) -> None:
    """Run the hash-list feed and one alert delivery per sink as supervised Faust tasks; the feed
    also hands ``quarantine`` operators' lifts and re-arms, its fetch responses tell ``broker``
    that the broker answers, and ``topics`` tells it when its topic was re-created."""
    feed = HashListFeed(
        bootstrap_servers=bootstrap_servers,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        topic=settings.topic_hashlists,
        target=MatcherTarget(matcher, metrics, quarantine, health),
        health=health,
        metrics=metrics,
        on_running=lambda: health.service_running("hashlist_feed"),
        on_fetch_response=None if broker is None else broker.fetched,
    )
    deliveries: list[AlertDeliveryService] = []
    if topics is not None:

        def consumed_topics_recreated(kinds: frozenset[str]) -> None:
            if "hashlists" in kinds:
                feed.topic_reset("the topic was deleted or re-created (a new topic id)")
            if "alerts" in kinds:
                for delivery in deliveries:
                    delivery.topic_reset("was deleted or re-created")

        topics.on_reset(consumed_topics_recreated)
    runs = {"hashlist_feed": feed.run}  # and one per sink: metrics.SERVICES
    for sink in sinks:
        delivery = AlertDeliveryService(
            bootstrap_servers=bootstrap_servers,
            topic=settings.topic_alerts,
            group_id=f"{settings.app_id}-alerts-{sink.name}",
            sink=sink,
            metrics=metrics,
            dead_letter=writer.write_dead_letter,
            backoff_max_seconds=settings.alert_backoff_max_seconds,
            session_timeout_seconds=settings.broker_session_timeout_seconds,
            heartbeat_interval_seconds=settings.heartbeat_interval_seconds,
            worker_id=settings.worker_id,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            on_running=_running(health, f"alert_delivery_{sink.name}"),
            reassert_seconds=settings.alertmanager_reassert_seconds,
            active_max=settings.alertmanager_active_max,
            start_from_group=f"{settings.app_id}-alerts",  # all sinks shared it before
        )
        runs[f"alert_delivery_{sink.name}"] = delivery.run
        deliveries.append(delivery)
    if not sinks:
        log.info("no alert sinks configured; alerts stay in topic %r", settings.topic_alerts)
    for name, run in runs.items():
        health.register_service(name)
        app.task(_supervised(name, run, settings, health, metrics))


def _running(health: WorkerHealth, name: str) -> Callable[[], None]:
    return lambda: health.service_running(name)


def _supervised(
    name: str,
    run: Callable[[], Awaitable[None]],
    settings: Settings,
    health: WorkerHealth,
    metrics: PipelineMetrics,
) -> Callable[[], Awaitable[None]]:
    # A Faust task that takes an argument is handed the app, so this takes none.
    async def supervised() -> None:
        await supervise(name, run, health=health, metrics=metrics,
                        backoff_max_seconds=settings.service_backoff_max_seconds)  # fmt: skip

    supervised.__name__ = supervised.__qualname__ = f"supervise_{name}"
    return supervised
