"""Writing an upload's outputs (verdict, block, alerts, dead letter) durably to Kafka.

Owns what "written" means: every record is sent, every acknowledgement awaited, and then its
storage confirmed (the topics written to still exist as they were when it was sent: a broker
may acknowledge a record for a deleted topic without storing it, see pipeline.topic_guard);
what the broker did not take, or what cannot be confirmed, is retried with capped backoff for
as long as it takes (the upload's offset is not committed and nothing is counted meanwhile, lag
grows and the lag alerts fire, which is the honest signal); a record
refused for good (too large, invalid) is replaced by its slim copy plus an ``emit_failed`` dead
letter. Every record is keyed by upload id, so a replay overwrites rather than duplicates
downstream state. Knows nothing of Faust: the agent hands in a ``send`` function.

Retries are logged per incident (:class:`RetryLog`), not per write and retry: during a broker
outage every upload in flight retries its writes, which would be hundreds of lines a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import errors as kafka_errors  # what Faust produces with

from pipeline.backoff import backoff_seconds
from pipeline.metrics import PipelineMetrics
from pipeline.models import DeadLetter, EmitReason, Record, SourceRef, Stage
from pipeline.screening import ScreeningOutcome
from pipeline.verdicts import slim_block, slim_dead_letter, slim_verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputRecord:
    """One record to write. ``slim`` replaces it if the broker refuses it for good."""

    output: str  # one of pipeline.metrics.OUTPUTS
    key: bytes | None
    value: bytes
    upload_id: str | None
    source: SourceRef | None
    slim: bytes | None = None
    #: An ``emit_failed`` dead letter this writer made: counted once it is written.
    emit_failed_letter: bool = False


def encoded(record: Record) -> bytes:
    return record.model_dump_json().encode()


def output_records(outcome: ScreeningOutcome, source: SourceRef | None) -> list[OutputRecord]:
    """Every record one outcome writes, each with its slim fallback where there is one."""
    verdict = outcome.verdict
    upload_id = verdict.upload_id
    key = upload_id.encode()

    def record(output: str, value: Record, slim: Record | None) -> OutputRecord:
        return OutputRecord(
            output, key, encoded(value), upload_id, source, encoded(slim) if slim else None
        )

    records = [record("verdicts", verdict, slim_verdict(verdict))]
    if outcome.block is not None:
        records.append(record("blocks", outcome.block, slim_block(outcome.block)))
    records += [record("alerts", alert, None) for alert in outcome.alerts]
    if outcome.dead_letter is not None:
        letter = outcome.dead_letter
        records.append(record("dead_letters", letter, slim_dead_letter(letter)))
    return records


class StorageNotConfirmed(Exception):
    """Acknowledged, but the topic may not have stored it (it vanished or was re-created, or
    the broker did not answer the check): the record is sent again."""


#: Errors that refuse one record for good: retrying the same bytes cannot succeed.
_RECORD_REFUSED: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.CorruptRecordException,
    kafka_errors.InvalidTimestampError,
)


def refused_for_good(exc: BaseException) -> bool:
    """True when a produce failure is about the record itself (too large, invalid), so sending
    the same bytes again cannot succeed. Everything about the broker or the connection (timeouts,
    leader changes, a broker down, authorisation, a producer being restarted) may pass and is
    worth waiting for. Faust wraps client errors, so the cause chain is searched."""
    if isinstance(exc, StorageNotConfirmed):
        return False
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        if isinstance(seen, _RECORD_REFUSED):
            return True
        if isinstance(seen, kafka_errors.KafkaError):
            return False
        seen = seen.__cause__
    # Not a Kafka error at all: transport trouble may pass; anything else (a client-side type
    # or assertion error) is deterministic and would block the partition for good.
    return not isinstance(exc, OSError | TimeoutError | asyncio.CancelledError)


#: Schedules one record on an output; the awaitable it returns resolves once the broker has it.
SendFn = Callable[[str, bytes | None, bytes], Awaitable[Awaitable[Any]]]


class StorageCheck(Protocol):
    """Proof that acknowledged records are readable (:class:`pipeline.topic_guard.TopicGuard`):
    read ``epoch`` before sending; ``confirm(epoch)`` returns once the topics written to are
    still the ones they were then, and raises (the records must be sent again) otherwise."""

    @property
    def epoch(self) -> int: ...

    async def confirm(self, epoch: int) -> None: ...


#: While writes keep failing, one summary line per this many seconds.
RETRY_SUMMARY_SECONDS = 60.0


class RetryLog:
    """The log lines of failing writes: one WARNING when an incident starts (the first write
    that fails), then at most one summary per ``summary_seconds`` of what failed since, and one
    line when a write that had failed is written (the incident ends). Every write of the worker
    shares one; the asyncio loop is its only caller. ``clock`` is any monotonic clock."""

    def __init__(
        self,
        summary_seconds: float = RETRY_SUMMARY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._summary_seconds = summary_seconds
        self._clock = clock
        self._started: float | None = None  # None: no incident
        self._last_line = 0.0
        self._records = 0  # failed record sends not logged yet
        self._retries = 0
        self._kinds: set[str] = set()

    def failed(self, records: int, kinds: Collection[str], attempt: int, delay: float) -> None:
        """``records`` of one write were not written (errors named ``kinds``); its retry number
        ``attempt`` follows in ``delay`` seconds."""
        now = self._clock()
        named = ", ".join(sorted(kinds))
        if self._started is None:
            self._started = self._last_line = now
            log.warning(
                "%d output record(s) not written (%s); retry %d in %.1fs. The upload waits: "
                "its offset is committed only once every output is written. Further failures "
                "are summarised every %.0f s",
                records,
                named,
                attempt,
                delay,
                self._summary_seconds,
            )
            return
        self._records += records
        self._retries += 1
        self._kinds.update(kinds)
        if now - self._last_line >= self._summary_seconds:
            log.warning(
                "outputs still not written after %.0f s: %d record send(s) failed in %d "
                "retried write(s) in the last %.0f s (%s); still retrying, uploads wait",
                now - self._started,
                self._records,
                self._retries,
                now - self._last_line,
                ", ".join(sorted(self._kinds)),
            )
            self._last_line = now
            self._records = self._retries = 0
            self._kinds.clear()

    def written_after_failing(self) -> None:
        """A write that had failed is written: the incident, if one is open, ends."""
        if self._started is None:
            return
        log.info(
            "outputs written again after %.0f s of failed writes (%d more record send(s) "
            "failed since the last line)",
            self._clock() - self._started,
            self._records,
        )
        self._started = None
        self._records = self._retries = 0
        self._kinds.clear()


class OutputWriter:
    """Writes output records durably: waits for every acknowledgement, retries what the broker
    did not take, replaces what it refused for good. Raises only CancelledError."""

    def __init__(
        self,
        send: SendFn,
        metrics: PipelineMetrics,
        *,
        worker_id: str,
        backoff_max_seconds: float = 10.0,
        backoff_base_seconds: float = 0.1,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_acknowledged: Callable[[], None] | None = None,
        storage: StorageCheck | None = None,
        retry_log: RetryLog | None = None,
    ) -> None:
        self._send = send
        self._retry_log = RetryLog() if retry_log is None else retry_log
        #: Asked after the acknowledgements, before a record counts as written (None: trust
        #: acknowledgements, for tests of other parts).
        self._storage = storage
        #: Called whenever the broker acknowledged at least one record (broker connectivity).
        self._on_acknowledged = on_acknowledged
        self._metrics = metrics
        self._worker_id = worker_id
        self._backoff = (backoff_base_seconds, backoff_max_seconds)
        self._sleep = sleep

    async def write(self, records: Sequence[OutputRecord]) -> None:
        """Return once every record (or its replacement) is written or given up on."""
        pending = list(records)
        attempt = 0
        while pending:
            epoch = 0 if self._storage is None else self._storage.epoch
            acknowledged, failures = await self._send_all(pending)
            failures += await self._unconfirmed(acknowledged, epoch)
            self._count_emit_failed_letters(pending, failures)
            pending = []
            transient: list[BaseException] = []
            for record, exc in failures:
                if refused_for_good(exc):
                    pending += self._replacements(record, exc)
                else:
                    transient.append(exc)
                    pending.append(record)
                    self._metrics.output_failure(record.output, "retried")
            if transient:
                delay = backoff_seconds(attempt, *self._backoff)
                attempt += 1
                self._retry_log.failed(
                    len(transient), {type(e).__name__ for e in transient}, attempt, delay
                )
                await self._sleep(delay)
        if attempt:
            self._retry_log.written_after_failing()

    async def write_dead_letter(self, letter: DeadLetter) -> None:
        """Write one dead letter from a service beside the agent (alert delivery), counted once
        written (as a verdict is: nothing counted that a reader cannot find)."""
        key = (letter.upload_id or "").encode() or None
        record = OutputRecord(
            "dead_letters",
            key,
            encoded(letter),
            letter.upload_id,
            letter.source,
            encoded(slim_dead_letter(letter)),
        )
        await self.write([record])
        self._metrics.dead_letter(letter.stage, letter.reason)

    def _count_emit_failed_letters(
        self,
        sent: Sequence[OutputRecord],
        failures: Sequence[tuple[OutputRecord, BaseException]],
    ) -> None:
        """Count the ``emit_failed`` dead letters written (stored, not just sent) this round."""
        failed = {id(record) for record, _ in failures}
        for record in sent:
            if record.emit_failed_letter and id(record) not in failed:
                self._metrics.dead_letter(Stage.EMIT, EmitReason.EMIT_FAILED)

    async def _unconfirmed(
        self, acknowledged: list[OutputRecord], epoch: int
    ) -> list[tuple[OutputRecord, BaseException]]:
        """The acknowledged records whose storage could not be confirmed (all or none): a
        broker may acknowledge a record for a topic that no longer exists without storing it,
        so an acknowledgement counts only once the topics are known to be the same ones."""
        if not acknowledged or self._storage is None:
            return []
        try:
            await self._storage.confirm(epoch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            unconfirmed = StorageNotConfirmed(type(exc).__name__)
            unconfirmed.__cause__ = exc
            return [(record, unconfirmed) for record in acknowledged]
        return []

    async def _send_all(
        self, records: Sequence[OutputRecord]
    ) -> tuple[list[OutputRecord], list[tuple[OutputRecord, BaseException]]]:
        """Send every record, then wait for every acknowledgement; returns the records
        acknowledged and the failures."""
        failures: list[tuple[OutputRecord, BaseException]] = []
        scheduled: list[tuple[OutputRecord, Awaitable[Any]]] = []
        for record in records:
            try:
                delivery = await self._send(record.output, record.key, record.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused before it left (too large for the producer)
                failures.append((record, exc))
            else:
                scheduled.append((record, delivery))
        results = await asyncio.gather(*(f for _, f in scheduled), return_exceptions=True)
        failed = [
            (record, result)
            for (record, _), result in zip(scheduled, results, strict=True)
            if isinstance(result, BaseException)  # incl. a delivery future cancelled by the client
        ]
        if self._on_acknowledged is not None and len(failed) < len(scheduled):
            self._on_acknowledged()
        acknowledged = [
            record
            for (record, _), result in zip(scheduled, results, strict=True)
            if not isinstance(result, BaseException)
        ]
        return acknowledged, failures + failed

    def _replacements(self, record: OutputRecord, exc: BaseException) -> list[OutputRecord]:
        """What to write instead of a record refused for good: its slim copy and a dead letter
        saying so; nothing (but a log line) if this already was the last resort."""
        error = type(exc).__name__
        if record.slim is None:
            self._metrics.output_failure(record.output, "dropped")
            log.error(
                "%s record of upload %s refused by the broker (%s) and dropped",
                record.output,
                record.upload_id,
                error,
            )
            return []
        self._metrics.output_failure(record.output, "replaced")
        log.error(
            "%s record of upload %s (%d bytes) refused by the broker (%s); writing a slim copy",
            record.output,
            record.upload_id,
            len(record.value),
            error,
        )
        letter = DeadLetter(
            upload_id=record.upload_id,
            stage=Stage.EMIT,
            reason=EmitReason.EMIT_FAILED,
            message=f"{record.output} record ({len(record.value)} bytes) refused by the broker "
            f"({error}); a slim copy was written instead",
            source=record.source,
            failed_at=datetime.now(UTC),
            worker_id=self._worker_id,
        )
        return [
            replace(record, value=record.slim, slim=None),
            OutputRecord("dead_letters", record.key, encoded(letter), record.upload_id,
                         record.source, emit_failed_letter=True),
        ]  # fmt: skip
