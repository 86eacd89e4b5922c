"""Failures of real parts: a worker SIGKILLed mid-stream, a rebalance while a worker's buffer
is over its bound, and an alert sink that is down.

Failover: two workers share the consumer group; one is killed while uploads flow; every upload
still gets a verdict (duplicates are allowed, losses are not). Rebalance under back-pressure: a
second worker joins while the first holds its byte bound of uploads; both screen, none is lost.
Sink outage: the webhook refuses connections for a while; alerts wait in Kafka and every one
arrives after it recovers.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

import pytest

from pipeline.core.hashlist import ListConfig
from tests.imagegen import encode, noise_jpegs, synthetic_image
from tests.integration.harness import KafkaIO, WebhookReceiver, WorkerProcess, wait_until
from tests.integration.lists import entries_for
from tests.trickle import trickling_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MIB = 1024 * 1024


def metric_value(metrics: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} ([0-9.e+-]+)$", metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_sigkill_of_one_worker_loses_no_upload(
    kafka: KafkaIO, start_worker: Callable[..., WorkerProcess]
) -> None:
    first = start_worker(worker_id="worker-a")
    second = start_worker(worker_id="worker-b")
    images = [encode(synthetic_image(seed, 200, 150)) for seed in range(10)]
    upload_ids = [f"upload-{i:04d}" for i in range(300)]

    def produce() -> None:
        producer = KafkaIO(kafka.topics)
        try:
            for i, upload_id in enumerate(upload_ids):
                producer.upload(upload_id, images[i % len(images)])
                time.sleep(0.02)
        finally:
            producer.close()

    producing = threading.Thread(target=produce)
    producing.start()
    # Kill worker-a once both workers have screened part of the stream.
    wait_until(
        lambda: (
            {v["worker_id"] for v in kafka.read_all("verdicts", timeout=0.2)}
            >= {"worker-a", "worker-b"}
        ),
        60,
        what="both workers screening",
    )
    first.kill()
    killed_at = len(kafka.read_all("verdicts", timeout=0.2))
    producing.join()

    verdicts = kafka.wait_for(
        "verdicts", lambda rs: set(upload_ids) <= {r["upload_id"] for r in rs}, timeout=120
    )
    assert killed_at < len(upload_ids), "the kill came after the stream ended"
    assert {r["upload_id"] for r in verdicts} == set(upload_ids)
    assert all(r["action"] == "allow" for r in verdicts)
    after_kill = [r for r in verdicts[killed_at:] if r["worker_id"] == "worker-b"]
    assert after_kill, "the surviving worker took over nothing"
    assert second.alive()


def test_a_worker_joining_while_the_buffer_is_over_its_bound_loses_no_upload(
    kafka: KafkaIO, start_worker: Callable[..., WorkerProcess]
) -> None:
    """Worker-a screens one upload at a time behind a 1 MiB buffer; every 6th upload is a URL
    that trickles until its 2 s deadline, and the rest are ~270 KB inline, so its buffer is
    over its bound through the backlog. Worker-b joins (a rebalance) meanwhile; both screen
    and every upload gets its verdict.

    Before, Faust's consumer waited in the full buffer for room, holding up the records of
    every partition, and its pending put could outlive the rebalance that emptied the buffer.
    Now the buffer pauses the partitions that hand it records past its bound instead, and
    Faust's consumer never waits on it."""
    images = noise_jpegs(8)
    slow = {
        "consumer_prefetch_bytes": str(MIB),
        "max_in_flight": "1",
        "fetch_allow_networks": "127.0.0.1/32",
        "fetch_deadline_seconds": "2",
    }
    upload_ids = [f"backlog-{i:03d}" for i in range(120)]  # 100 inline: ~27 MiB of records
    with trickling_server(0.5) as url:
        first = start_worker(worker_id="worker-a", **slow)
        for i, upload_id in enumerate(upload_ids):
            if i % 6 == 5:
                content = {"kind": "url", "url": url}
                kafka.upload_event(
                    {"schema_version": 1, "upload_id": upload_id, "content": content}
                )
            else:
                kafka.upload(upload_id, images[i % len(images)])
        wait_until(
            lambda: len(kafka.read_all("verdicts", timeout=0.2)) >= 5,
            60,
            what="worker-a screening the backlog",
        )
        second = start_worker(worker_id="worker-b", **slow)
        before_join = {r["upload_id"] for r in kafka.read_all("verdicts", timeout=0.2)}
        verdicts = kafka.wait_for(
            "verdicts", lambda rs: set(upload_ids) <= {r["upload_id"] for r in rs}, timeout=180
        )
    assert len(before_join) < len(upload_ids) - 20, "worker-b joined after the backlog"
    slow_ids = {upload_id for i, upload_id in enumerate(upload_ids) if i % 6 == 5}
    assert {r["action"] for r in verdicts if r["upload_id"] not in slow_ids} == {"allow"}
    after_join = {r["worker_id"] for r in verdicts if r["upload_id"] not in before_join}
    assert after_join == {"worker-a", "worker-b"}, f"only {after_join} screened after the join"
    assert first.alive()
    assert second.alive()


def test_alerts_wait_in_kafka_while_the_webhook_is_down(
    kafka: KafkaIO, start_worker: Callable[..., WorkerProcess]
) -> None:
    receiver = WebhookReceiver()  # not started: its port refuses connections
    kafka.publish(ListConfig.create("outage", action="block"), entries_for("outage", seed=4))
    worker = start_worker(
        webhook_url=receiver.url, webhook_secret="s3cret", alert_backoff_max_seconds="1"
    )
    upload_ids = [f"match-{i}" for i in range(5)]
    for upload_id in upload_ids:
        kafka.upload(upload_id, encode(synthetic_image(4), quality=75))
    verdicts = kafka.verdicts_for(set(upload_ids))
    assert all(v["action"] == "block" for v in verdicts.values())
    expected = {
        f"{v['upload_id']}:{m['list']}:{m['entry_id']}"
        for v in verdicts.values()
        for m in v["matches"]
    }

    # While the sink is down, failures and the waiting alerts are visible; nothing is dropped.
    def retrying() -> bool:
        metrics = worker.metrics()
        retries = metric_value(
            metrics, "screening_alert_deliveries_total", '{outcome="retry",sink="webhook"}'
        )
        return (
            retries >= 3
            and metric_value(metrics, "screening_alerts_waiting", '{sink="webhook"}') >= 1
        )

    wait_until(retrying, 60, what="delivery retries while the sink is down")
    time.sleep(3)
    assert kafka.read_all("dead-letters") == []

    receiver.start()
    try:
        wait_until(
            lambda: {b["alert_id"] for b in receiver.bodies()} >= expected, 60, what="alerts"
        )
        wait_until(
            lambda: (
                metric_value(worker.metrics(), "screening_alerts_waiting", '{sink="webhook"}') == 0
            ),
            30,
            what="alerts_waiting back to zero",
        )
    finally:
        receiver.stop()
    delivered = metric_value(
        worker.metrics(), "screening_alert_deliveries_total", '{outcome="delivered",sink="webhook"}'
    )
    assert delivered >= len(expected)
