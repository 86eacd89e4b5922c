"""The Faust application: topics declared once, the screening agent, web views, services.

Owns the wiring and the output path. The screening agent takes uploads in batches, screens them
concurrently (hashing runs in a process pool, so the event loop stays free for heartbeats),
writes every output, and waits until the broker has acknowledged all of them before the batch's
offsets can be committed (Faust acks a ``take`` batch when the loop asks for the next one):
at-least-once, and every output is keyed by upload id so a replay overwrites rather than
duplicates downstream state. The agent waits for the hash lists to be loaded before screening
anything, so an upload is never allowed because the lists were still loading.

Nothing escapes the agent (Faust would drop the batch's outputs with it). :class:`OutputWriter`
retries outputs the broker did not accept with capped backoff, for as long as it takes: the
batch waits, lag grows and the lag alerts fire, which is the honest signal. A record refused
for good (too large) is replaced by a slim copy plus an ``emit_failed`` dead letter.

Services beside the agent: the hash-list feed (every worker reads every list entry) and the
alert delivery (its own consumer group, so a dead sink cannot stall screening). Each runs under
:func:`supervise`: a failure is logged, counted and restarted with capped exponential backoff,
and shows in /livez (503 once a service has been failing continuously for too long).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka import errors as kafka_errors  # what Faust produces with
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.alerting import AlertDeliveryService, AlertSink
from pipeline.backoff import backoff_seconds
from pipeline.config import Settings
from pipeline.core.matching import Matcher
from pipeline.hashlist_feed import HashListFeed
from pipeline.health import WorkerHealth
from pipeline.metrics import SERVICES, PipelineMetrics
from pipeline.models import DeadLetter, Record, SourceRef, Stage
from pipeline.screening import Screener, ScreeningOutcome
from pipeline.verdicts import slim_block, slim_dead_letter, slim_verdict

log = logging.getLogger(__name__)


class MatcherTarget:
    """Applies hash-list operations to the matcher and keeps the index metrics current."""

    def __init__(self, matcher: Matcher, metrics: PipelineMetrics) -> None:
        self._matcher = matcher
        self._metrics = metrics
        self._known_lists: set[str] = set()

    def apply(self, operations: list[Any]) -> None:
        self._matcher.apply(operations)
        lists = set(self._matcher.lists)
        for name in lists - self._known_lists:
            self._metrics.register_list(name)
        self._known_lists |= lists
        self._metrics.set_index_entries(self._matcher.entry_counts(), self._known_lists)


@dataclass(frozen=True)
class OutputRecord:
    """One record to write. ``slim`` replaces it if the broker refuses it for good."""

    output: str  # one of pipeline.metrics.OUTPUTS
    key: bytes | None
    value: bytes
    upload_id: str | None
    source: SourceRef | None
    slim: bytes | None = None


def _encoded(record: Record) -> bytes:
    return record.model_dump_json().encode()


def output_records(outcome: ScreeningOutcome, source: SourceRef | None) -> list[OutputRecord]:
    """Every record one outcome writes, each with its slim fallback where there is one."""
    verdict = outcome.verdict
    upload_id = verdict.upload_id
    key = upload_id.encode()

    def record(output: str, value: Record, slim: Record | None) -> OutputRecord:
        return OutputRecord(
            output, key, _encoded(value), upload_id, source, _encoded(slim) if slim else None
        )

    records = [record("verdicts", verdict, slim_verdict(verdict))]
    if outcome.block is not None:
        records.append(record("blocks", outcome.block, slim_block(outcome.block)))
    records += [record("alerts", alert, None) for alert in outcome.alerts]
    if outcome.dead_letter is not None:
        letter = outcome.dead_letter
        records.append(record("dead_letters", letter, slim_dead_letter(letter)))
    return records


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
    ) -> None:
        self._send = send
        self._metrics = metrics
        self._worker_id = worker_id
        self._backoff = (backoff_base_seconds, backoff_max_seconds)
        self._sleep = sleep

    async def write(self, records: Sequence[OutputRecord]) -> None:
        """Return once every record (or its replacement) is written or given up on."""
        pending = list(records)
        attempt = 0
        while pending:
            failures = await self._send_all(pending)
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
                log.warning(
                    "%d output record(s) not written (%s); retry %d in %.1fs. The batch waits: "
                    "its offsets are committed only once every output is written",
                    len(transient),
                    ", ".join(sorted({type(e).__name__ for e in transient})),
                    attempt,
                    delay,
                )
                await self._sleep(delay)

    async def _send_all(
        self, records: Sequence[OutputRecord]
    ) -> list[tuple[OutputRecord, BaseException]]:
        """Send every record, then wait for every acknowledgement; returns the failures."""
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
        failures += [
            (record, result)
            for (record, _), result in zip(scheduled, results, strict=True)
            if isinstance(result, BaseException)  # incl. a delivery future cancelled by the client
        ]
        return failures

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
        self._metrics.dead_letter(Stage.EMIT, "emit_failed")
        letter = DeadLetter(
            upload_id=record.upload_id,
            stage=Stage.EMIT,
            reason="emit_failed",
            message=f"{record.output} record ({len(record.value)} bytes) refused by the broker "
            f"({error}); a slim copy was written instead",
            source=record.source,
            failed_at=datetime.now(UTC),
            worker_id=self._worker_id,
        )
        return [
            replace(record, value=record.slim, slim=None),
            OutputRecord("dead_letters", record.key, _encoded(letter), record.upload_id,
                         record.source),
        ]  # fmt: skip


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    health: WorkerHealth,
    metrics: PipelineMetrics,
    backoff_max_seconds: float = 30.0,
    backoff_base_seconds: float = 0.5,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run a background service until it returns, restarting it whenever it raises.

    The delay before a restart doubles with each failure since the service last reported itself
    running (``health.service_running``), up to ``backoff_max_seconds``, with jitter. Each failure
    is logged with its traceback, counted in ``screening_service_restarts_total{service}`` and
    recorded in ``health`` (which /livez reports). Raises only CancelledError (worker shutdown).
    """
    health.register_service(name)
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            state = health.service_failed(name, type(exc).__name__)
            metrics.service_restarted(name)
            delay = backoff_seconds(state.failures - 1, backoff_base_seconds, backoff_max_seconds)
            log.error(
                "%s failed (%s); restart %d in %.1fs",
                name,
                type(exc).__name__,
                state.restarts,
                delay,
                exc_info=True,
            )
            await sleep(delay)


def cap_faust_fetch_wait(max_wait_ms: int) -> None:
    """Make Faust's consumer long-poll at most ``max_wait_ms`` (Faust hard-codes 1500 ms).

    Only for brokers that hold a fetch for its whole wait (see Settings.fetch_max_wait_ms);
    the worker process applies it once, before the app starts its consumer.
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    create = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "capped_ms", None) == max_wait_ms:
        return

    def create_capped(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms  # read when the consumer starts its fetcher
        return consumer

    create_capped.capped_ms = max_wait_ms  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create_capped  # type: ignore[method-assign]


def create_app(
    settings: Settings,
    *,
    bootstrap_servers: str,
    screener: Screener,
    matcher: Matcher,
    metrics: PipelineMetrics,
    health: WorkerHealth,
    sinks: list[AlertSink],
) -> faust.App:
    """Build the worker's Faust app around already-constructed collaborators."""
    if settings.fetch_max_wait_ms is not None:
        cap_faust_fetch_wait(settings.fetch_max_wait_ms)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{bootstrap_servers}",
        value_serializer="raw",
        key_serializer="raw",
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        broker_session_timeout=settings.broker_session_timeout_seconds,
        broker_heartbeat_interval=settings.heartbeat_interval_seconds,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_disable_leader=True,
        producer_acks=-1,
        producer_max_request_size=settings.producer_max_request_bytes,
    )

    def topic(name: str) -> faust.TopicT:
        return app.topic(
            name, key_type=bytes, value_type=bytes, partitions=settings.topic_partitions
        )

    uploads = topic(settings.topic_uploads)
    verdicts = topic(settings.topic_verdicts)
    blocks = topic(settings.topic_blocks)
    alerts = topic(settings.topic_alerts)
    dead_letters = topic(settings.topic_dead_letters)

    topics_by_output = {
        "verdicts": verdicts,
        "blocks": blocks,
        "alerts": alerts,
        "dead_letters": dead_letters,
    }

    async def send(output: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        # force: publish now and hand back the delivery future, never attach the record to the
        # current event (where it would be published only when that event is acked).
        return await topics_by_output[output].send(key=key, value=value, force=True)

    writer = OutputWriter(
        send,
        metrics,
        worker_id=settings.worker_id,
        backoff_max_seconds=settings.emit_backoff_max_seconds,
    )

    def record(outcome: ScreeningOutcome, emitted_at: float) -> None:
        verdict = outcome.verdict
        metrics.verdict(verdict.action)
        metrics.processed(
            "invalid"
            if verdict.error and verdict.error.stage is Stage.PARSE
            else "error"
            if verdict.error
            else "screened"
        )
        for stage, seconds in verdict.stage_seconds.items():
            metrics.observe_stage(stage, seconds)
        start = outcome.received_at.timestamp() if outcome.received_at else None
        if start is not None and emitted_at >= start:
            metrics.end_to_end_seconds.observe(emitted_at - start)

    @app.agent(uploads, name="screen-uploads")
    async def screen_uploads(stream: faust.StreamT[bytes]) -> None:
        while not health.lists_caught_up:  # never screen against half-loaded lists
            await asyncio.sleep(0.1)
        health.screening_started = True
        metrics.ready.set(1)
        log.info("screening uploads from %r", settings.topic_uploads)
        batches: Any = stream
        async for events in batches.take_events(
            settings.batch_size, within=settings.batch_timeout_seconds
        ):
            sources = [
                SourceRef(
                    topic=e.message.topic, partition=e.message.partition, offset=e.message.offset
                )
                for e in events
            ]
            attempt = 0
            while True:  # the batch's offsets are acked when we ask for the next batch
                try:
                    await screen_batch(events, sources)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # Not expected (screen() and the writer handle their errors); the batch is
                    # done again rather than acked with outputs missing. Outputs are keyed, so
                    # a repeat overwrites.
                    delay = backoff_seconds(attempt, 0.5, settings.emit_backoff_max_seconds)
                    attempt += 1
                    log.exception("screening a batch failed; retry %d in %.1fs", attempt, delay)
                    await asyncio.sleep(delay)

    async def screen_batch(events: Sequence[Any], sources: list[SourceRef]) -> None:
        outcomes = await asyncio.gather(
            *(
                screener.screen(e.value, e.key, source)
                for e, source in zip(events, sources, strict=True)
            )
        )
        started = time.perf_counter()
        # Durable before this batch's offsets are committed.
        await writer.write(
            [
                r
                for o, source in zip(outcomes, sources, strict=True)
                for r in output_records(o, source)
            ]
        )
        emitted_at = time.time()
        emit_seconds = (time.perf_counter() - started) / max(1, len(outcomes))
        try:
            for outcome in outcomes:
                if outcome.dead_letter is not None:
                    metrics.dead_letter(outcome.dead_letter.stage, outcome.dead_letter.reason)
                metrics.observe_stage(Stage.EMIT, emit_seconds)
                record(outcome, emitted_at)
        except Exception:  # metrics must never cost outputs or block the stream
            log.exception("recording metrics for a batch failed")

    feed = HashListFeed(
        bootstrap_servers=bootstrap_servers,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        topic=settings.topic_hashlists,
        target=MatcherTarget(matcher, metrics),
        health=health,
        metrics=metrics,
        on_running=lambda: health.service_running("hashlist_feed"),
    )

    async def dead_letter(letter: DeadLetter) -> None:
        metrics.dead_letter(letter.stage, letter.reason)
        key = (letter.upload_id or "").encode() or None
        slim = slim_dead_letter(letter)
        await writer.write(
            [
                OutputRecord(
                    "dead_letters",
                    key,
                    _encoded(letter),
                    letter.upload_id,
                    letter.source,
                    _encoded(slim),
                )
            ]
        )

    delivery = AlertDeliveryService(
        bootstrap_servers=bootstrap_servers,
        topic=settings.topic_alerts,
        group_id=f"{settings.app_id}-alerts",
        sinks=sinks,
        metrics=metrics,
        dead_letter=dead_letter,
        backoff_max_seconds=settings.alert_backoff_max_seconds,
        session_timeout_seconds=settings.broker_session_timeout_seconds,
        heartbeat_interval_seconds=settings.heartbeat_interval_seconds,
        worker_id=settings.worker_id,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        on_running=lambda: health.service_running("alert_delivery"),
    )
    for service in SERVICES:
        health.register_service(service)

    @app.task  # type: ignore[untyped-decorator]
    async def run_hashlist_feed() -> None:
        await supervise(
            "hashlist_feed",
            feed.run,
            health=health,
            metrics=metrics,
            backoff_max_seconds=settings.service_backoff_max_seconds,
        )

    @app.task  # type: ignore[untyped-decorator]
    async def run_alert_delivery() -> None:
        await supervise(
            "alert_delivery",
            delivery.run,
            health=health,
            metrics=metrics,
            backoff_max_seconds=settings.service_backoff_max_seconds,
        )

    @app.task  # type: ignore[untyped-decorator]
    async def close_clients_at_shutdown() -> None:
        """Waits for the worker to stop (Faust cancels its tasks), then closes HTTP pools."""
        try:
            await asyncio.Event().wait()
        finally:
            await screener.close()
            for sink in sinks:
                await sink.close()

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def report_lag() -> None:
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic != settings.topic_uploads:
                continue
            high = consumer.highwater(tp)
            # Faust keeps the last offset handed to a stream per partition (no public getter).
            read = getattr(consumer, "_read_offset", {}).get(tp)
            if high is not None:
                lag = high - (read + 1 if read is not None else 0)
                metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, lag))

    @app.page("/livez")
    class Livez(View):
        async def get(self, request: Request) -> Response:
            return self.json(health.report(), status=200 if health.live else 503)

    @app.page("/readyz")
    class Readyz(View):
        async def get(self, request: Request) -> Response:
            return self.json(health.report(), status=200 if health.ready else 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(
                generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0]
            )

    app.pipeline_services = (feed, delivery)  # type: ignore[attr-defined]
    return app
