"""The producing CLI commands check delivery, on a real broker and real kafka-python producers.

A record the client refuses, a record the broker never confirms: each is counted and reported,
the command exits 1, and no traceback reaches the terminal. Before the fix the send futures were
ignored and such records were reported as published. A broker that is not there is one line and
exit 2 within seconds (it was ~20 lines of client log over 30 s). Records the broker never
confirms settle within the flush timeout by the producer's own delivery timeout, so the
producer closes cleanly without reaching into the client's private parts.
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

from pipeline.adapters.broker import EmbeddedBroker, free_port
from pipeline.adapters.delivery import Delivery, DeliveryFailed, kafka_producer
from pipeline.adapters.topics import TopicSpec, ensure_topics
from tests.imagegen import encode, synthetic_image
from tests.integration.harness import REPO, KafkaIO, Topics

pytestmark = [pytest.mark.integration]


def test_a_record_the_client_refuses_is_counted_and_named(broker: EmbeddedBroker) -> None:
    topic = f"delivery-{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap_servers, [TopicSpec(topic, 1)])
    delivery = Delivery.connect(
        broker.bootstrap_servers, flush_timeout=10, connect_timeout=5, max_request_size=2000
    )
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


def test_records_a_vanished_broker_never_confirms_are_reported_promptly(
    doomed_broker: EmbeddedBroker,
) -> None:
    producer = kafka_producer(
        doomed_broker.bootstrap_servers, flush_timeout=3, connect_timeout=5, linger_ms=0
    )
    producer.send("t", b"warm-up").get(timeout=10)  # connected, metadata known
    doomed_broker.stop(timeout=0.5)  # tansu waits for open connections on SIGTERM
    delivery = Delivery(producer, flush_timeout=3)
    for i in range(5):
        delivery.send("t", f"k{i}".encode(), b"v")
    started = time.monotonic()
    report = delivery.finish()  # must not raise, must not hang
    assert time.monotonic() - started < 10
    assert (report.sent, report.delivered, report.unconfirmed) == (5, 0, 5)
    assert not report.failed  # the client's timeouts are the broker's silence, not refusals
    assert report.summary() == (
        "5 of 5 record(s) not delivered (5 not confirmed by the broker within 3s)"
    )
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


def test_cli_commands_say_in_one_line_and_soon_that_the_broker_is_unreachable(
    tmp_path: Path,
) -> None:
    entries = tmp_path / "entries.csv"
    entries.write_text(
        "list,entry_id,algorithm,hash,category,source,note\n"
        "demo,p1,phash,0123456789abcdef,other,test,\n"
    )
    image = tmp_path / "a.jpg"
    image.write_bytes(encode(synthetic_image(3, 64, 48)))
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    # Default settings: the connect bound a new user gets is what is under test.
    env = {"PIPELINE_BOOTSTRAP_SERVERS": address}
    for args in (
        ("hashlist", "publish", str(entries), "-q"),  # producer
        ("hashlist", "publish", str(entries), "--list", "demo", "--action", "block", "-q"),
        ("hashlist", "retract", "--list", "demo", "p1"),  # both read the topic first
        ("submit", str(image), "--wait", "10"),  # consumer for the verdicts
    ):
        started = time.monotonic()
        result = run_cli(*args, env=env)
        elapsed = time.monotonic() - started
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stdout == "", (args, result.stdout)
        assert result.stderr.splitlines() == [
            f"pipeline: cannot connect to Kafka at {address} within 5s; is it running, and is "
            "PIPELINE_BOOTSTRAP_SERVERS (or --bootstrap-servers) right?"
        ], (args, result.stderr)
        # The client's own bootstrap wait is 30 s; ours is 5 s plus interpreter start-up,
        # which takes seconds on a busy 2-core machine. One at a time, to not add to that.
        assert elapsed < 25, (args, elapsed)


def test_cli_publish_reports_what_the_broker_confirmed(topics: Topics, tmp_path: Path) -> None:
    entries = tmp_path / "entries.csv"
    entries.write_text(
        "list,entry_id,algorithm,hash,category,source,note\n"
        "demo,p1,phash,0123456789abcdef,other,test,\n"
        "demo,p2,phash,fedcba9876543210,other,test,\n"
    )
    result = run_cli(
        "hashlist", "publish", str(entries), "--list", "demo", "--action", "block", "-q",
        env=topics.env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "published 3 records (2 entries, 1 list config(s))" in result.stdout
    kafka = KafkaIO(topics)
    try:
        assert len(kafka.read_all("hashlists")) == 3
    finally:
        kafka.close()
