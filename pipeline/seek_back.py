"""Where the worker's consumer reads again after a rebalance stopped it mid-fetch.

Faust's consumer takes records out of the Kafka client before it hands them on. When a
rebalance stops the flow in between (the fetch was already under way), Faust drops them and
seeks every partition back to its committed offset (``Consumer.perform_seek``). aiokafka's
``seek_to_committed`` only seeks partitions whose committed offset is above 0 and leaves the
others where the dropped records left them: a partition that changed owner before its first
commit lost a fetch's worth of uploads, never screened by anyone (seen in CI and reproduced:
offsets 4-65 of one partition, ~825 KB, after worker-a was killed 2 s after it took that
partition over). It also stops at the first partition revoked meanwhile, leaving the ones
after it unsought.

:func:`seek_to_committed_or_reset` seeks each partition assigned now to its committed offset,
or, without one, to where the reset policy starts (the beginning, for the worker), and skips a
partition revoked meanwhile (its next owner starts from the committed offset).
:func:`configure_faust_seek_back` makes Faust's worker consumer seek with it.
"""

from __future__ import annotations

from typing import Any


async def seek_to_committed_or_reset(consumer: Any, *, earliest: bool) -> dict[Any, int | None]:
    """Seek every partition ``consumer`` (an ``aiokafka.AIOKafkaConsumer`` in a group) owns
    now to its committed offset, or to the beginning (``earliest``) or end of the partition
    when it has none; returns the committed offsets (None: none) as ``seek_to_committed`` does.

    Runs on the consumer's own event loop (Faust's consumer thread). Raises what the broker
    requests raise, except for a partition revoked meanwhile, which is left out.
    """
    from aiokafka.errors import IllegalStateError

    committed: dict[Any, int | None] = {}
    for tp in sorted(consumer.assignment()):
        try:
            offset = await consumer.committed(tp)
            if offset is not None:
                consumer.seek(tp, offset)
            elif earliest:
                await consumer.seek_to_beginning(tp)
            else:
                await consumer.seek_to_end(tp)
        except IllegalStateError:  # revoked since assignment(): not ours to seek any more
            continue
        committed[tp] = offset
    return committed


def configure_faust_seek_back(*, earliest: bool) -> None:
    """Make Faust's worker consumer seek back with :func:`seek_to_committed_or_reset`
    (``earliest``: as the app's ``consumer_auto_offset_reset``). Applying it again replaces
    the earlier setting."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    async def seek_to_committed(self: Any) -> Any:
        return await self.call_thread(
            seek_to_committed_or_reset, self._ensure_consumer(), earliest=earliest
        )

    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
