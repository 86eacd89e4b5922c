"""A slow upload holds back nothing but its own verdict and its partition's commits.

A real worker on the test broker; a real HTTP server on loopback that answers one upload's URL
by trickling a byte a second (a slowloris: the read timeout never fires). One such upload among
100 inline ones: the inline verdicts arrive at their normal latency while the slow one is still
being fetched; the committed offset of the slow upload's partition does not pass it while it is
pending (at-least-once); and the slow upload ends at its fetch deadline with a timeout verdict.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from kafka import KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from tests.imagegen import encode, synthetic_image
from tests.integration.harness import KafkaIO, WorkerProcess, wait_until
from tests.trickle import trickling_server as serve_trickling

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FETCH_DEADLINE_SECONDS = 12.0


@pytest.fixture
def trickling_server() -> Iterator[str]:
    """A loopback URL whose body never ends: headers, then one byte a second."""
    with serve_trickling(1.0) as url:
        yield url


def upload_event(upload_id: str, content: dict[str, str]) -> bytes:
    event = {
        "schema_version": 1,
        "upload_id": upload_id,
        "content": content,
        "received_at": datetime.now(UTC).isoformat(),
    }
    return json.dumps(event).encode()


def test_one_hanging_url_does_not_hold_the_inline_uploads(
    kafka: KafkaIO, start_worker: Callable[..., WorkerProcess], trickling_server: str
) -> None:
    worker = start_worker(
        fetch_allow_networks="127.0.0.1/32",
        fetch_deadline_seconds=str(FETCH_DEADLINE_SECONDS),
        fetch_read_timeout_seconds="5",
    )
    topics = kafka.topics
    producer = KafkaProducer(bootstrap_servers=topics.bootstrap, acks="all")
    admin = KafkaAdminClient(bootstrap_servers=topics.bootstrap)
    uploads = topics.name("uploads")
    try:
        slow_event = upload_event("slow", {"kind": "url", "url": trickling_server})
        slow = producer.send(uploads, key=b"slow", value=slow_event).get(timeout=10)
        started = time.monotonic()
        image = base64.b64encode(encode(synthetic_image(7, 320, 240))).decode()
        inline_ids = {f"inline-{i:03d}" for i in range(100)}
        for upload_id in sorted(inline_ids):
            content = {"kind": "inline", "data_base64": image}
            producer.send(uploads, key=upload_id.encode(), value=upload_event(upload_id, content))
        producer.flush(timeout=30)

        verdicts = kafka.verdicts_for(inline_ids, timeout=FETCH_DEADLINE_SECONDS)
        inline_seconds = time.monotonic() - started
        assert all(v["action"] == "allow" for v in verdicts.values())
        # Still being fetched: the inline verdicts did not wait for it.
        assert "slow" not in {v["upload_id"] for v in kafka.read_all("verdicts", timeout=0.3)}
        assert inline_seconds < FETCH_DEADLINE_SECONDS - 2, inline_seconds

        # Its partition's committed offset has not passed it (Faust commits every ~3 s).
        time.sleep(4)
        group = topics.env["PIPELINE_APP_ID"]
        committed = admin.list_group_offsets(group)[group]
        slow_tp = TopicPartition(uploads, slow.partition)
        if slow_tp in committed:
            assert committed[slow_tp].offset <= slow.offset
        assert "slow" not in {v["upload_id"] for v in kafka.read_all("verdicts", timeout=0.3)}

        (verdict,) = kafka.verdicts_for({"slow"}, timeout=FETCH_DEADLINE_SECONDS + 20).values()
        assert verdict["action"] == "error"
        assert (verdict["error"]["stage"], verdict["error"]["reason"]) == ("fetch", "timeout")
        assert "deadline" in verdict["error"]["message"]
        assert time.monotonic() - started >= FETCH_DEADLINE_SECONDS - 1

        # Once it is done, the commit moves past it.
        def committed_past_slow() -> bool:
            offsets = admin.list_group_offsets(group)[group]
            return slow_tp in offsets and offsets[slow_tp].offset > slow.offset

        wait_until(committed_past_slow, 20, what="commit past the slow upload")
    finally:
        producer.close(timeout=5)
        admin.close()
    assert worker.alive()
