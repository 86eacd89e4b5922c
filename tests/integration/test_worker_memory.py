"""A worker's memory while it drains a backlog of large inline uploads, and after.

Before: Faust's stream buffer holds up to 4,096 records whatever their size, so a backlog of
inline uploads (a few hundred KB of base64 JSON each) was read into the worker whole: a few
thousand took it from 154 MB to ~1 GB, and glibc kept the memory after the drain. Now the
buffer and the Kafka client's fetches are bounded in bytes (PIPELINE_CONSUMER_PREFETCH_BYTES),
and the worker hands freed memory back to the system once it goes idle after a burst.

The worker screens a few uploads first (what the first ones load is not the backlog's), then
is frozen (SIGSTOP, with its hashing process) while the backlog is produced, so its resident
size is measured before it holds any of it. Its peak is the kernel's high-water mark, reset
when it resumes.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaProducer

from tests.imagegen import noise_jpeg, noise_jpegs
from tests.integration.harness import KafkaIO, WorkerProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MIB = 1024 * 1024
UPLOADS = 160  # ~44 MiB of records: far above what the bound below allows
WARM_UPS = 4
PREFETCH_BYTES = 2 * MIB
MAX_IN_FLIGHT = 4
PARTITIONS = 4  # the test topics' (Topics.create), all assigned to the one worker
#: What one fetch asks for (Settings.consumer_fetch_bytes): the prefetch bound, at most 1 MiB.
FETCH_BYTES = min(PREFETCH_BYTES, MIB)
#: Beyond the README's bound: the allocator's and Python's own bookkeeping while busy.
SLACK_BYTES = 12 * MIB
#: Resident size back within this of the baseline once idle (without the idle trim it stays
#: ~18 MiB above it).
RELEASED_WITHIN_BYTES = 8 * MIB


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (its high-water mark) of ``pid``, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def reset_peak(pid: int) -> None:
    """Reset the kernel's high-water mark of ``pid`` to its resident size now."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def produce_backlog(kafka: KafkaIO, images: list[bytes], count: int) -> tuple[int, int]:
    """``count`` inline upload records ``backlog-<i>`` on the test's uploads topic; their
    total bytes and the largest record's."""
    encoded = [base64.b64encode(image).decode() for image in images]
    producer = KafkaProducer(
        bootstrap_servers=kafka.topics.bootstrap, acks="all", max_request_size=2 * MIB
    )
    total = largest = 0
    try:
        for i in range(count):
            event = {
                "schema_version": 1,
                "upload_id": f"backlog-{i}",
                "content": {"kind": "inline", "data_base64": encoded[i % len(encoded)]},
                "received_at": datetime.now(UTC).isoformat(),
            }
            value = json.dumps(event).encode()
            total, largest = total + len(value), max(largest, len(value))
            producer.send(kafka.topics.name("uploads"), key=f"backlog-{i}".encode(), value=value)
        producer.flush(60)
    finally:
        producer.close(5)
    return total, largest


def test_memory_stays_within_the_prefetch_bound_and_returns_after_the_drain(
    kafka: KafkaIO, start_worker: Callable[..., WorkerProcess]
) -> None:
    images = noise_jpegs(16)
    worker = start_worker(
        consumer_prefetch_bytes=str(PREFETCH_BYTES), max_in_flight=str(MAX_IN_FLIGHT)
    )
    assert worker.process is not None
    pid = worker.process.pid
    for i in range(WARM_UPS):
        kafka.upload(f"warm-up-{i}", images[i])
    kafka.verdicts_for({f"warm-up-{i}" for i in range(WARM_UPS)})
    time.sleep(3.0)  # idle: the worker trims what the warm-ups took
    baseline = memory_kib(pid)["VmRSS"] * 1024

    os.killpg(pid, signal.SIGSTOP)  # the worker and its hashing process: nothing is read
    try:
        backlog, largest = produce_backlog(kafka, images, UPLOADS)
    finally:
        os.killpg(pid, signal.SIGCONT)
    reset_peak(pid)

    verdicts = kafka.verdicts_for({f"backlog-{i}" for i in range(UPLOADS)}, timeout=120)
    peak = memory_kib(pid)["VmHWM"] * 1024
    assert {v["action"] for v in verdicts.values()} == {"allow"}

    # The README's bound ("Memory"), for these settings and this backlog's largest record.
    bound = (
        PREFETCH_BYTES
        + largest  # the buffer takes one record past its bound
        + 2 * PARTITIONS * max(FETCH_BYTES, largest)  # fetched, and being handed over
        + MAX_IN_FLIGHT * 4 * largest  # the record, its parsed event, the decoded bytes
        + SLACK_BYTES
    )
    growth = peak - baseline
    print(
        f"backlog {UPLOADS} x {backlog // UPLOADS // 1024} KiB = {backlog // MIB} MiB: "
        f"baseline {baseline // MIB} MiB, peak {peak // MIB} MiB (+{growth // MIB} MiB), "
        f"bound +{bound // MIB} MiB"
    )
    assert growth <= bound, (
        f"the worker grew by {growth // MIB} MiB draining {backlog // MIB} MiB of uploads; "
        f"the prefetch bound allows {bound // MIB} MiB"
    )

    # Idle after the burst: what the drain took goes back to the system.
    def released() -> bool:
        return memory_kib(pid)["VmRSS"] * 1024 <= baseline + RELEASED_WITHIN_BYTES

    wait_until(released, 15, interval=0.5, what="the worker's memory back near its baseline")
    print(f"resident once idle: {memory_kib(pid)['VmRSS'] // 1024} MiB")


def test_an_inline_upload_larger_than_a_fetch_and_the_buffer_is_screened(
    kafka: KafkaIO, start_worker: Callable[..., WorkerProcess]
) -> None:
    """One fetch asks for at most 1 MiB and the buffer's bound is 1 MiB here, yet uploads
    records are up to the broker's message size: Kafka hands a partition's first record batch
    over whatever its size, and so does the test broker (measured: an 8 MiB record and a
    2.4 MB batch came whole to a consumer asking for 1 MiB). Records of ~1.6 and ~3 MiB are
    screened, and the partition goes on after them."""
    images = {"large-1": noise_jpeg(1, 1400, 1000), "large-2": noise_jpeg(2, 2000, 1400)}
    worker = start_worker(consumer_prefetch_bytes=str(MIB))
    producer = KafkaProducer(
        bootstrap_servers=kafka.topics.bootstrap, acks="all", max_request_size=8 * MIB
    )
    sizes = []
    try:
        for upload_id, image in [*images.items(), ("small", noise_jpeg(3, 64, 48))]:
            event = {
                "schema_version": 1,
                "upload_id": upload_id,
                "content": {"kind": "inline", "data_base64": base64.b64encode(image).decode()},
                "received_at": datetime.now(UTC).isoformat(),
            }
            value = json.dumps(event).encode()
            sizes.append(len(value))
            producer.send(kafka.topics.name("uploads"), key=b"same-partition", value=value)
        producer.flush(60)
    finally:
        producer.close(5)
    assert sizes[0] > MIB
    assert sizes[1] > 2 * MIB
    verdicts = kafka.verdicts_for({"large-1", "large-2", "small"}, timeout=90)
    assert {v["action"] for v in verdicts.values()} == {"allow"}
    assert all(v["error"] is None for v in verdicts.values())
    assert worker.alive()
