"""A broker that comes back without its topics, against a live worker (issue 12, items 1 and 2).

The test broker keeps topics in memory, so a restart on the same port is exactly "every topic
deleted" (on Apache Kafka: a topic deleted or re-created by an operator). Each test has a
broker of its own.

Before: the worker's producer kept the old topics' partitions in its metadata cache, the broker
acknowledged every verdict written to a topic that no longer existed (and stored none), the
worker counted them and committed the uploads: a fresh consumer read 0 of them. And the
hash-list feed resumed at its old positions on the new, shorter topic, skipping the records
below them, so most of a re-published list was never applied.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from pipeline.adapters.broker import EmbeddedBroker
from pipeline.adapters.topics import topic_specs
from pipeline.core.hashlist import Category, HashListEntry, ListConfig
from pipeline.core.types import Algorithm, HashValue
from tests.imagegen import encode, synthetic_image
from tests.integration.harness import (
    KafkaIO,
    Topics,
    WebhookReceiver,
    WorkerProcess,
    http_get,
    running,
    wait_until,
)
from tests.integration.lists import entries_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SETTINGS = {
    "broker_unreachable_after_seconds": "2",
    "producer_request_timeout_seconds": "3",
    "topic_check_interval_seconds": "1",
}


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker only this test restarts (the session's broker serves other tests)."""
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    yield broker
    broker.stop()


def counted(metrics: str, name: str) -> float:
    """Sum of every series of a counter."""
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", metrics, re.M))


def verdicts_counted(metrics: str, action: str) -> float:
    series = rf'^screening_verdicts_total\{{action="{action}"\}} (\S+)$'
    return sum(float(v) for v in re.findall(series, metrics, re.M))


def restart_empty(broker: EmbeddedBroker) -> None:
    broker.stop()
    broker.start()  # same port, no topics, no committed offsets


def upload_positions(topics: Topics) -> dict[str, tuple[int, int]]:
    """upload id -> (partition, offset) of every upload on the uploads topic now."""
    consumer = KafkaConsumer(bootstrap_servers=topics.bootstrap, group_id=None)
    try:
        name = topics.name("uploads")
        partitions = [TopicPartition(name, p) for p in consumer.partitions_for_topic(name) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        found: dict[str, tuple[int, int]] = {}
        for _ in range(10):
            for records in consumer.poll(timeout_ms=300).values():
                for r in records:
                    found[r.key.decode()] = (r.partition, r.offset)
        return found
    finally:
        consumer.close()


def test_outputs_after_the_topics_vanished_are_stored_before_they_are_counted(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topics = Topics(own_broker.bootstrap_servers)
    topics.create()
    kafka = KafkaIO(topics)
    image = encode(synthetic_image(7, 160, 120))
    worker = WorkerProcess(topics, tmp_path, **SETTINGS).start()
    with running(worker):
        kafka.upload("before", image)  # the producer now has the output topics' metadata
        kafka.verdicts_for({"before"}, timeout=60)
        kafka.close()
        before_metrics = worker.metrics()
        before = counted(before_metrics, "screening_verdicts_total")

        restart_empty(own_broker)
        fresh = KafkaIO(topics)  # a producer with no stale metadata (creates `uploads`)
        after = {f"after-{i}" for i in range(20)}
        for upload_id in sorted(after):
            fresh.upload(upload_id, image)

        # Every verdict reaches a fresh consumer, with nothing deleted or created by the test
        # (the worker re-reads the new uploads topic from its start: none is skipped).
        fresh.verdicts_for(after, timeout=90)
        # And a block, so the `blocks` topic the worker re-created is read back too.
        fresh.publish(ListConfig.create("known", action="block"), entries_for("known", seed=4))
        wait_until(lambda: loaded_entries(worker.metrics(), "known") == 2, 60, what="list loaded")
        fresh.upload("blocked", encode(synthetic_image(4)))
        assert fresh.verdicts_for({"blocked"}, timeout=60)["blocked"]["action"] == "block"
        screened = after | {"blocked"}
        wait_until(
            lambda: counted(worker.metrics(), "screening_verdicts_total") - before >= len(screened),
            30,
            what="every verdict counted",
        )
        wait_until(
            lambda: (
                verdicts_counted(worker.metrics(), "block")
                > verdicts_counted(before_metrics, "block")
            ),
            30,
            what="the block counted",
        )
        metrics = worker.metrics()  # first: a verdict is stored before it is counted
        stored = [r for r in fresh.read_all("verdicts") if r["upload_id"] in screened]
        assert {r["upload_id"] for r in stored} == screened
        blocks = [r for r in fresh.read_all("blocks") if r["upload_id"] in screened]
        assert {r["upload_id"] for r in blocks} == {"blocked"}  # read by a fresh consumer
        # Nothing counted that a reader cannot find: per action, never more verdicts counted
        # than stored (a write sent again stores a verdict twice and counts it once; an upload
        # screened again is stored and counted again). Before: 20 counted, 0 stored.
        for action in ("allow", "review", "block", "error"):
            newly = verdicts_counted(metrics, action) - verdicts_counted(before_metrics, action)
            readable = sum(1 for r in stored if r["action"] == action)
            assert newly <= readable, (action, newly, readable)
        blocked = verdicts_counted(metrics, "block") - verdicts_counted(before_metrics, "block")
        assert blocked <= len(blocks), (blocked, len(blocks))
        assert "re-created" in worker.log()
        assert counted(metrics, "screening_topics_recreated_total") >= 4
        fresh.close()


def recreate(topics: Topics, kind: str) -> None:
    """Delete one topic and create it again, as an operator would (a new topic id, empty)."""
    admin = KafkaAdminClient(bootstrap_servers=topics.bootstrap)
    try:
        admin.delete_topics([topics.name(kind)])
        spec = next(s for s in topic_specs(topics.settings()) if s.name == topics.name(kind))
        deadline = time.monotonic() + 30
        while True:  # the deletion may take a moment to settle
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, spec.replication)])
                return
            except TopicAlreadyExistsError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        admin.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_uploads_on_a_recreated_uploads_topic_are_all_screened(
    own_broker: EmbeddedBroker, tmp_path: Path, workers: int
) -> None:
    topics = Topics(own_broker.bootstrap_servers)
    topics.create()
    kafka = KafkaIO(topics)
    image = encode(synthetic_image(7, 160, 120))
    started = [WorkerProcess(topics, tmp_path, **SETTINGS).start() for _ in range(workers)]

    def resets() -> float:
        return sum(counted(w.metrics(), "screening_uploads_resets_total") for w in started)

    with running(*started):
        # Every partition's position well past what the new topic will hold.
        before = {f"before-{i}" for i in range(40)}
        for upload_id in sorted(before):
            kafka.upload(upload_id, image)
        kafka.verdicts_for(before, timeout=90)
        resets_before = resets()

        recreate(topics, "uploads")
        after = {f"after-{i}" for i in range(20)}
        for upload_id in sorted(after):
            kafka.upload(upload_id, image)

        # Before: the worker kept its positions from the old topic; the new topic's records
        # below them were never read, so none of the 20 got a verdict.
        with contextlib.suppress(AssertionError):  # timed out: say how many arrived
            kafka.verdicts_for(after, timeout=90)
        screened = {r["upload_id"] for r in kafka.read_all("verdicts")} & after
        assert screened == after, f"{len(screened)} of {len(after)} screened"
        assert resets() > resets_before
        assert any("re-reading the new topic from the start" in w.log() for w in started)
        wait_until(
            lambda: all(w.ready_status() == 200 for w in started), 30, what="all ready again"
        )

        # Committed where the new topic's records end, not at the old topic's positions (a
        # restarted worker would skip from there).
        records = Counter(partition for partition, _ in upload_positions(topics).values())
        name = topics.name("uploads")
        wanted = {p: records[p] for p in range(topics.settings().topic_partitions)}

        def committed() -> dict[int, int]:
            admin = KafkaAdminClient(bootstrap_servers=topics.bootstrap)
            try:
                group = topics.settings().app_id
                offsets = admin.list_group_offsets(group).get(group, {})
            finally:
                admin.close()
            return {tp.partition: o.offset for tp, o in offsets.items() if tp.topic == name}

        wait_until(lambda: committed() == wanted, 30, what=f"commits at {wanted}")
    kafka.close()


def loaded_entries(metrics: str, list_name: str) -> int:
    pattern = rf'screening_index_entries\{{algorithm="\w+",list="{list_name}"\}} ([0-9.e+]+)'
    return int(sum(float(v) for v in re.findall(pattern, metrics)))


def screen(kafka: KafkaIO, upload_id: str, seed: int) -> str:
    kafka.upload(upload_id, encode(synthetic_image(seed), quality=80))
    return str(kafka.verdicts_for({upload_id}, timeout=60)[upload_id]["action"])


def filler(list_name: str, count: int) -> list[HashListEntry]:
    """``count`` entries of the list that match none of the test's pictures."""
    salt = sum(map(ord, list_name)) << 32
    return [
        HashListEntry(
            list_name=list_name,
            entry_id=f"filler-{i}",
            hash=HashValue(Algorithm.PHASH, (0x9E3779B97F4A7C15 * (salt + i + 1)) % 2**64),
            category=Category.OTHER,
        )
        for i in range(count)
    ]


def rereads(body: dict[str, Any]) -> bool:
    """Whether a /readyz body says the hash lists are being re-read from the start."""
    return not body.get("lists_caught_up") and "re-reading" in str(body.get("hashlists"))


@contextlib.contextmanager
def readiness_polled(worker: WorkerProcess) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    """Poll the worker's /readyz as fast as it answers, in a thread; yields what it answered."""
    seen: list[tuple[int, dict[str, Any]]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                status, body = http_get(worker.base_url + "/readyz", timeout=1)
                seen.append((status, json.loads(body)))

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    "check_interval",
    [
        pytest.param("1", id="topic-id"),
        # The topic check does not run before list B is loaded: only the feed's own test (a
        # high watermark below its position) can see the reset, as on a broker without ids.
        pytest.param("3600", id="high-watermark"),
    ],
)
def test_a_reset_hashlists_topic_is_read_again_into_a_fresh_index(
    own_broker: EmbeddedBroker, tmp_path: Path, check_interval: str
) -> None:
    topics = Topics(own_broker.bootstrap_servers)
    topics.create()
    kafka = KafkaIO(topics)
    # List A: 2 entries that match seed 1, and 6,000 others, so every partition's position is
    # past the records list B will have; B has enough (3,000) that re-reading it takes a while
    # a poll of /readyz can see.
    kafka.publish(
        ListConfig.create("a", action="block"), [*entries_for("a", seed=1), *filler("a", 6000)]
    )
    kafka.close()
    worker = WorkerProcess(
        topics, tmp_path, **{**SETTINGS, "topic_check_interval_seconds": check_interval}
    ).start()
    with running(worker):
        assert loaded_entries(worker.metrics(), "a") == 6002

        with readiness_polled(worker) as seen:
            restart_empty(own_broker)
            fresh = KafkaIO(topics)
            fresh.publish(
                ListConfig.create("b", action="block"),
                [*entries_for("b", seed=2), *filler("b", 3000)],
            )

            def b_loaded_and_ready() -> bool:
                metrics = worker.metrics()
                return loaded_entries(metrics, "b") == 3002 and worker.ready_status() == 200

            # Before: the feed kept its positions on the new, shorter topic and skipped B.
            wait_until(b_loaded_and_ready, 60, what="list B loaded, worker ready")
        # Not ready while it re-read the topic (it would have screened against a partial B).
        rereading = [body for status, body in seen if status == 503 and rereads(body)]
        assert rereading, f"/readyz never 503 for the re-read in {len(seen)} polls"
        assert loaded_entries(worker.metrics(), "a") == 0  # a fresh index, not A plus B
        assert screen(fresh, "b-content", seed=2) == "block"
        assert screen(fresh, "a-content", seed=1) == "allow"  # A is not on the topic any more
        assert counted(worker.metrics(), "screening_hashlist_resets_total") >= 1
        assert "re-reading it from the start" in worker.log()
        if check_interval == "3600":
            assert "below the next offset to apply" in worker.log()
        fresh.close()


def test_alerts_on_a_recreated_alerts_topic_are_all_delivered(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topics = Topics(own_broker.bootstrap_servers)
    topics.create()
    kafka = KafkaIO(topics)
    kafka.publish(ListConfig.create("known", action="block"), entries_for("known", seed=4))
    receiver = WebhookReceiver().start()
    worker = WorkerProcess(
        topics, tmp_path, webhook_url=receiver.url, webhook_secret="s3cret", **SETTINGS
    ).start()
    matching = encode(synthetic_image(4), quality=75)

    def delivered() -> set[str]:
        return {body["upload_id"] for body in receiver.bodies()}

    try:
        with running(worker):
            # Every partition's delivery position well past what the new topic will hold.
            before = {f"before-{i}" for i in range(24)}
            for upload_id in sorted(before):
                kafka.upload(upload_id, matching)
            wait_until(lambda: before <= delivered(), 90, what="alerts before")

            recreate(topics, "alerts")
            after = {f"after-{i}" for i in range(8)}
            for upload_id in sorted(after):
                kafka.upload(upload_id, matching)
            assert {v["action"] for v in kafka.verdicts_for(after, 90).values()} == {"block"}
            # Before: the sink's consumer kept its positions from the old topic, and the new
            # topic's alerts below them were never delivered.
            wait_until(lambda: after <= delivered(), 60, what="alerts after the re-creation")
            assert "delivering it again from the start" in worker.log()
    finally:
        receiver.stop()
        kafka.close()
