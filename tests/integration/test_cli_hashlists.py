"""`hashlist retract` as an operator uses it, on a real broker.

Retracting must say which keys the topic did not hold instead of claiming to have retracted
them, and refuse a call with nothing to retract.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.integration.harness import REPO, KafkaIO, Topics
from tests.integration.lists import entries_for

pytestmark = [pytest.mark.integration]


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, **env},
    )


def hashlist_records(topics: Topics) -> list[tuple[str, dict[str, Any] | None]]:
    """Every (key, value) on the test's hash-list topic, tombstones as None, read independently
    of the code under test (to the high watermark; end offsets are short on this broker)."""
    topic = topics.name("hashlists")
    consumer = KafkaConsumer(bootstrap_servers=topics.bootstrap, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[tuple[int, str, dict[str, Any] | None]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for part in consumer.poll(timeout_ms=200).values():
                records += [
                    (r.timestamp, r.key.decode(), None if r.value is None else json.loads(r.value))
                    for r in part
                ]
            if all(
                consumer.highwater(tp) is not None
                and consumer.position(tp) >= consumer.highwater(tp)
                for tp in partitions
            ):
                return [(key, value) for _, key, value in sorted(records, key=lambda r: r[0])]
        raise AssertionError("could not read the hash-list topic to its high watermark")
    finally:
        consumer.close()


def test_retract_names_the_keys_the_topic_does_not_hold(topics: Topics, tmp_path: Path) -> None:
    kafka = KafkaIO(topics)
    try:
        kafka.publish(None, entries_for("demo", seed=1))  # entry ids 1-phash and 1-dhash
    finally:
        kafka.close()

    result = run_cli(
        "hashlist", "retract", "--list", "demo", "1-phash", "never-seen", env=topics.env
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.strip() == "retracted 1 key(s)"
    assert "1 key(s) not on topic" in result.stderr
    assert "entry/demo/never-seen" in result.stderr
    tombstones = [key for key, value in hashlist_records(topics) if value is None]
    assert tombstones == ["entry/demo/1-phash"]  # nothing sent for the unknown id

    # Retracting it again: the topic no longer holds it, and the operator is told.
    result = run_cli("hashlist", "retract", "--list", "demo", "1-phash", env=topics.env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.strip() == "retracted 0 key(s)"
    assert "already retracted" in result.stderr
    assert "entry/demo/1-phash" in result.stderr

    result = run_cli("hashlist", "retract", "--list", "demo", "1-dhash", env=topics.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "retracted 1 key(s)"
    assert result.stderr == ""


def test_retract_with_nothing_to_retract_is_refused(topics: Topics) -> None:
    result = run_cli("hashlist", "retract", "--list", "demo", env=topics.env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        "pipeline: nothing to retract: give ENTRY_IDs, --file FILE or --list-config"
    )
    assert "retracted" not in result.stdout
    assert hashlist_records(topics) == []
