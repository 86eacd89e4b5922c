"""Producing records with kafka-python, and accounting for every one of them.

Owns :class:`Delivery`, the producer side of the CLI's Kafka tools (hashlist publish and
retract, submit, demo traffic): each record handed to it ends up confirmed by the broker or
reported as failed (counted by error, the first few named by key), and :meth:`Delivery.finish`
returns within the flush timeout with a :class:`DeliveryReport`; it never reports a record as
delivered that the broker did not take.

The bound is Kafka's own ``delivery.timeout.ms`` (an upper bound on the time to report success
or failure after ``send()`` returns), which :func:`kafka_producer` sets to the flush timeout.
So by the time a bounded ``flush()`` returns, every record has settled, the broker's silence
included (those records fail with a timeout and are reported as not confirmed), and the
producer closes cleanly: no record is left pending for kafka-python's finalizer to raise about
later, and no private part of the client is needed to give up on one.

Must not: print, or retry on its own beyond the client's retries within the delivery timeout.
kafka-python is imported where it is used (it costs ~0.6 s to import).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pipeline.adapters.topics import BrokerUnreachable
from pipeline.config import Settings
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

#: How many failed record keys a delivery report names (the rest are only counted).
REPORTED_KEYS = 10

#: How long past the flush timeout :meth:`Delivery.finish` waits for records to settle: by
#: then the delivery timeout has settled each, so this only covers the client's own latency.
SETTLE_SECONDS = 5.0


@dataclass
class DeliveryReport:
    """What became of the records handed to a producer."""

    sent: int = 0
    delivered: int = 0
    #: Records the client or broker refused, by error class name.
    failed: Counter[str] = field(default_factory=Counter)
    #: Keys of the first REPORTED_KEYS records refused (unconfirmed ones are only counted).
    failed_keys: list[str] = field(default_factory=list)
    flush_timeout: float = 0.0

    @property
    def unconfirmed(self) -> int:
        """Records the broker did not confirm within the flush timeout (nor refuse)."""
        return max(0, self.sent - self.delivered - sum(self.failed.values()))

    @property
    def ok(self) -> bool:
        return self.delivered == self.sent

    def summary(self) -> str:
        """One line: how many of how many were not delivered, and why."""
        causes = [f"{n:,} {name}" for name, n in self.failed.most_common()]
        if self.unconfirmed:
            causes.append(
                f"{self.unconfirmed:,} not confirmed by the broker within {self.flush_timeout:g}s"
            )
        keys = f"; first: {', '.join(self.failed_keys)}" if self.failed_keys else ""
        return (
            f"{self.sent - self.delivered:,} of {self.sent:,} record(s) not delivered "
            f"({'; '.join(causes)}){keys}"
        )


class DeliveryFailed(PipelineError):
    """Some records were not delivered; ``report`` says how many and why."""

    reason = "delivery_failed"

    def __init__(self, report: DeliveryReport) -> None:
        super().__init__(report.summary())
        self.report = report


def kafka_producer(
    bootstrap_servers: str, *, flush_timeout: float, connect_timeout: float, **options: Any
) -> Any:
    """A kafka-python producer (``acks=all``) whose every record settles within
    ``flush_timeout`` seconds of its send, and whose ``send()`` waits for topic metadata at most
    that long (kafka-python would wait 60 s). ``options`` are passed on; the delivery timeout is
    not one of them. Raises :class:`BrokerUnreachable` when no bootstrap server answers within
    ``connect_timeout`` seconds (kafka-python would try for 30 s)."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    delivery_ms = max(2, int(flush_timeout * 1000))
    config: dict[str, Any] = {
        "acks": "all",
        "linger_ms": min(20, delivery_ms // 2),
        "batch_size": 256 * 1024,
        "max_request_size": 64 * 1024 * 1024,
        "max_block_ms": delivery_ms,
        "bootstrap_timeout_ms": int(connect_timeout * 1000),
        **options,
    }
    # The client requires delivery_timeout_ms >= linger_ms + request_timeout_ms.
    config["delivery_timeout_ms"] = delivery_ms
    config["request_timeout_ms"] = min(
        config.get("request_timeout_ms", 30_000), delivery_ms - config["linger_ms"]
    )
    try:
        return KafkaProducer(bootstrap_servers=bootstrap_servers, **config)
    except KafkaError:
        raise BrokerUnreachable.at(bootstrap_servers, connect_timeout) from None


class Delivery:
    """Sends records with a kafka-python producer and tracks every send's outcome.

    Build it with :meth:`connect` (or hand it a producer from :func:`kafka_producer` with the
    same flush timeout). Outcomes are counted in callbacks rather than by keeping the futures,
    so publishing a million list entries does not hold a million futures. Callbacks run on the
    producer's I/O thread, hence the lock.
    """

    def __init__(self, producer: Any, flush_timeout: float) -> None:
        self._producer = producer
        self._lock = threading.Lock()
        self.report = DeliveryReport(flush_timeout=flush_timeout)

    @classmethod
    def connect(
        cls, bootstrap_servers: str, *, flush_timeout: float, connect_timeout: float, **options: Any
    ) -> Delivery:
        """A delivery over a new :func:`kafka_producer`; raises :class:`BrokerUnreachable`."""
        producer = kafka_producer(
            bootstrap_servers,
            flush_timeout=flush_timeout,
            connect_timeout=connect_timeout,
            **options,
        )
        return cls(producer, flush_timeout)

    @classmethod
    def from_settings(cls, bootstrap_servers: str, settings: Settings) -> Delivery:
        """:meth:`connect` with the CLI's flush and connect timeouts from ``settings``."""
        return cls.connect(
            bootstrap_servers,
            flush_timeout=settings.producer_flush_timeout_seconds,
            connect_timeout=settings.broker_connect_timeout_seconds,
        )

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Hand one record (with Kafka ``headers``, if any) to the producer; its outcome is
        counted when it settles."""
        from kafka.errors import KafkaError

        with self._lock:
            self.report.sent += 1
        try:
            future = self._producer.send(topic, key=key, value=value, headers=headers)
        except (KafkaError, ValueError, AssertionError) as exc:  # refused before it left
            self._failed(key, exc)
            return
        future.add_callback(self._delivered)
        future.add_errback(lambda exc: self._settled_unsent(key, exc))

    def _delivered(self, _metadata: Any) -> None:
        with self._lock:
            self.report.delivered += 1

    def _settled_unsent(self, key: bytes | None, exc: BaseException) -> None:
        """A record the producer gave up on: refused, or (a timeout) never confirmed in time,
        which the report counts as unconfirmed rather than by error name."""
        from kafka.errors import KafkaTimeoutError

        if not isinstance(exc, KafkaTimeoutError):
            self._failed(key, exc)

    def _failed(self, key: bytes | None, exc: BaseException) -> None:
        with self._lock:
            self.report.failed[type(exc).__name__] += 1
            if len(self.report.failed_keys) < REPORTED_KEYS:
                self.report.failed_keys.append((key or b"").decode("utf-8", "replace")[:256])

    def finish(self) -> DeliveryReport:
        """Wait (bounded) for every record to settle, close the producer, and return the
        report. Never raises on a timeout: what is not confirmed is reported as such."""
        from kafka.errors import KafkaError

        timeout = self.report.flush_timeout
        try:
            self._producer.flush(timeout=timeout + SETTLE_SECONDS)
        except KafkaError as exc:  # not expected: the delivery timeout settles every record
            log.warning("records still pending after the flush (%s)", type(exc).__name__)
        with self._lock:
            report = DeliveryReport(
                sent=self.report.sent,
                delivered=self.report.delivered,
                failed=Counter(self.report.failed),
                failed_keys=list(self.report.failed_keys),
                flush_timeout=timeout,
            )
        try:
            self._producer.close(timeout=min(5.0, timeout))
        except KafkaError as exc:
            log.warning("the producer did not close cleanly (%s)", type(exc).__name__)
        return report

    def finish_or_raise(self) -> DeliveryReport:
        """:meth:`finish`, raising :class:`DeliveryFailed` unless everything was delivered."""
        report = self.finish()
        if not report.ok:
            raise DeliveryFailed(report)
        return report
