"""The uploads buffer is full by bytes as well as by records; the fetch size follows the setting.

Faust's own buffer counts records only (4,096), so a backlog of inline uploads of a few hundred
KB each was read into the worker whole. tests/integration/test_worker_memory.py checks the
worker's resident size end to end; these check the pieces.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from mode.utils.queues import FlowControlEvent

from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError
from pipeline.prefetch import ByteBoundedQueue, configure_faust_fetches, forget_content

MIB = 1024 * 1024


@dataclass
class Message:
    serialized_key_size: int
    serialized_value_size: int
    value: bytes | None = b"content"


@dataclass
class Event:
    message: Message
    value: bytes | None = b"content"


def record(size: int) -> Event:
    return Event(Message(serialized_key_size=8, serialized_value_size=size - 8))


def make_queue(max_bytes: int, maxsize: int = 4096) -> ByteBoundedQueue:
    flowing = FlowControlEvent(initially_suspended=False)  # as Faust's, once the app runs
    return ByteBoundedQueue(max_bytes, maxsize, flow_control=flowing, clear_on_resume=False)


class Partition:
    """What Faust's conductor hands the buffer for one partition: pause and resume callbacks
    (``Consumer.on_buffer_full`` / ``on_buffer_drop``)."""

    def __init__(self) -> None:
        self.paused = False
        self.pauses = 0

    def on_pressure_high(self) -> None:
        self.paused = True
        self.pauses += 1

    def on_pressure_drop(self) -> None:
        self.paused = False


def deliver(queue: ByteBoundedQueue, partition: Partition, event: Event) -> None:
    """As Faust's conductor delivers a record to a buffer that is not full."""
    assert not queue.full(), "the conductor would wait here, holding up every partition"
    queue.put_nowait_enhanced(
        event,
        on_pressure_high=partition.on_pressure_high,
        on_pressure_drop=partition.on_pressure_drop,
    )


def test_past_its_byte_bound_the_buffer_pauses_partitions_and_never_makes_faust_wait() -> None:
    async def main() -> None:
        queue = make_queue(1000)
        first, second = Partition(), Partition()
        deliver(queue, first, record(5000))  # larger than the bound: an empty buffer takes it
        assert (queue.held_bytes, first.paused) == (5000, False)
        # Past the bound: each partition that hands over a record is paused, the record kept
        # (it was fetched already).
        deliver(queue, first, record(600))
        deliver(queue, second, record(600))
        deliver(queue, first, record(600))  # the rest of a fetch already under way
        assert (first.paused, second.paused, first.pauses, queue.paused) == (True, True, 1, 2)
        assert (queue.qsize(), queue.held_bytes, queue.full()) == (4, 6800, False)

    asyncio.run(main())


def test_paused_partitions_resume_once_the_buffer_drained_to_half_its_bound() -> None:
    async def main() -> None:
        queue = make_queue(1000)
        first, second = Partition(), Partition()
        for size in (400, 400, 400):
            deliver(queue, first, record(size))
        deliver(queue, second, record(400))  # 1200 held: second is paused
        assert (first.paused, second.paused) == (False, True)
        await queue.get()  # 1200 left
        queue.get_nowait()  # 800 left
        assert second.paused
        await queue.get()  # 400 <= 500 left: resumed
        assert (second.paused, queue.paused, queue.held_bytes) == (False, 0, 400)

    asyncio.run(main())


def test_the_buffer_still_counts_records() -> None:
    async def main() -> None:
        queue = make_queue(MIB, maxsize=5)
        partition = Partition()
        for _ in range(4):  # Faust's high mark: 5 / 1.25 records
            deliver(queue, partition, record(10))
        assert not partition.paused
        deliver(queue, partition, record(10))
        assert partition.paused
        assert queue.full()  # full by records: Faust's own wait

    asyncio.run(main())


def test_clearing_the_buffer_at_a_rebalance_forgets_its_bytes_and_its_paused_partitions() -> None:
    async def main() -> None:
        queue = make_queue(1000)
        revoked = Partition()
        deliver(queue, revoked, record(2000))
        deliver(queue, revoked, record(10))
        assert queue.paused == 1
        queue.clear()  # Faust then makes every partition it assigns fetchable itself
        assert (queue.qsize(), queue.held_bytes, queue.paused, queue.full()) == (0, 0, 0, False)
        deliver(queue, Partition(), record(10))
        assert await queue.get() is not None
        assert revoked.paused  # not resumed by the buffer: Faust's assignment owns it now

    asyncio.run(main())


def test_a_screened_event_keeps_its_acknowledgement_state_but_not_its_content() -> None:
    event = record(300_000)
    forget_content(event)
    assert event.value is None
    assert event.message.value is None
    assert event.message.serialized_value_size == 300_000 - 8  # still accounted the same


def test_the_prefetch_setting_caps_each_fetch_at_one_mib() -> None:
    assert Settings().consumer_prefetch_bytes == 16 * MIB
    assert Settings().consumer_fetch_bytes == MIB
    assert Settings(consumer_prefetch_bytes=MIB).consumer_fetch_bytes == MIB
    assert Settings(consumer_prefetch_bytes=64 * MIB).consumer_fetch_bytes == MIB


def test_a_prefetch_bound_below_one_mib_is_refused() -> None:
    with pytest.raises(ConfigError, match="PIPELINE_CONSUMER_PREFETCH_BYTES"):
        load_settings(consumer_prefetch_bytes=1000)


def test_configuring_faust_fetches_again_replaces_rather_than_stacks() -> None:
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    before = AIOKafkaConsumerThread._create_worker_consumer  # configured by an earlier test?
    faust_own = getattr(before, "faust_original", before)
    try:
        configure_faust_fetches(max_wait_ms=50, max_bytes=MIB)
        first = AIOKafkaConsumerThread._create_worker_consumer
        configure_faust_fetches(max_wait_ms=None, max_bytes=2 * MIB)
        second = AIOKafkaConsumerThread._create_worker_consumer
        assert first is not second
        assert first.faust_original is second.faust_original is faust_own  # type: ignore[attr-defined]
    finally:
        AIOKafkaConsumerThread._create_worker_consumer = before  # type: ignore[method-assign]
