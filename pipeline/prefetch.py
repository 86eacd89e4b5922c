"""What the worker reads ahead of screening: the ``uploads`` buffer, bounded in bytes.

Faust hands every fetched record to the buffer of the stream that reads its topic, and that
buffer holds up to ``stream_buffer_maxsize`` records (4096) whatever their size. Inline uploads
are a few hundred KB of base64 JSON each, so a backlog was read into the worker whole: a few
thousand took it from 154 MB to ~1 GB. :class:`PrefetchBoundedTopic` is the ``uploads`` topic
with a buffer (:class:`ByteBoundedQueue`) that is under pressure once it holds ``max_bytes`` of
records: every partition that hands it a record then is paused, through Faust's own hook for
a buffer under pressure (``Consumer.on_buffer_full``: the partition's fetched records stay in
the Kafka client, which fetches no more for it), and resumed once the buffer has drained to
half the bound. The buffer never makes Faust's consumer wait: Faust delivers the records of
every partition from one loop, and a wait there for one partition's room held up all of them
and the rebalance behind them. The Kafka client keeps at most one fetched chunk per partition
meanwhile, which :func:`configure_faust_fetches` caps at ``Settings.consumer_fetch_bytes``.
Together that is what a worker holds ahead of screening.

At a rebalance Faust empties the buffer (every partition is revoked); the buffer then forgets
its bytes and its paused partitions (Faust makes every partition it assigns fetchable again).

:func:`forget_content` drops an event's record bytes once its upload is screened and its
outputs are written: the event still waits for its acknowledgement (behind an older upload of
its partition, up to ``max_uncommitted`` of them), but without the content.

Uses Faust's public extension points (a Topic subclass, a channel's ``queue``) and mode's queue
with the hooks its flow control and ``asyncio.Queue`` subclasses use (``in_pressure_high_state``,
``maybe_endorse_pressure_drop``, ``_put``, ``_get``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import faust
from mode.utils.queues import ThrowableQueue


def record_bytes(event: Any) -> int:
    """The key and value bytes of the Kafka record behind a Faust event (0 if it has none)."""
    message = getattr(event, "message", None)
    key = getattr(message, "serialized_key_size", 0) or 0
    value = getattr(message, "serialized_value_size", 0) or 0
    return int(key) + int(value)


class ByteBoundedQueue(ThrowableQueue[Any]):
    """Faust's stream buffer, under pressure at ``max_bytes`` of records as well as at Faust's
    own share of ``maxsize`` records; full (Faust's consumer waits) only at ``maxsize``.

    Faust's consumer puts every record with ``put_nowait_enhanced``, which first asks
    :meth:`in_pressure_high_state`: under pressure, the record's partition is paused
    (``on_pressure_high``) and its ``on_pressure_drop`` kept. Every ``get`` asks
    :meth:`maybe_endorse_pressure_drop`, which calls the kept callbacks once the buffer holds
    at most ``max_bytes // 2`` (and at most Faust's low mark of records), so the paused
    partitions fetch again. What is buffered past the bound is what the paused partitions
    had fetched already. ``held_bytes`` is what the buffer holds now.
    """

    def __init__(
        self, max_bytes: int, maxsize: int, *, flow_control: Any, clear_on_resume: bool
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self.max_bytes = max_bytes
        self.resume_bytes = max_bytes // 2
        self.held_bytes = 0
        super().__init__(
            maxsize=maxsize, flow_control=flow_control, clear_on_resume=clear_on_resume
        )

    @property
    def paused(self) -> int:
        """Partitions paused by this buffer's pressure, waiting for it to drain."""
        return len(self._pending_pressure_drop_callbacks)

    def in_pressure_high_state(self, callback: Callable[[], None]) -> bool:
        pending = self._pending_pressure_drop_callbacks
        if callback in pending:
            return False  # this partition is paused already
        if self.held_bytes >= self.max_bytes or self.qsize() >= self.pressure_high_size:
            pending.add(callback)
            self.on_pressure_high()
            return True
        return False

    def maybe_endorse_pressure_drop(self) -> None:
        pending = self._pending_pressure_drop_callbacks
        if pending and (
            self.empty()
            or (self.held_bytes <= self.resume_bytes and self.qsize() <= self.pressure_drop_size)
        ):
            callbacks = list(pending)
            pending.clear()
            for resume_partition in callbacks:
                resume_partition()
            self.on_pressure_drop()

    def _put(self, item: Any) -> None:
        super()._put(item)
        self.held_bytes += record_bytes(item)

    def _get(self) -> Any:
        item = super()._get()
        self.held_bytes -= record_bytes(item)
        # mode asks before it takes the record; asking after too resumes without a lag.
        self.maybe_endorse_pressure_drop()
        return item

    def clear(self) -> None:
        # Faust empties the buffer at a rebalance (all partitions revoked) and makes every
        # partition it then assigns fetchable: nothing held, nothing to resume.
        super().clear()
        self.held_bytes = 0
        self._pending_pressure_drop_callbacks.clear()


class PrefetchBoundedTopic(faust.Topic):
    """A Faust topic whose stream buffer holds at most ``max_bytes`` of records (plus one)."""

    def __init__(self, *args: Any, max_bytes: int, **kwargs: Any) -> None:
        self.max_bytes = max_bytes
        super().__init__(*args, **kwargs)

    def _clone_args(self) -> Mapping[str, Any]:
        # Faust clones the topic for the agent's stream: the clone keeps the bound.
        return {**super()._clone_args(), "max_bytes": self.max_bytes}

    @property
    def queue(self) -> ThrowableQueue[Any]:
        if self._queue is None:
            maxsize = self.maxsize
            if maxsize is None:
                maxsize = self.app.conf.stream_buffer_maxsize
            self._queue = ByteBoundedQueue(
                self.max_bytes,
                maxsize,
                flow_control=self.app.flow_control,
                clear_on_resume=True,
            )
        return self._queue


def forget_content(event: Any) -> None:
    """Drop the record bytes a screened Faust event still holds (its key, offset and
    acknowledgement state stay): the event may wait a while for its acknowledgement."""
    event.value = None
    event.message.value = None


def configure_faust_fetches(*, max_wait_ms: int | None, max_bytes: int) -> None:
    """Make each fetch of Faust's worker consumer ask for at most ``max_bytes`` in all, and
    long-poll at most ``max_wait_ms`` (None keeps Faust's 1500 ms).

    The one place the worker touches Faust internals: faust-streaming 0.15 passes its
    ``consumer_max_fetch_size`` to the Kafka client as the per-partition limit only, leaves
    the limit of a whole fetch at aiokafka's 50 MB and hard-codes the long poll. The embedded
    broker (tansu) ignores the per-partition limit (measured: 20 records of 275 KB in one fetch
    at a 300 KB limit) but honours the whole fetch's, and holds a fetch for its whole wait even
    when records arrive (see Settings.fetch_max_wait_ms). The worker process applies this
    before the app starts its consumer; applying it again replaces the earlier values.
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    current = AIOKafkaConsumerThread._create_worker_consumer
    create = getattr(current, "faust_original", current)

    def create_configured(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        # Both are read when the consumer starts its fetcher.
        consumer._fetch_max_bytes = max_bytes
        if max_wait_ms is not None:
            consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    create_configured.faust_original = create  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create_configured  # type: ignore[method-assign]
