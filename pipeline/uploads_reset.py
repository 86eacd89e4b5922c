"""Starting over on a re-created ``uploads`` topic: read the new topic from its first record.

Why this exists: offsets only mean something on one topic. When ``uploads`` is deleted and
created again under a running worker (an operator, a tool, a broker that lost its metadata),
the worker's consumer keeps its positions and Faust its read and commit bookkeeping of the old
topic, since neither knows topic ids. The new topic's records below those positions are then
never read (a broker that serves a fetch beyond a partition's end with nothing, like the
embedded one), or read and dropped by Faust as already seen (a broker that answers "out of
range", like Kafka, after which the client starts over at the earliest offset): seen, 20 of 20
uploads produced after a re-creation never screened. And an upload taken from the old topic,
acknowledged after the change, would commit its old offset on the new topic.

Owns the repair, started by the topic guard (:meth:`pipeline.topic_guard.TopicGuard.on_reset`)
when it finds ``uploads`` missing or with a new topic id: the agent stops acknowledging every
upload taken so far (:meth:`pipeline.agents.ScreeningAgent.forget_taken`; they are still
screened and written, keyed, so at worst a duplicate); the worker's partitions of the topic
are committed at, and its consumer positioned to, the earliest offset of the new topic; /readyz
answers 503 with ``uploads_problem`` meanwhile; one ERROR line says it and
``screening_uploads_resets_total`` counts it. Records of the new topic screened before the
repair are screened again (duplicates, never a loss).

:class:`FaustUploadPositions` is the only place that moves Faust's consumer (how Faust's own
seek back after a rebalance goes is :mod:`pipeline.seek_back`'s: it seeks a partition
committed at 0 to 0, as the repair expects, where aiokafka's seek left it). It follows what
Faust itself does around a rebalance (stop the flow, clear the stream buffers, seek, resume) and
clears the per-partition bookkeeping Faust clears when a partition is revoked; those are
private attributes of faust-streaming 0.15's ``Consumer`` (pinned in pyproject), covered by the
integration test that re-creates the topic under a live worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pipeline.backoff import backoff_seconds
from pipeline.health import WorkerHealth
from pipeline.metrics import PipelineMetrics

log = logging.getLogger(__name__)


class UploadPositions(Protocol):
    """The consumer side: moves this worker's partitions of a topic to their earliest offsets."""

    async def restart_from_earliest(self, topic: str) -> dict[int, int]:
        """Commit and seek every partition of ``topic`` this worker owns to its earliest
        offset; returns partition -> offset. Raises while the broker does not answer."""
        ...


class Forgetting(Protocol):
    def forget_taken(self) -> None: ...


class UploadsReset:
    """Runs the repair of the module docstring; one per worker, on its event loop."""

    def __init__(
        self,
        topic: str,
        positions: UploadPositions,
        agent: Forgetting,
        *,
        health: WorkerHealth,
        metrics: PipelineMetrics,
        backoff_max_seconds: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._topic = topic
        self._positions = positions
        self._agent = agent
        self._health = health
        self._metrics = metrics
        self._backoff_max = backoff_max_seconds
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        #: A reset asked for while one runs: that one starts over when it is done.
        self._again = False

    def request(self, reason: str) -> None:
        """The topic was deleted or re-created (``reason`` says how it was seen): stop
        acknowledging what was taken from it and start the repair. Returns at once."""
        self._agent.forget_taken()
        self._metrics.uploads_reset()
        self._health.uploads_problem = (
            f"uploads topic {self._topic!r} {reason}: re-reading it from the start"
        )
        log.error(
            "uploads topic %r %s: uploads read from the old topic are not acknowledged, and "
            "this worker is re-reading the new topic from the start; /readyz answers 503 "
            "until it is positioned there",
            self._topic,
            reason,
        )
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._repair())

    async def _repair(self) -> None:
        attempt = 0
        while True:
            self._again = False
            try:
                offsets = await self._positions.restart_from_earliest(self._topic)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker is away, or a rebalance got in the way
                delay = backoff_seconds(attempt, 0.5, self._backoff_max)
                attempt += 1
                log.warning(
                    "re-reading uploads topic %r from the start failed (%s); retry %d in %.1fs",
                    self._topic,
                    type(exc).__name__,
                    attempt,
                    delay,
                )
                await self._sleep(delay)
                continue
            if self._again:  # changed again meanwhile: what was taken since is forgotten too
                continue
            self._health.uploads_problem = None
            log.info(
                "uploads topic %r: reading again from the start (partition: offset %s)",
                self._topic,
                ", ".join(f"{p}: {o}" for p, o in sorted(offsets.items())) or "none owned",
            )
            return


def release_unacknowledged(event: Any) -> None:
    """Mark a Faust event's message done without acknowledging it: Faust waits for every
    message it handed out to be acknowledged before a rebalance or a shutdown goes on
    (``Consumer.wait_empty``), and one read from a topic that is gone never will be; its offset
    must not enter the commit bookkeeping (``Consumer.ack``) either."""
    from faust.types.tuples import ack_lock

    with ack_lock:
        event.message.acked = True


class FaustUploadPositions:
    """:class:`UploadPositions` for the worker's Faust app (see the module docstring)."""

    def __init__(
        self, app: Any, agent: Forgetting, *, settle_seconds: float = 1.5, timeout: float = 30.0
    ) -> None:
        """``settle_seconds``: how long a fetch already in progress may still hand records
        over after the flow stopped (Faust's fetch loop waits at most 1 s)."""
        self._app = app
        self._agent = agent
        self._settle = settle_seconds
        self._timeout = timeout

    async def restart_from_earliest(self, topic: str) -> dict[int, int]:
        app = self._app
        consumer = app.consumer
        while app.rebalancing:  # its end resumes the flow: start after it
            await asyncio.sleep(0.2)
        rebalances = app.rebalancing_count
        # Stopped until this succeeds (a failure is retried; a rebalance resumes it on its own
        # and is then followed by another attempt).
        consumer.stop_flow()
        app.flow_control.suspend()
        owned = {tp for tp in consumer.assignment() if tp.topic == topic}
        consumer.pause_partitions(owned)
        app.flow_control.clear()  # buffered records are of the old positions
        await asyncio.sleep(self._settle)
        self._agent.forget_taken()  # whatever was taken until the flow stopped
        earliest = await asyncio.wait_for(consumer.earliest_offsets(*owned), self._timeout)
        offsets = {tp: int(earliest.get(tp) or 0) for tp in owned}
        # Faust's bookkeeping of the old positions is dropped first (what it forgets of a
        # revoked partition): its periodic commit, running while ours awaits the consumer
        # thread, would otherwise commit old-topic offsets over the ones committed here.
        for tp in owned:
            for bookkeeping in (consumer._gap, consumer._acked, consumer._acked_index):
                bookkeeping.pop(tp, None)
            consumer._committed_offset[tp] = offsets[tp] or None
        # Committed before the seek: a fetch loop that finds the flow stopped seeks to the
        # committed offsets, which are then these.
        await asyncio.wait_for(self._commit(offsets), self._timeout)
        await asyncio.wait_for(consumer.seek_wait(offsets), self._timeout)
        if app.rebalancing or app.rebalancing_count != rebalances:
            raise RuntimeError("a rebalance ran meanwhile")
        consumer.resume_partitions(owned)
        app.flow_control.resume()
        consumer.resume_flow()
        return {tp.partition: offset for tp, offset in offsets.items()}

    async def _commit(self, offsets: dict[Any, int]) -> None:
        """Commit on Faust's consumer thread, errors raised here (Faust's own commit crashes
        the worker on any error)."""
        from aiokafka.structs import OffsetAndMetadata, TopicPartition

        if not offsets:
            return
        thread = self._app.consumer._thread
        client = thread._ensure_consumer()
        await thread.call_thread(
            client.commit,
            {
                TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(offset, "")
                for tp, offset in offsets.items()
            },
        )
