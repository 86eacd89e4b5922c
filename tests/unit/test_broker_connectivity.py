"""Broker connectivity as pure state (readiness, transitions), its log lines and metrics, the
client-noise filter, and the producer request timeout reaching Faust's Kafka producer.

The outages themselves (a stopped, a frozen and a missing broker) are reproduced against real
workers in tests/integration/test_broker_outage.py.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from pipeline.app import build_faust_app
from pipeline.broker_watch import BrokerWatch
from pipeline.config import Settings
from pipeline.connectivity import BrokerConnectivity, BrokerTransition
from pipeline.hashlist_feed import HashListFeed
from pipeline.health import WorkerHealth
from pipeline.logs import ClientNoiseFilter
from pipeline.metrics import PipelineMetrics


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_silence_longer_than_the_limit_makes_the_broker_unreachable() -> None:
    clock = Clock()
    broker = BrokerConnectivity(unreachable_after_seconds=10, clock=clock)
    clock.now += 10
    assert broker.reachable  # counted from the start until the first success
    clock.now += 0.5
    assert not broker.reachable
    assert broker.reason() == "no request to the Kafka broker succeeded for 10.5s (limit 10s)"
    broker.fetched()
    assert broker.reachable
    assert broker.reason() is None
    clock.now += 8
    broker.produced()  # a produce acknowledgement counts as much as a fetch response
    clock.now += 8
    assert broker.reachable
    assert broker.report() == {
        "reachable": True,
        "reason": None,
        "seconds_since_fetch": 16.0,
        "seconds_since_produce": 8.0,
        "unreachable_after_seconds": 10,
    }


def test_each_change_is_announced_once() -> None:
    clock = Clock()
    broker = BrokerConnectivity(unreachable_after_seconds=5, clock=clock)
    broker.fetched()
    assert broker.transition() is None  # reachable from the start: nothing to say
    clock.now += 6
    assert broker.transition() is BrokerTransition.LOST
    clock.now += 60
    assert broker.transition() is None
    broker.answered()
    assert broker.transition() is BrokerTransition.REGAINED
    assert broker.transition() is None


def test_an_unreachable_broker_makes_the_worker_not_ready_but_still_live() -> None:
    clock = Clock()
    broker = BrokerConnectivity(unreachable_after_seconds=5, clock=clock)
    health = WorkerHealth(lists_caught_up=True, screening_started=True, clock=clock, broker=broker)
    assert health.ready
    clock.now += 6
    assert health.live
    assert not health.ready
    report = health.report()
    assert report["broker"]["reachable"] is False  # type: ignore[index]
    assert "Kafka broker" in report["broker"]["reason"]  # type: ignore[index]
    broker.fetched()
    assert health.ready


def test_the_watch_logs_one_line_per_change_and_keeps_the_gauges(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, wall = Clock(), Clock(1_700_000_000.0)
    metrics = PipelineMetrics(CollectorRegistry())
    watch = BrokerWatch(BrokerConnectivity(5, clock=clock), metrics, "kafka:9092", wall_clock=wall)
    registry = metrics.registry
    watch.fetched(1_700_000_000.5)
    watch.produced()
    assert registry.get_sample_value("screening_broker_last_fetch_timestamp_seconds") == (
        1_700_000_000.5
    )
    assert registry.get_sample_value("screening_broker_last_produce_timestamp_seconds") == (
        1_700_000_000.0
    )
    # The newest of both, whichever it was: the alert reads this one.
    assert registry.get_sample_value("screening_broker_last_contact_timestamp_seconds") == (
        1_700_000_000.5
    )
    wall.now += 30
    watch.produced()
    assert registry.get_sample_value("screening_broker_last_contact_timestamp_seconds") == (
        1_700_000_030.0
    )
    wall.now += 30
    watch.answered()  # a metadata answer of the topic check
    assert registry.get_sample_value("screening_broker_last_contact_timestamp_seconds") == (
        1_700_000_060.0
    )
    assert registry.get_sample_value("screening_broker_reachable") == 1
    caplog.set_level(logging.INFO, logger="pipeline.broker_watch")
    for _ in range(3):
        clock.now += 3
        wall.now += 3
        watch.check()
    assert registry.get_sample_value("screening_broker_reachable") == 0
    watch.fetched(wall.now)
    watch.check()
    watch.check()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("Kafka broker at kafka:9092 is unreachable: no request")
    assert messages[1] == "Kafka broker at kafka:9092 is reachable again after 9s without an answer"


def client_record(
    name: str, message: str, *args: object, level: int = logging.ERROR
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


def test_client_noise_passes_the_first_of_a_kind_then_summarises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    noise = ClientNoiseFilter(window_seconds=60, clock=clock)
    connect = "Unable connect to node with id %s: %s"
    caplog.set_level(logging.WARNING, logger="pipeline.logs")
    passed = [
        noise.filter(client_record("aiokafka", connect, node, "refused")) for node in range(1, 101)
    ]
    assert passed == [True] + [False] * 99
    # Another kind, another logger, a lower level, and a pre-formatted message that differs only
    # in numbers.
    assert noise.filter(client_record("aiokafka", "Unable to update metadata from %s", 1))
    assert noise.filter(client_record("pipeline.outputs", connect, 1, "x"))
    assert noise.filter(client_record("aiokafka", connect, 1, "x", level=logging.INFO))
    assert noise.filter(client_record("kafka.net.manager", "backoff 0.09 secs"))
    assert not noise.filter(client_record("kafka.net.manager", "backoff 6.58 secs"))
    assert caplog.records == []
    clock.now += 59
    noise.flush()
    assert caplog.records == []
    clock.now += 1
    noise.flush()
    summaries = sorted(r.getMessage() for r in caplog.records)
    assert summaries == [
        "aiokafka: 99 similar message(s) suppressed in the last 60 s "
        "(like 'Unable connect to node with id 1: refused')",
        "kafka.net.manager: 1 similar message(s) suppressed in the last 60 s "
        "(like 'backoff 0.09 secs')",
    ]
    # A new window: the kind passes once again.
    assert noise.filter(client_record("aiokafka", connect, 7, "refused"))


def test_the_producer_request_timeout_reaches_fausts_kafka_producer() -> None:
    settings = Settings(bootstrap_servers="127.0.0.1:9", producer_request_timeout_seconds=7)
    app = build_faust_app(settings, "127.0.0.1:9")
    assert app.conf.producer_request_timeout == 7
    # What Faust hands aiokafka's producer (its batch expiry and request timeout).
    assert app.producer._settings_default()["request_timeout_ms"] == 7000
    default = build_faust_app(Settings(bootstrap_servers="127.0.0.1:9"), "127.0.0.1:9")
    assert default.producer._settings_default()["request_timeout_ms"] == 30_000


class IdleTopicConsumer:
    """What the feed reads of its aiokafka consumer between jobs: the assignment and the time of
    each partition's last fetch response. aiokafka keeps fetching an idle partition in the
    background while the feed's loop waits for a job (tests/integration/test_broker_outage.py
    shows the real consumer stop advancing when the broker stops)."""

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("hashlists", 0)}

    def last_poll_timestamp(self, tp: TopicPartition) -> int:
        return int(time.time() * 1000)  # answered just now


def test_a_long_index_build_on_an_idle_worker_keeps_the_broker_reachable() -> None:
    """The feed waits for a build (5-11 s at 10M entries) and fetches meanwhile in the
    background; the responses must still count, or an idle worker reports an outage."""
    connectivity = BrokerConnectivity(unreachable_after_seconds=1.0)
    watch = BrokerWatch(connectivity, PipelineMetrics(), "broker:9092")
    feed = HashListFeed(
        bootstrap_servers="broker:9092",
        topic="hashlists",
        target=None,  # type: ignore[arg-type]  # the build below does not use it
        health=WorkerHealth(),
        metrics=PipelineMetrics(),
        on_fetch_response=watch.fetched,
    )
    feed._consumer = IdleTopicConsumer()  # type: ignore[assignment]

    async def build_taking(seconds: float) -> list[bool]:
        seen = []

        async def watch_reachability() -> None:
            while True:
                await asyncio.sleep(0.2)
                seen.append(connectivity.reachable)

        watcher = asyncio.create_task(watch_reachability())
        await feed._on_worker(time.sleep, seconds)
        watcher.cancel()
        return seen

    seen = asyncio.run(build_taking(2.5))
    assert len(seen) >= 10
    assert all(seen), seen
    assert watch.check() is None  # never lost, so nothing logged
