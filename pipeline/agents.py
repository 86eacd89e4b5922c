"""The screening agent: uploads from the stream, screened concurrently, outputs written, offsets
acknowledged in order.

Owns the flow control between the stream and the screener. Each upload is admitted into a
bounded window and screened on its own task; its outputs are written as soon as it is done, so
one slow URL never holds back the verdicts of the uploads around it (no batch barrier). An upload
is acknowledged to Faust only once its outputs are written *and* every older upload of its
partition is acknowledged (see :mod:`pipeline.inflight`), so a committed offset never passes an
unfinished upload: at-least-once across crashes and rebalances. Two bounds keep memory and
concurrency finite: ``max_in_flight`` uploads screened at once, and ``max_uncommitted`` uploads
taken but not yet acknowledged (when a slow upload holds its partition's commits back, the agent
stops taking more once that many have piled up behind it). An upload waiting for its
acknowledgement no longer holds its content: ``forget_content`` drops it once the outputs are
written, so what the window costs beyond the uploads being screened is bookkeeping. When the
uploads topic is re-created, :meth:`ScreeningAgent.forget_taken` makes every upload taken so far
unacknowledgeable (its offset is the old topic's; see :mod:`pipeline.uploads_reset`).

:meth:`ScreeningAgent.run` takes any async iterable of events and an ``ack`` callable, so tests
drive it without Faust; :meth:`ScreeningAgent.screen_event` screens and writes one upload.
Nothing escapes either (Faust would drop the upload with its outputs); the loop waits for the
hash lists to be loaded before screening anything, so an upload is never allowed because the
lists were still loading.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any, Protocol

from pipeline.backoff import backoff_seconds
from pipeline.health import WorkerHealth
from pipeline.inflight import InFlight, Ticket
from pipeline.metrics import PipelineMetrics, consumer_lag
from pipeline.models import SourceRef, Stage
from pipeline.outputs import OutputWriter, output_records
from pipeline.screening import Screener, ScreeningOutcome
from pipeline.upload_forms import Headers

log = logging.getLogger(__name__)


class MessageLike(Protocol):
    """Where an event was read from (Faust's ``Message`` has these)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def headers(self) -> Any: ...


class EventLike(Protocol):
    """What the agent reads of a stream event (Faust's ``Event`` has these)."""

    @property
    def key(self) -> Any: ...
    @property
    def value(self) -> Any: ...
    @property
    def message(self) -> MessageLike: ...


AckFn = Callable[[Any], Awaitable[object]]


async def report_upload_lag(consumer: Any, topic: str, metrics: PipelineMetrics) -> None:
    """Set ``screening_consumer_lag_messages`` for the partitions of ``topic`` that
    ``consumer`` (Faust's) owns now, from its public high watermark and position."""
    lags: dict[tuple[str, int], int] = {}
    owned = [tp for tp in consumer.assignment() if tp.topic == topic]
    for tp in owned:
        # The client runs in Faust's consumer thread: a rebalance can revoke ``tp`` between
        # these calls (aiokafka asserts ownership), and a timer that raises crashes the worker.
        try:  # position() waits while the client resets an unknown offset: bound it
            position = await asyncio.wait_for(consumer.position(tp), 2.0)
            lag = consumer_lag(consumer.highwater(tp), position)
        except Exception as exc:  # revoked or not fetched yet: no new figure, not a wrong one
            log.debug("no lag figure for %s[%d] (%s)", tp.topic, tp.partition, type(exc).__name__)
            continue
        if lag is not None:
            lags[(tp.topic, tp.partition)] = lag
    metrics.set_consumer_lag(lags, owned=[(tp.topic, tp.partition) for tp in owned])


class ScreeningAgent:
    """Screens a stream of upload events; one instance per worker."""

    def __init__(
        self,
        *,
        screener: Screener,
        writer: OutputWriter,
        metrics: PipelineMetrics,
        health: WorkerHealth,
        max_in_flight: int,
        max_uncommitted: int,
        retry_backoff_max_seconds: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        forget_content: Callable[[Any], None] | None = None,
        release_unacknowledged: Callable[[Any], None] | None = None,
    ) -> None:
        if max_in_flight < 1 or max_uncommitted < max_in_flight:
            raise ValueError("need 1 <= max_in_flight <= max_uncommitted")
        self._screener = screener
        self._writer = writer
        self._metrics = metrics
        self._health = health
        self._max_in_flight = max_in_flight
        self._max_uncommitted = max_uncommitted
        self._retry_backoff_max = retry_backoff_max_seconds
        self._sleep = sleep
        self._forget_content = forget_content
        #: Called instead of ``ack`` for an upload taken before :meth:`forget_taken`, once it is
        #: done (Faust must stop waiting for it without committing its offset).
        self._release_unacknowledged = release_unacknowledged
        #: Uploads taken from the stream so far, and those of them not yet screened (waiting
        #: for a slot or being screened); the worker's idle memory trim watches both.
        self.taken = 0
        self.in_flight = 0
        #: Advances when the uploads topic is found re-created (:meth:`forget_taken`).
        self._incarnation = 0
        #: Uploads taken before the last :meth:`forget_taken` and never acknowledged.
        self.unacknowledged_old = 0

    def forget_taken(self) -> None:
        """Never acknowledge an upload taken so far: the uploads topic was deleted or re-created,
        so their offsets belong to the old topic, and committed on the new one they would skip
        its records below them. They are still screened and their outputs written (the agent's
        outputs are keyed, a repeat overwrites); the worker reads the new topic from its start."""
        self._incarnation += 1

    async def screen_event(
        self,
        value: bytes | None,
        key: bytes | None,
        source: SourceRef,
        headers: Headers = None,
    ) -> None:
        """Screen one raw upload record (a JSON event, or by its ``headers`` the binary inline
        form) and write every output it produces.

        Returns once the outputs are written (the writer waits out broker trouble for as long as
        it takes). Raises only what the writer or the screener do not handle (not expected).
        """
        outcome = await self._screener.screen(value, key, source, headers)
        started = time.perf_counter()
        await self._writer.write(output_records(outcome, source))
        emitted_at = time.time()
        try:
            self._record(outcome, time.perf_counter() - started, emitted_at)
        except Exception:  # metrics must never cost outputs or block the stream
            log.exception("recording metrics for upload %s failed", outcome.verdict.upload_id)

    async def run(self, events: AsyncIterable[Any], ack: AckFn) -> None:
        """Screen every event of ``events`` until it ends or the task is cancelled.

        ``ack(event)`` is awaited for each event once it may be committed, in delivery order
        per partition. Uploads still being screened when the loop is cancelled are not
        acknowledged: they are screened again after the restart (outputs are keyed, so a repeat
        overwrites).
        """
        while not self._health.lists_caught_up:  # never screen against half-loaded lists
            await self._sleep(0.1)
        self._health.screening_started = True
        log.info(
            "screening uploads: up to %d at once, %d taken ahead of the oldest unfinished",
            self._max_in_flight,
            self._max_uncommitted,
        )
        screening = asyncio.Semaphore(self._max_in_flight)
        uncommitted = asyncio.Semaphore(self._max_uncommitted)
        #: (event, incarnation it was taken in), per partition in delivery order.
        window: InFlight[tuple[Any, int]] = InFlight()
        tasks: set[asyncio.Task[None]] = set()

        async def screen_then_ack(event: EventLike, ticket: Ticket[tuple[Any, int]]) -> None:
            try:
                await self._screen_until_written(event)
            finally:
                screening.release()
                self.in_flight -= 1
            if self._forget_content is not None:
                # It may wait for an older upload of its partition: without its content.
                self._forget_content(event)
            for ready, taken_in in window.finish(ticket):
                try:
                    if taken_in == self._incarnation:
                        await ack(ready)
                    else:  # its offset is one of a topic that is gone (forget_taken)
                        self.unacknowledged_old += 1
                        if self._release_unacknowledged is not None:
                            self._release_unacknowledged(ready)
                except Exception:  # not expected; the upload is then screened again later
                    log.exception("acknowledging an upload failed")
                finally:
                    uncommitted.release()

        try:
            async for event in events:
                incarnation = self._incarnation  # before waiting for room: taken now
                self.taken += 1
                self.in_flight += 1
                try:
                    await uncommitted.acquire()
                    await screening.acquire()
                except BaseException:  # cancelled while waiting for a slot: not in flight
                    self.in_flight -= 1
                    raise
                message = event.message
                ticket = window.admit((message.topic, message.partition), (event, incarnation))
                task = asyncio.create_task(screen_then_ack(event, ticket))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _screen_until_written(self, event: EventLike) -> None:
        """screen_event, repeated with backoff if it raises (not expected: the screener and
        the writer handle their errors). The upload is done again rather than acknowledged with
        outputs missing; outputs are keyed, so a repeat overwrites."""
        message = event.message
        source = SourceRef(topic=message.topic, partition=message.partition, offset=message.offset)
        attempt = 0
        while True:
            try:
                await self.screen_event(event.value, event.key, source, message.headers)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = backoff_seconds(attempt, 0.5, self._retry_backoff_max)
                attempt += 1
                log.exception(
                    "screening %s[%d]@%d failed; retry %d in %.1fs",
                    source.topic,
                    source.partition,
                    source.offset,
                    attempt,
                    delay,
                )
                await self._sleep(delay)

    def _record(self, outcome: ScreeningOutcome, emit_seconds: float, emitted_at: float) -> None:
        metrics = self._metrics
        verdict = outcome.verdict
        if outcome.dead_letter is not None:
            metrics.dead_letter(outcome.dead_letter.stage, outcome.dead_letter.reason)
        metrics.observe_stage(Stage.EMIT, emit_seconds)
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
