"""Delivers alerts from the durable ``alerts`` topic to one sink; the worker runs one per sink.

Owns the outbox semantics: an alert's offset is committed only after the sink has accepted it or
refused it permanently (then it becomes a dead letter), so an unreachable sink loses nothing:
alerts wait in Kafka and are delivered when it recovers. Each sink has its own consumer group
(``<app_id>-alerts-<sink>``) and connection, so it has its own committed position: a dead or
hung sink delays only its own alerts, never another sink's, and never screening (a Faust agent
blocked on a sink would fill the shared consumer's buffers and stall it); it only grows its own
group's lag. Delivery is at-least-once; sinks deduplicate by the alert id (idempotency key).

A sink that forgets alerts (Alertmanager keeps them in memory and expects clients to send the
active ones again, as Prometheus does) says when each alert ends (:meth:`AlertSink.ends_at`):
the service then re-asserts the alerts it delivered every ``reassert_seconds`` until they end,
from a bounded set (``active_max``; when full, the alert ending soonest is dropped, counted and
logged), and never sends one already past its end (after a long outage): it counts it as
``expired`` and logs it instead. The set lives in this worker's memory: alerts delivered by a
worker that stopped are not re-asserted by the others.

:meth:`AlertDeliveryService.run` raises when Kafka fails it (a commit refused after a rebalance
during a long sink outage, a dead letter that cannot be written); the worker supervises it and
calls it again, and the new run resumes from the group's committed offsets (at-least-once).
Must not: touch image content (alerts carry hashes' explanations, never bytes).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from pipeline.backoff import backoff_seconds
from pipeline.core.active_set import ActiveSet
from pipeline.errors import PermanentError, RetryableError
from pipeline.models import AlertRecord, DeadLetter, SourceRef, Stage

log = logging.getLogger(__name__)


class AlertReason(enum.StrEnum):
    """Why an alert record could not be delivered, besides the sinks' own reasons."""

    INVALID_ALERT = "invalid_alert"


class Outcome(enum.StrEnum):
    """What became of one delivery attempt (the ``outcome`` label of alert deliveries)."""

    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    #: Not sent: the alert had already ended by the time the sink could take it.
    EXPIRED = "expired"


class ReassertOutcome(enum.StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"


class AlertSink(Protocol):
    """Anything that can deliver alerts; delivering raises RetryableError or PermanentError."""

    name: str

    def ends_at(self, alert: AlertRecord) -> datetime | None:
        """When the sink considers ``alert`` over; None if it keeps alerts for good (then
        nothing expires and nothing is re-asserted)."""
        ...

    async def deliver(self, alert: AlertRecord) -> None: ...

    async def deliver_many(self, alerts: Sequence[AlertRecord]) -> None:
        """Deliver several at once (re-assertion); the same errors as :meth:`deliver`."""
        ...

    async def close(self) -> None: ...


class DeliveryMetrics(Protocol):
    """The metric hooks this service reports through (see pipeline.metrics)."""

    def alert_delivery(self, sink: str, outcome: str) -> None: ...

    def set_alerts_waiting(self, sink: str, count: int) -> None: ...

    def alerts_reasserted(self, sink: str, outcome: str, count: int) -> None: ...

    def set_alerts_active(self, sink: str, count: int) -> None: ...

    def alerts_dropped_from_active(self, sink: str, count: int) -> None: ...


DeadLetterEmitter = Callable[[DeadLetter], Awaitable[None]]


class AlertDeliveryService:
    """Consumes ``alerts`` for one sink; retries each alert until the sink accepts it or refuses
    it for good; re-asserts the active ones to a sink that forgets them."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        sink: AlertSink,
        metrics: DeliveryMetrics,
        dead_letter: DeadLetterEmitter,
        backoff_base_seconds: float = 0.5,
        backoff_max_seconds: float = 30.0,
        session_timeout_seconds: float = 10.0,
        heartbeat_interval_seconds: float = 1.0,
        worker_id: str = "worker",
        fetch_max_wait_ms: int | None = None,
        on_running: Callable[[], None] | None = None,
        reassert_seconds: float = 60.0,
        active_max: int = 10_000,
        clock: Callable[[], float] = time.time,
        start_from_group: str | None = None,
    ) -> None:
        """``start_from_group``: a consumer group whose committed offsets a partition starts
        from when this group has none for it (the one group all sinks shared before each had
        its own), so an upgrade does not deliver every retained alert again."""
        self._worker_id = worker_id
        self._on_running = on_running
        self._sink = sink
        self._metrics = metrics
        self._dead_letter = dead_letter
        self._topic = topic
        self._backoff = (backoff_base_seconds, backoff_max_seconds)
        self._reassert_seconds = reassert_seconds
        self._clock = clock
        self._consumer_options = {
            "bootstrap_servers": bootstrap_servers,
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": int(session_timeout_seconds * 1000),
            "heartbeat_interval_ms": int(heartbeat_interval_seconds * 1000),
            # A slow sink must not get us evicted from the group while we retry one record.
            "max_poll_interval_ms": 24 * 3600 * 1000,
        }
        if fetch_max_wait_ms is not None:
            self._consumer_options["fetch_max_wait_ms"] = fetch_max_wait_ms
        self._consumer: AIOKafkaConsumer
        #: Per partition, the offset of the first alert not yet delivered to the sink.
        self._undelivered: dict[TopicPartition, int] = {}
        #: Alerts delivered to a sink that forgets them, until they end (kept across restarts
        #: of :meth:`run`: they were delivered, whatever Kafka does).
        self._active: ActiveSet[AlertRecord] = ActiveSet(active_max)
        self._dropped_unlogged = 0
        self._reassert_failing = False
        self._expired: list[float] = []
        self._start_from_group = start_from_group
        self._stopping = asyncio.Event()
        #: Why the topic must be read again from its start (:meth:`topic_reset`), or None.
        self._reset_requested: str | None = None

    @property
    def sink(self) -> AlertSink:
        return self._sink

    async def run(self) -> None:
        """Deliver until :meth:`stop` is called. Raises on Kafka trouble; calling it again
        resumes from the committed offsets."""
        self._undelivered = {}
        self._earlier = await self._earlier_positions()
        self._floors: dict[TopicPartition, int | None] = {}
        self._consumer = AIOKafkaConsumer(self._topic, **self._consumer_options)
        loop = asyncio.get_running_loop()
        next_reassert = loop.time() + self._reassert_seconds
        try:
            await self._consumer.start()
            log.info(
                "alert delivery to %s started (consumer group %s)",
                self._sink.name,
                self._consumer_options["group_id"],
            )
            while not self._stopping.is_set():
                if self._reset_requested is not None:
                    await self._restart_from_beginning(self._reset_requested)
                batches = await self._consumer.getmany(timeout_ms=500, max_records=100)
                if self._on_running is not None:
                    self._on_running()
                for tp, records in batches.items():
                    floor = await self._floor(tp)
                    for record in records:
                        if self._stopping.is_set():
                            return
                        if self._reset_requested is not None:
                            break  # read from a topic that is gone: start over on the new one
                        if floor is not None and record.offset < floor:
                            await self._skip_to(tp, floor)
                            break
                        self._undelivered[tp] = record.offset
                        self._report_waiting()
                        await self._deliver_record(record)
                        await self._consumer.commit({tp: record.offset + 1})
                        self._undelivered[tp] = record.offset + 1
                self._report_waiting()
                self._log_expired()
                if loop.time() >= next_reassert:
                    await self._reassert()
                    next_reassert = loop.time() + self._reassert_seconds
        finally:
            await self._consumer.stop()

    async def _earlier_positions(self) -> dict[TopicPartition, int]:
        """The offsets ``start_from_group`` committed on the topic (empty without it)."""
        if self._start_from_group is None:
            return {}
        options = {k: v for k, v in self._consumer_options.items() if k != "group_id"}
        earlier = AIOKafkaConsumer(**{**options, "group_id": self._start_from_group})
        await earlier.start()
        try:
            await earlier.topics()  # metadata, for partitions_for_topic
            positions = {}
            for partition in sorted(earlier.partitions_for_topic(self._topic) or ()):
                tp = TopicPartition(self._topic, partition)
                offset = await earlier.committed(tp)
                if offset is not None:
                    positions[tp] = offset
            return positions
        finally:
            await earlier.stop()

    async def _floor(self, tp: TopicPartition) -> int | None:
        """Where ``tp`` starts if this group never committed it but the earlier group did
        (records below were delivered by the earlier version), else None; asked once a run."""
        if tp not in self._floors:
            start = self._earlier.get(tp)
            if start is not None and await self._consumer.committed(tp) is not None:
                start = None
            self._floors[tp] = start
        return self._floors[tp]

    async def _skip_to(self, tp: TopicPartition, offset: int) -> None:
        self._consumer.seek(tp, offset)
        await self._consumer.commit({tp: offset})
        self._floors[tp] = None
        log.info(
            "alerts to %s: %s[%d] starts at offset %d, where group %s left off",
            self._sink.name,
            tp.topic,
            tp.partition,
            offset,
            self._start_from_group,
        )

    def topic_reset(self, reason: str) -> None:
        """The alerts topic was deleted or re-created (seen by the worker's topic check): its
        positions belong to the old topic and would skip the new one's first alerts, so read
        the new topic from its start (committed there) before the next fetch."""
        self._reset_requested = reason

    async def _restart_from_beginning(self, reason: str) -> None:
        partitions = self._consumer.assignment()
        await self._consumer.seek_to_beginning(*partitions)
        positions = {tp: await self._consumer.position(tp) for tp in partitions}
        if positions:
            await self._consumer.commit(positions)
        self._reset_requested = None
        self._undelivered = {}
        self._earlier = {}  # the earlier group's offsets were the old topic's too
        self._floors = {}
        log.error(
            "alert delivery to %s: topic %r %s; delivering it again from the start",
            self._sink.name,
            self._topic,
            reason,
        )

    async def stop(self) -> None:
        """Ask :meth:`run` to finish after the alert in hand (its offset stays uncommitted)."""
        self._stopping.set()

    def _report_waiting(self) -> None:
        """Alerts not yet delivered: fetch high watermark minus the first undelivered offset.

        Not ``position()``: that moves past records as soon as they are fetched, so a batch
        stuck on a dead sink would read as nothing waiting.
        """
        waiting = 0
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            start = self._undelivered.get(tp)
            if high is not None and start is not None:
                waiting += max(0, high - start)
        self._metrics.set_alerts_waiting(self._sink.name, waiting)

    def _letter(
        self,
        record: ConsumerRecord[bytes, bytes],
        reason: str,
        message: str,
        upload_id: str | None,
        attempts: int,
    ) -> DeadLetter:
        return DeadLetter(
            upload_id=upload_id,
            stage=Stage.ALERT,
            reason=reason,
            message=message[:1000],
            attempts=attempts,
            source=SourceRef(topic=record.topic, partition=record.partition, offset=record.offset),
            failed_at=datetime.now(UTC),
            worker_id=self._worker_id,
        )

    async def _deliver_record(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            alert = AlertRecord.model_validate_json(record.value or b"")
        except ValueError as exc:
            await self._dead_letter(
                self._letter(
                    record,
                    AlertReason.INVALID_ALERT,
                    f"alert record failed validation: {exc}",
                    None,
                    1,
                )
            )
            return
        await self._deliver(alert, record)

    async def _deliver(self, alert: AlertRecord, record: ConsumerRecord[bytes, bytes]) -> None:
        sink = self._sink
        ends = sink.ends_at(alert)
        attempt = 0
        while not self._stopping.is_set():
            if ends is not None and ends.timestamp() <= self._clock():
                # Sending it would tell the sink it is already over: nobody would be paged.
                self._metrics.alert_delivery(sink.name, Outcome.EXPIRED)
                self._expired.append(self._clock() - ends.timestamp())
                return
            try:
                await sink.deliver(alert)
            except RetryableError as exc:
                self._metrics.alert_delivery(sink.name, Outcome.RETRY)
                delay = backoff_seconds(attempt, *self._backoff)
                log.warning(
                    "alert %s to %s failed (%s); retrying in %.1fs",
                    alert.alert_id,
                    sink.name,
                    exc.reason,
                    delay,
                )
                attempt += 1
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                except TimeoutError:
                    continue
            except PermanentError as exc:
                self._metrics.alert_delivery(sink.name, Outcome.FAILED)
                log.error("alert %s refused by %s: %s", alert.alert_id, sink.name, exc.reason)
                await self._dead_letter(
                    self._letter(
                        record,
                        exc.reason,
                        f"{sink.name} refused the alert: {exc}",
                        alert.upload_id,
                        attempt + 1,
                    )
                )
                return
            else:
                self._metrics.alert_delivery(sink.name, Outcome.DELIVERED)
                if ends is not None and self._reassert_seconds > 0:
                    self._remember(alert, ends)
                return

    def _remember(self, alert: AlertRecord, ends: datetime) -> None:
        dropped = self._active.add(alert.alert_id, alert, ends.timestamp())
        if dropped:
            self._metrics.alerts_dropped_from_active(self._sink.name, dropped)
            self._dropped_unlogged += dropped
        self._metrics.set_alerts_active(self._sink.name, len(self._active))

    def _log_expired(self) -> None:
        """One line for the alerts of a batch that ended before the sink could take them."""
        if self._expired:
            log.warning(
                "%d alert(s) to %s already past their end (by up to %.0fs) after the sink was "
                "unavailable: not sent (counted as outcome=expired; the alerts topic keeps them)",
                len(self._expired),
                self._sink.name,
                max(self._expired),
            )
            self._expired = []

    async def _reassert(self) -> None:
        """Send the active alerts again, so a sink that restarted (and forgot) has them back."""
        sink = self._sink
        alerts = self._active.active(self._clock())
        self._metrics.set_alerts_active(sink.name, len(alerts))
        if self._dropped_unlogged:
            log.warning(
                "%d active alert(s) to %s no longer re-asserted: more than %d are active "
                "(the soonest to end were dropped)",
                self._dropped_unlogged,
                sink.name,
                self._active.capacity,
            )
            self._dropped_unlogged = 0
        if not alerts:
            return
        try:
            await sink.deliver_many(alerts)
        except (RetryableError, PermanentError) as exc:
            self._metrics.alerts_reasserted(sink.name, ReassertOutcome.FAILED, len(alerts))
            if not self._reassert_failing:
                log.warning(
                    "re-asserting %d active alert(s) to %s failed (%s); trying again every %gs",
                    len(alerts),
                    sink.name,
                    exc.reason,
                    self._reassert_seconds,
                )
            self._reassert_failing = True
            return
        self._metrics.alerts_reasserted(sink.name, ReassertOutcome.DELIVERED, len(alerts))
        if self._reassert_failing:
            log.info("re-asserting active alerts to %s works again", sink.name)
            self._reassert_failing = False
