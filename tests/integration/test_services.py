"""Supervised background services against a real broker: they fail for real reasons, are
restarted with backoff, show as failing in the health report meanwhile, and recover.

The services run in-process (the same objects the worker wires up), so the test can break their
surroundings precisely: a hash-list topic that does not exist yet, a broker that is not there
yet, a matcher that fails on one record.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaProducer

from pipeline.adapters import hashlist_topic
from pipeline.adapters.alerts import WebhookSink
from pipeline.adapters.broker import EmbeddedBroker, free_port
from pipeline.adapters.topics import TopicSpec, ensure_topics
from pipeline.alerting import AlertDeliveryService
from pipeline.core.entrystore import EntryBatch
from pipeline.core.hashlist import ListConfig
from pipeline.core.matching import Matcher
from pipeline.hashlist_feed import FeedOperation, HashListFeed, MatcherTarget
from pipeline.health import WorkerHealth
from pipeline.metrics import PipelineMetrics
from pipeline.models import AlertRecord, DeadLetter
from pipeline.supervision import supervise
from tests.integration.harness import WebhookReceiver
from tests.integration.lists import entries_for

pytestmark = [pytest.mark.integration]


def restarts(metrics: PipelineMetrics, service: str) -> float:
    value = metrics.registry.get_sample_value(
        "screening_service_restarts_total", {"service": service}
    )
    return value or 0.0


def quickly_restarted(
    name: str, run: Callable[[], Awaitable[None]], health: WorkerHealth, metrics: PipelineMetrics
) -> Awaitable[None]:
    """``supervise`` with short backoffs, so restarts happen within a test's patience."""
    return supervise(
        name,
        run,
        health=health,
        metrics=metrics,
        backoff_base_seconds=0.1,
        backoff_max_seconds=0.3,
    )


async def eventually(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def publish_list(bootstrap: str, topic: str, name: str, seed: int) -> int:
    """Publish a list config and its entries (blocking; run it in a thread)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    entries = entries_for(name, seed=seed)
    try:
        hashlist_topic.publish(producer, topic, [ListConfig.create(name, action="block")], entries)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)
    return len(entries)


class PoisonedTarget:
    """The real matcher target, except that it fails on entries whose id contains "poison"
    (standing in for a bug the matcher might have on some record)."""

    def __init__(self, target: MatcherTarget) -> None:
        self._target = target

    def apply(self, operations: list[FeedOperation]) -> None:
        for kind, key, value in operations:
            if kind == "entry" and "poison" in str(key):
                raise RuntimeError("matcher bug")
            if isinstance(value, EntryBatch) and any("poison" in i for i in value.entry_ids):
                raise RuntimeError("matcher bug")
        self._target.apply(operations)

    def outcomes(self, operation: FeedOperation) -> Mapping[str, int]:
        return self._target.outcomes(operation)

    def defer_builds(self) -> None:
        self._target.defer_builds()

    def build(self) -> None:
        self._target.build()

    def after_apply(self) -> None:
        self._target.after_apply()


def test_the_hashlist_feed_restarts_until_its_topic_exists(broker: EmbeddedBroker) -> None:
    topic = f"hashlists-late-{uuid.uuid4().hex[:8]}"
    health = WorkerHealth()
    metrics = PipelineMetrics()
    matcher = Matcher()
    feed = HashListFeed(
        bootstrap_servers=broker.bootstrap_servers,
        topic=topic,
        target=MatcherTarget(matcher, metrics),
        health=health,
        metrics=metrics,
        on_running=lambda: health.service_running("hashlist_feed"),
        fetch_max_wait_ms=50,
        topic_wait_seconds=0.3,
    )

    async def main() -> None:
        task = asyncio.create_task(quickly_restarted("hashlist_feed", feed.run, health, metrics))
        try:
            await eventually(lambda: restarts(metrics, "hashlist_feed") >= 2, 20, "restarts")
            state = health.report()["services"]["hashlist_feed"]  # type: ignore[index]
            assert state["state"] == "failing"
            assert state["last_error"] == "RetryableError"
            assert not health.lists_caught_up

            spec = TopicSpec(topic, 2)
            await asyncio.to_thread(ensure_topics, broker.bootstrap_servers, [spec])
            published = await asyncio.to_thread(
                publish_list, broker.bootstrap_servers, topic, "late", 21
            )
            # The feed may find the topic while it is still empty (created, not yet published
            # to) and be caught up with nothing: wait for the entries as well.
            await eventually(
                lambda: (
                    health.lists_caught_up and sum(matcher.entry_counts().values()) == published
                ),
                30,
                "lists caught up with every published entry",
            )
            state = health.report()["services"]["hashlist_feed"]  # type: ignore[index]
            assert state["state"] == "running"
        finally:
            await feed.stop()
            await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_a_record_the_matcher_fails_on_is_skipped_not_fatal(broker: EmbeddedBroker) -> None:
    topic = f"hashlists-poison-{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap_servers, [TopicSpec(topic, 1)])
    good = publish_list(broker.bootstrap_servers, topic, "fine", 22)
    poison = entries_for("fine", seed=23)[0]
    poisoned = hashlist_topic.entry_record(poison).model_copy(update={"entry_id": "poison-1"})
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    producer.send(
        topic,
        key=hashlist_topic.entry_key("fine", "poison-1").encode(),
        value=poisoned.model_dump_json().encode(),
    ).get(timeout=10)
    producer.close(timeout=5)
    good += publish_list(broker.bootstrap_servers, topic, "fine", 24)

    health = WorkerHealth()
    metrics = PipelineMetrics()
    matcher = Matcher()
    feed = HashListFeed(
        bootstrap_servers=broker.bootstrap_servers,
        topic=topic,
        target=PoisonedTarget(MatcherTarget(matcher, metrics)),
        health=health,
        metrics=metrics,
        fetch_max_wait_ms=50,
    )

    async def main() -> None:
        task = asyncio.create_task(
            supervise("hashlist_feed", feed.run, health=health, metrics=metrics)
        )
        try:
            await eventually(lambda: health.lists_caught_up, 30, "lists caught up")
        finally:
            await feed.stop()
            await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert sum(matcher.entry_counts().values()) == good  # everything but the poisoned record
    assert restarts(metrics, "hashlist_feed") == 0
    rejected = metrics.registry.get_sample_value(
        "screening_hashlist_updates_total", {"operation": "entry", "outcome": "rejected"}
    )
    assert rejected == 1.0


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver().start()
    yield running
    running.stop()


def test_alert_delivery_restarts_until_the_broker_is_reachable(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens here yet
    bootstrap = f"127.0.0.1:{port}"
    health = WorkerHealth()
    metrics = PipelineMetrics()
    letters: list[DeadLetter] = []

    async def dead_letter(letter: DeadLetter) -> None:
        letters.append(letter)

    service = AlertDeliveryService(
        bootstrap_servers=bootstrap,
        topic="alerts",
        group_id="screening-alerts",
        sink=WebhookSink(receiver.url, b"secret"),
        metrics=metrics,
        dead_letter=dead_letter,
        session_timeout_seconds=6,
        heartbeat_interval_seconds=1,
        fetch_max_wait_ms=50,
        on_running=lambda: health.service_running("alert_delivery_webhook"),
    )
    alert = AlertRecord(
        alert_id="u1:eokm:e1", upload_id="u1", list="eokm", list_version="1", entry_id="e1",
        category="csam", algorithm="phash", distance=2, action="block",
        decided_at=datetime.now(UTC), worker_id="w1",
    )  # fmt: skip
    late = EmbeddedBroker(port, log_path=tmp_path / "tansu.log")

    def start_broker_with_an_alert() -> None:
        late.start()
        ensure_topics(bootstrap, [TopicSpec("alerts", 1)])
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        producer.send("alerts", key=b"u1", value=alert.model_dump_json().encode()).get(10)
        producer.close(timeout=5)

    async def main() -> None:
        task = asyncio.create_task(
            quickly_restarted("alert_delivery_webhook", service.run, health, metrics)
        )
        try:
            await eventually(
                lambda: restarts(metrics, "alert_delivery_webhook") >= 2, 20, "restarts"
            )
            state = health.report()["services"]["alert_delivery_webhook"]  # type: ignore[index]
            assert state["state"] == "failing"
            await asyncio.to_thread(start_broker_with_an_alert)
            await eventually(receiver.bodies, 30, "the alert at the webhook")
            assert health.report()["services"]["alert_delivery_webhook"]["state"] == "running"  # type: ignore[index]
        finally:
            await service.stop()
            await asyncio.wait_for(task, 15)
            await service.sink.close()

    try:
        asyncio.run(main())
    finally:
        with contextlib.suppress(Exception):
            late.stop()
    assert [body["alert_id"] for body in receiver.bodies()] == ["u1:eokm:e1"]
    assert letters == []


def test_a_sink_group_starts_where_the_shared_group_of_earlier_versions_left_off(
    receiver: WebhookReceiver, broker: EmbeddedBroker
) -> None:
    """Upgrading to one consumer group per sink must not deliver every retained alert again."""
    topic = f"alerts-upgrade-{uuid.uuid4().hex[:8]}"
    shared = f"screening-{uuid.uuid4().hex[:8]}-alerts"
    bootstrap = broker.bootstrap_servers
    ensure_topics(bootstrap, [TopicSpec(topic, 1)])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(3):
        alert = AlertRecord(
            alert_id=f"u{i}:eokm:e1", upload_id=f"u{i}", list="eokm", list_version="1",
            entry_id="e1", category="csam", algorithm="phash", distance=2, action="block",
            decided_at=datetime.now(UTC), worker_id="w1",
        )  # fmt: skip
        producer.send(topic, key=b"k", value=alert.model_dump_json().encode()).get(10)
    producer.close(timeout=5)
    metrics = PipelineMetrics()

    async def dead_letter(letter: DeadLetter) -> None:
        raise AssertionError(letter)

    async def main() -> None:
        # The shared group of the earlier version delivered the first two alerts.
        earlier = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=shared)
        earlier.assign([TopicPartition(topic, 0)])
        await earlier.start()
        await earlier.commit({TopicPartition(topic, 0): 2})
        await earlier.stop()
        service = AlertDeliveryService(
            bootstrap_servers=bootstrap, topic=topic, group_id=f"{shared}-webhook",
            sink=WebhookSink(receiver.url, b"secret"), metrics=metrics, dead_letter=dead_letter,
            session_timeout_seconds=6, fetch_max_wait_ms=50, start_from_group=shared,
        )  # fmt: skip
        task = asyncio.create_task(service.run())
        try:
            await eventually(receiver.bodies, 30, "an alert at the webhook")
            await asyncio.sleep(1)
        finally:
            await service.stop()
            await asyncio.wait_for(task, 15)
            await service.sink.close()

    asyncio.run(main())
    assert [body["alert_id"] for body in receiver.bodies()] == ["u2:eokm:e1"]
