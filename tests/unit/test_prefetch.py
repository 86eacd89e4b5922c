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


def test_the_buffer_is_full_at_its_byte_bound_and_always_takes_one_record() -> None:
    async def main() -> None:
        queue = make_queue(1000)
        queue.put_nowait(record(5000))  # larger than the bound: an empty buffer takes it
        assert queue.held_bytes == 5000
        assert queue.full()
        with pytest.raises(asyncio.QueueFull):
            queue.put_nowait(record(10))
        queue.get_nowait()
        assert (queue.held_bytes, queue.full()) == (0, False)
        queue.put_nowait(record(600))
        assert not queue.full()
        queue.put_nowait(record(600))  # past the bound by less than one record
        assert (queue.held_bytes, queue.full()) == (1200, True)

    asyncio.run(main())


def test_the_buffer_still_counts_records() -> None:
    async def main() -> None:
        queue = make_queue(MIB, maxsize=2)
        queue.put_nowait(record(10))
        queue.put_nowait(record(10))
        assert queue.full()

    asyncio.run(main())


def test_a_put_on_a_full_buffer_waits_until_a_get_frees_bytes() -> None:
    """Faust's consumer hands a record to a full buffer with ``await queue.put``: it must
    wait there (no record dropped, no partition paused) and go on once the agent takes one."""

    async def main() -> None:
        queue = make_queue(1000)
        queue.put_nowait(record(900))
        queue.put_nowait(record(900))
        put = asyncio.create_task(queue.put(record(900)))
        await asyncio.sleep(0.05)
        assert not put.done()
        await queue.get()
        await asyncio.wait_for(put, 1)
        assert (queue.qsize(), queue.held_bytes) == (2, 1800)

    asyncio.run(main())


def test_clearing_the_buffer_at_a_rebalance_forgets_its_bytes() -> None:
    async def main() -> None:
        queue = make_queue(1000)
        queue.put_nowait(record(2000))
        queue.clear()
        assert (queue.qsize(), queue.held_bytes, queue.full()) == (0, 0, False)

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
