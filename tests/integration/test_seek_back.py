"""Seeking back after a rebalance dropped records the consumer had taken, on the real broker.

Faust's consumer drops what it took from the Kafka client when a rebalance stops the flow
in between, and seeks back to the committed offsets. aiokafka's seek_to_committed leaves a
partition with no commit where the dropped records left it: in CI a partition taken over
before its first commit lost a fetch's worth of uploads (offsets 4-65, never screened).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from pipeline.adapters.broker import EmbeddedBroker
from pipeline.seek_back import seek_to_committed_or_reset

pytestmark = [pytest.mark.integration]

RECORDS = 30


async def drained_consumer(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    """A group member that took every record of ``topic`` (one partition) from the client,
    as Faust's getmany does, and committed nothing."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"seek-back-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    taken = 0
    async with asyncio.timeout(60):
        while taken < RECORDS:
            batches = await consumer.getmany(timeout_ms=500)
            taken += sum(len(records) for records in batches.values())
    return consumer


def test_a_partition_with_no_commit_is_sought_back_to_its_beginning(
    broker: EmbeddedBroker,
) -> None:
    topic = f"seek-back-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()
    tp = TopicPartition(topic, 0)

    async def main() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
        await producer.start()
        try:
            for i in range(RECORDS):
                await producer.send_and_wait(topic, key=b"k", value=f"{i}".encode())
        finally:
            await producer.stop()
        consumer = await drained_consumer(broker.bootstrap_servers, topic)
        try:
            assert await consumer.position(tp) == RECORDS
            # aiokafka's own seek back leaves the taken records behind (what lost uploads).
            assert await consumer.seek_to_committed() == {tp: None}
            assert await consumer.position(tp) == RECORDS
            assert await seek_to_committed_or_reset(consumer, earliest=True) == {tp: None}
            assert await consumer.position(tp) == 0
            # With a commit, to the commit.
            await consumer.getmany(timeout_ms=2000)
            await consumer.commit({tp: OffsetAndMetadata(12, "")})
            assert await seek_to_committed_or_reset(consumer, earliest=True) == {tp: 12}
            assert await consumer.position(tp) == 12
        finally:
            await consumer.stop()

    asyncio.run(main())
