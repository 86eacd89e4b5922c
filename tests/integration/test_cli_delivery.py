"""The producing CLI commands check delivery, on a real broker and real kafka-python producers.

A record the client refuses, a record the broker never confirms, a broker that is not there:
each is counted and reported, the command exits 1, and no traceback reaches the terminal. Before
the fix the send futures were ignored and such records were reported as published.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer

from pipeline.adapters.broker import EmbeddedBroker, free_port
from pipeline.adapters.topics import TopicSpec, ensure_topics
from pipeline.commands.stream import Delivery, DeliveryFailed
from tests.imagegen import encode, synthetic_image
from tests.integration.harness import REPO, KafkaIO, Topics

pytestmark = [pytest.mark.integration]


def test_a_record_the_client_refuses_is_counted_and_named(broker: EmbeddedBroker) -> None:
    topic = f"delivery-{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap_servers, [TopicSpec(topic, 1)])
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, max_request_size=2000)
    delivery = Delivery(producer, flush_timeout=10)
    for i in range(3):
        delivery.send(topic, f"small-{i}".encode(), b"x" * 100)
    delivery.send(topic, b"big", b"x" * 5000)  # over the producer's limit
    with pytest.raises(DeliveryFailed) as caught:
        delivery.finish_or_raise()
    report = caught.value.report
    assert (report.sent, report.delivered, report.unconfirmed) == (4, 3, 0)
    assert dict(report.failed) == {"MessageSizeTooLargeError": 1}
    assert str(caught.value) == (
        "1 of 4 record(s) not delivered (1 MessageSizeTooLargeError); first: big"
    )


@pytest.fixture
def doomed_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of this test's own, with a topic, that the test stops mid-way."""
    running = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    ensure_topics(running.bootstrap_servers, [TopicSpec("t", 1)])
    yield running
    running.stop()


@pytest.mark.parametrize("expire", [False, True], ids=["flush-times-out", "batches-expire"])
def test_records_a_vanished_broker_never_confirms_are_reported_promptly(
    doomed_broker: EmbeddedBroker, expire: bool
) -> None:
    options = {"request_timeout_ms": 400, "delivery_timeout_ms": 1000} if expire else {}
    producer = KafkaProducer(
        bootstrap_servers=doomed_broker.bootstrap_servers, linger_ms=0, **options
    )
    producer.send("t", b"warm-up").get(timeout=10)  # connected, metadata known
    doomed_broker.stop(timeout=0.5)  # tansu waits for open connections on SIGTERM
    delivery = Delivery(producer, flush_timeout=3)
    for i in range(5):
        delivery.send("t", f"k{i}".encode(), b"v")
    started = time.monotonic()
    report = delivery.finish()  # must not raise, must not hang
    assert time.monotonic() - started < 10
    assert not report.ok
    assert report.delivered == 0
    if expire:  # the client gave up on the batches: errbacks counted them
        assert report.failed["KafkaTimeoutError"] == 5
    else:
        assert report.unconfirmed == 5
        assert "5 not confirmed by the broker within 3s" in report.summary()
    # The producer is really closed, its I/O thread gone. A producer left holding records
    # raises from its finalizer minutes later, failing whichever test is running then.
    assert not producer._sender.is_alive()


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, **env},
    )


def test_cli_commands_report_an_unreachable_broker_without_a_traceback(tmp_path: Path) -> None:
    entries = tmp_path / "entries.csv"
    entries.write_text(
        "list,entry_id,algorithm,hash,category,source,note\n"
        "demo,p1,phash,0123456789abcdef,other,test,\n"
    )
    image = tmp_path / "a.jpg"
    image.write_bytes(encode(synthetic_image(3, 64, 48)))
    env = {
        "PIPELINE_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nothing listens there
        "PIPELINE_PRODUCER_FLUSH_TIMEOUT_SECONDS": "2",  # also bounds the bootstrap wait
    }
    for args in (
        ("hashlist", "publish", str(entries), "-q"),
        ("hashlist", "retract", "--list", "demo", "p1"),
        ("submit", str(image)),
    ):
        result = run_cli(*args, env=env)
        assert result.returncode == 1, (args, result.stderr)
        assert "cannot connect to Kafka" in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert "published" not in result.stdout


def test_cli_publish_reports_what_the_broker_confirmed(topics: Topics, tmp_path: Path) -> None:
    entries = tmp_path / "entries.csv"
    entries.write_text(
        "list,entry_id,algorithm,hash,category,source,note\n"
        "demo,p1,phash,0123456789abcdef,other,test,\n"
        "demo,p2,phash,fedcba9876543210,other,test,\n"
    )
    result = run_cli("hashlist", "publish", str(entries), "--list", "demo", "-q", env=topics.env)
    assert result.returncode == 0, result.stderr
    assert "published 3 records (2 entries, 1 list config(s))" in result.stdout
    kafka = KafkaIO(topics)
    try:
        assert len(kafka.read_all("hashlists")) == 3
    finally:
        kafka.close()
