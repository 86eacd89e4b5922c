"""Delivers alerts from the durable ``alerts`` topic to the configured sinks.

Owns the outbox semantics: an alert's offset is committed only after every sink has accepted it
or refused it permanently (then it becomes a dead letter), so an unreachable sink loses nothing:
alerts wait in Kafka and are delivered when it recovers. It consumes in its own consumer group
(``<app_id>-alerts``) on its own connection, because a Faust agent blocked on a dead sink would
fill the shared consumer's buffers and stall screening; here a sink outage only grows this
group's lag. Delivery is at-least-once; sinks deduplicate by the alert id (idempotency key).
:meth:`AlertDeliveryService.run` raises when Kafka fails it (a commit refused after a rebalance
during a long sink outage, a dead letter that cannot be written); the worker supervises it and
calls it again, and the new run resumes from the group's committed offsets (at-least-once).
Must not: touch image content (alerts carry hashes' explanations, never bytes).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from pipeline.backoff import backoff_seconds
from pipeline.errors import PermanentError, RetryableError
from pipeline.models import AlertRecord, DeadLetter, SourceRef, Stage

log = logging.getLogger(__name__)


class AlertReason(enum.StrEnum):
    """Why an alert record could not be delivered, besides the sinks' own reasons."""

    INVALID_ALERT = "invalid_alert"


class AlertSink(Protocol):
    """Anything that can deliver one alert; raises RetryableError or PermanentError."""

    name: str

    async def deliver(self, alert: AlertRecord) -> None: ...

    async def close(self) -> None: ...


class DeliveryMetrics(Protocol):
    """The few metric hooks this service reports through (see pipeline.metrics)."""

    def alert_delivery(self, sink: str, outcome: str) -> None: ...

    def set_alerts_waiting(self, count: int) -> None: ...


DeadLetterEmitter = Callable[[DeadLetter], Awaitable[None]]


class AlertDeliveryService:
    """Consumes ``alerts``; per alert, retries each sink until it accepts or refuses for good."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        sinks: Sequence[AlertSink],
        metrics: DeliveryMetrics,
        dead_letter: DeadLetterEmitter,
        backoff_base_seconds: float = 0.5,
        backoff_max_seconds: float = 30.0,
        session_timeout_seconds: float = 10.0,
        heartbeat_interval_seconds: float = 1.0,
        worker_id: str = "worker",
        fetch_max_wait_ms: int | None = None,
        on_running: Callable[[], None] | None = None,
    ) -> None:
        self._worker_id = worker_id
        self._on_running = on_running
        self._sinks = list(sinks)
        self._metrics = metrics
        self._dead_letter = dead_letter
        self._topic = topic
        self._backoff = (backoff_base_seconds, backoff_max_seconds)
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
        #: Per partition, the offset of the first alert not yet delivered to every sink.
        self._undelivered: dict[TopicPartition, int] = {}
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Deliver until :meth:`stop` is called. Without sinks, alerts simply stay in Kafka.

        Raises on Kafka trouble; calling it again resumes from the committed offsets.
        """
        if not self._sinks:
            log.info("no alert sinks configured; alerts stay in topic %r", self._topic)
            if self._on_running is not None:
                self._on_running()
            await self._stopping.wait()
            return
        self._undelivered = {}
        self._consumer = AIOKafkaConsumer(self._topic, **self._consumer_options)
        try:
            await self._consumer.start()
            log.info("alert delivery to %s started", ", ".join(s.name for s in self._sinks))
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(timeout_ms=500, max_records=100)
                if self._on_running is not None:
                    self._on_running()
                for tp, records in batches.items():
                    for record in records:
                        if self._stopping.is_set():
                            return
                        self._undelivered[tp] = record.offset
                        self._report_waiting()
                        await self._deliver_record(record)
                        await self._consumer.commit({tp: record.offset + 1})
                        self._undelivered[tp] = record.offset + 1
                self._report_waiting()
        finally:
            await self._consumer.stop()

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
        self._metrics.set_alerts_waiting(waiting)

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
        for sink in self._sinks:
            await self._deliver_to(sink, alert, record)

    async def _deliver_to(
        self, sink: AlertSink, alert: AlertRecord, record: ConsumerRecord[bytes, bytes]
    ) -> None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                await sink.deliver(alert)
            except RetryableError as exc:
                self._metrics.alert_delivery(sink.name, "retry")
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
                self._metrics.alert_delivery(sink.name, "failed")
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
                self._metrics.alert_delivery(sink.name, "delivered")
                return
