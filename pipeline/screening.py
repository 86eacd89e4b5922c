"""Screening one upload event end to end: parse, fetch, hash, match, decide.

Owns the per-event orchestration and its error policy. :meth:`Screener.screen` never raises:
every failure becomes an ``error`` verdict (plus the configured fail-closed action) and a dead
letter naming the stage and a bounded reason, so the agent around it only has to emit what it
returns. Retryable fetch failures are retried with backoff first; hashing follows the pool's
retry policy, the CLI's too (:meth:`~pipeline.hashpool.HashPool.hash`: a job whose process died
runs once more, alone; a timeout is not retried). The records produced carry hashes and
references, never image bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from pipeline.adapters.fetch import Fetcher, redact
from pipeline.backoff import backoff_seconds
from pipeline.config import Settings
from pipeline.core.decision import decide
from pipeline.core.guard import GuardLimits, ImageRejected
from pipeline.core.matching import Matcher
from pipeline.core.types import Algorithm
from pipeline.errors import ErrorReason, PipelineError
from pipeline.event_references import (
    PLAIN_NAME,
    body_upload_id,
    invalid_event_reference,
    key_upload_id,
    reference_only,
    validation_summary,
)
from pipeline.fetch_policy import FetchFailed, FetchReason, FetchRefused
from pipeline.hashpool import HashPool
from pipeline.hashprocess import HashJobResult
from pipeline.json_keys import load_json_noting_repeats, repeated_key
from pipeline.metrics import PipelineMetrics
from pipeline.models import (
    AlertRecord,
    AnyContent,
    BinaryUploadHeaders,
    BlockRecord,
    DeadLetter,
    ParseReason,
    PathContent,
    S3Content,
    SourceRef,
    Stage,
    UploadEvent,
    UrlContent,
    Verdict,
)
from pipeline.quarantines import WorkerQuarantine
from pipeline.upload_forms import (
    Headers,
    binary_event,
    header_pairs,
    invalid_headers_reference,
    is_binary,
    misdirected_binary,
    parse_binary_headers,
)
from pipeline.verdicts import (
    alert_records,
    block_record,
    error_verdict,
    hashing_failure_stage,
    image_facts,
    screened_verdict,
    upload_matches,
    verdict_algorithms,
)

log = logging.getLogger(__name__)

#: Longest wait between fetch attempts, however many PIPELINE_FETCH_ATTEMPTS allows.
MAX_FETCH_BACKOFF_SECONDS = 30.0


@dataclass(frozen=True)
class ScreeningOutcome:
    """Everything one upload produces; ``verdict`` is always there."""

    verdict: Verdict
    block: BlockRecord | None = None
    alerts: list[AlertRecord] = field(default_factory=list)
    dead_letter: DeadLetter | None = None
    received_at: datetime | None = None


@dataclass
class _Progress:
    """How far screening one event got: what an unexpected error is reported against."""

    stage: Stage = Stage.PARSE
    event: UploadEvent | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def refuse_unusable_path(content: AnyContent) -> None:
    """Raise :class:`FetchRefused` (reason ``bad_path``) for a path no file can have. Pure.

    A NUL byte ends the C string the OS is given, so opening such a path fails with a bare
    ValueError rather than a refusal; it is refused here, before any fetch, instead.
    """
    if isinstance(content, PathContent) and "\x00" in content.path:
        raise FetchRefused("path contains a NUL byte", reason=FetchReason.BAD_PATH)


def parse_event(value: bytes | None) -> UploadEvent | str:
    """The upload event in ``value``, or why it is not one (a bounded, value-free problem)."""
    try:
        event = UploadEvent.model_validate_json(value or b"")
    except ValidationError as exc:
        return validation_summary(exc)
    repeated = repeated_key(value or b"")
    if repeated is not None:
        name = repeated if PLAIN_NAME.match(repeated) else "<key>"
        return f"key {name} occurs twice in one object (which value counts is ambiguous)"
    return event


class Screener:
    """Screens upload events with a matcher, a fetcher and a hashing pool."""

    def __init__(
        self,
        settings: Settings,
        *,
        matcher: Matcher,
        fetcher: Fetcher,
        pool: HashPool,
        metrics: PipelineMetrics,
        limits: GuardLimits,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        quarantine: WorkerQuarantine | None = None,
    ) -> None:
        self._settings = settings
        self._vpdq_rule = settings.vpdq_rule()
        self._matcher = matcher
        self._fetcher = fetcher
        self._pool = pool
        self._metrics = metrics
        self._limits = limits
        self._sleep = sleep
        self._quarantine = quarantine

    async def close(self) -> None:
        """Release the fetcher's connection pool."""
        await self._fetcher.close()

    async def screen(
        self,
        value: bytes | None,
        key: bytes | None,
        source: SourceRef,
        headers: Headers = None,
    ) -> ScreeningOutcome:
        """Screen one raw record from the ``uploads`` topic, a JSON event or, by its
        ``headers``, the binary inline form (:mod:`pipeline.upload_forms`). Never raises."""
        self._metrics.events_received.inc()
        self._metrics.in_flight.inc()
        progress = _Progress()
        try:
            return await self._screen(value, key, source, header_pairs(headers), progress)
        except Exception as exc:
            log.exception(
                "unexpected error screening %s[%d]@%d at stage %s",
                source.topic,
                source.partition,
                source.offset,
                progress.stage,
            )
            event = progress.event
            return self._failure(
                event.upload_id if event is not None else key_upload_id(key, source),
                progress.stage,
                # A bug, reported against the stage that was running, so it is never mistaken
                # for a failure of that stage's input or of the outputs.
                ErrorReason.INTERNAL_ERROR,
                f"internal error: {type(exc).__name__}",
                source=source,
                attempts=1,
                event=event,
                stage_seconds={},
            )
        finally:
            self._metrics.in_flight.dec()

    async def _screen(
        self,
        value: bytes | None,
        key: bytes | None,
        source: SourceRef,
        headers: list[tuple[str, bytes | None]],
        progress: _Progress,
    ) -> ScreeningOutcome:
        binary = is_binary(headers)
        if binary:
            parsed = parse_binary_headers(headers)
            event = binary_event(parsed) if isinstance(parsed, BinaryUploadHeaders) else parsed
            if isinstance(event, str):
                return self._invalid_headers(key, headers, source, event)
        else:
            event = parse_event(value)
            if isinstance(event, str):
                misdirected = misdirected_binary(headers)
                if misdirected is not None:  # never parse the file as JSON's leftovers
                    return self._invalid_headers(key, headers, source, misdirected)
                return self._invalid(key, value, source, event)
        progress.event, progress.stage = event, Stage.FETCH
        timings: dict[Stage, float] = {}

        started = time.perf_counter()
        try:
            if binary:  # the record's value is the file: nothing to fetch, only the cap
                data, attempts = self._binary_content(value), 1
            else:
                refuse_unusable_path(event.content)
                data, attempts = await self._fetch(event)
        except PipelineError as exc:
            timings[Stage.FETCH] = time.perf_counter() - started
            attempts = exc.attempts
            return self._failure(
                event.upload_id,
                Stage.FETCH,
                exc.reason,
                str(exc),
                source=source,
                attempts=attempts,
                event=event,
                stage_seconds=timings,
            )
        timings[Stage.FETCH] = time.perf_counter() - started
        self._metrics.fetch_bytes.observe(len(data))

        progress.stage = Stage.HASH  # guard and decode run inside the hashing job
        try:
            result = await self._hash(data)
        except PipelineError as exc:
            if isinstance(exc, ImageRejected):
                self._metrics.guard_rejected(exc.reason)
            return self._failure(
                event.upload_id,
                hashing_failure_stage(exc),
                exc.reason,
                str(exc),
                source=source,
                attempts=exc.attempts,
                event=event,
                stage_seconds=timings,
            )
        finally:
            del data  # content lives no longer than the hash step
        timings[Stage.DECODE] = result.decode_seconds
        timings[Stage.HASH] = result.hash_seconds
        if result.media == "video":
            self._metrics.video_screened(result.duration_seconds)

        progress.stage = Stage.MATCH  # matching, deciding and building the records
        return self._decide(event, result, timings)

    def _decide(
        self, event: UploadEvent, result: HashJobResult, timings: dict[Stage, float]
    ) -> ScreeningOutcome:
        """Match the hashes, decide, and build the verdict and what follows from it."""
        started = time.perf_counter()
        matches = upload_matches(self._matcher, result, self._vpdq_rule)
        if self._quarantine is None:
            decision = decide(matches)
        else:  # flood quarantine: this upload counts, quarantined entries ask for review
            quarantined = self._quarantine.screened(matches, result.content_digest)
            decision = decide(matches, quarantined=quarantined)
            self._quarantine.decided(decision)
        timings[Stage.MATCH] = time.perf_counter() - started
        for match in (*decision.matches, *decision.allowed_by):
            self._metrics.match(match.list_name, match.category.value, match.algorithm.value)
            if match.region is not None:
                self._metrics.variant_match(match.orientation, match.region.kind)
        verdict = screened_verdict(
            upload_id=event.upload_id,
            hashes=result.hashes,
            image=image_facts(result),
            decision=decision,
            worker_id=self._settings.worker_id,
            decided_at=_now(),
            stage_seconds=timings,
            uploader_id=event.uploader_id,
            metadata=event.metadata,
        )
        return ScreeningOutcome(
            verdict=verdict,
            block=block_record(verdict),
            alerts=alert_records(verdict),
            received_at=event.received_at,
        )

    def _binary_content(self, value: bytes | None) -> bytes:
        """A binary upload's bytes, within the byte cap inline content has. Raises
        FetchRefused (``too_large_bytes``) over it."""
        data = value or b""
        if len(data) > self._settings.max_upload_bytes:
            raise FetchRefused(
                "binary inline content exceeds the byte cap", reason=FetchReason.TOO_LARGE_BYTES
            )
        return data

    async def _fetch(self, event: UploadEvent) -> tuple[bytes, int]:
        """The upload's bytes and the attempts it took, within one total deadline for every
        attempt and backoff (PIPELINE_FETCH_DEADLINE_SECONDS): a server that trickles bytes
        keeps resetting the read timeout, but not this. Raises PipelineError with ``attempts``.
        """
        attempts = self._settings.fetch_attempts
        attempt = 0
        deadline = asyncio.get_running_loop().time() + self._settings.fetch_deadline_seconds
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    attempt += 1
                    try:
                        return await self._fetcher.fetch(event.content), attempt
                    except PipelineError as exc:
                        exc.attempts = attempt
                        if not isinstance(exc, FetchFailed) or attempt == attempts:
                            raise
                        delay = backoff_seconds(
                            attempt - 1,
                            self._settings.fetch_backoff_seconds,
                            MAX_FETCH_BACKOFF_SECONDS,
                        )
                        if asyncio.get_running_loop().time() + delay >= deadline:
                            raise  # no time for another attempt: the real cause, not "timeout"
                        log.info(
                            "fetch %s for %s failed (%s); retry %d in %.2fs",
                            self._where(event),
                            event.upload_id,
                            exc.reason,
                            attempt,
                            delay,
                        )
                        await self._sleep(delay)
        except TimeoutError:  # the deadline passed during an attempt
            raise FetchFailed(
                f"fetch deadline of {self._settings.fetch_deadline_seconds:g}s passed "
                f"during attempt {attempt} {self._where(event)}".rstrip(),
                reason="timeout",
                attempts=attempt,
            ) from None

    @staticmethod
    def _where(event: UploadEvent) -> str:
        """What the log may say about where the content is: a redacted URL, an S3 object."""
        if isinstance(event.content, UrlContent):
            return redact(event.content.url)
        if isinstance(event.content, S3Content):
            return event.content.uri
        return ""

    def algorithms(self) -> tuple[Algorithm, ...]:
        """Perceptual hashes always (verdicts carry them); exact digests only when in use."""
        return verdict_algorithms(self._matcher.algorithms_in_use())

    async def _hash(self, data: bytes) -> HashJobResult:
        """Hash in the pool with its retry policy (:meth:`HashPool.hash`); the attempts made
        are the raised error's ``attempts``."""
        self._metrics.pool_queue.inc()
        try:
            return await self._pool.hash(data, self._limits, self.algorithms())
        finally:
            self._metrics.pool_queue.dec()

    def _invalid(
        self, key: bytes | None, value: bytes | None, source: SourceRef, problem: str
    ) -> ScreeningOutcome:
        """The outcome of an event refused at parse: ``problem`` says why, unless it is not
        JSON at all. Keyed by the id its body names, else by its record key."""
        raw: Any = None
        try:
            raw = load_json_noting_repeats(value or b"")
        except RecursionError:
            # Deeper than Python's parser goes, so pydantic's lower nesting limit is what
            # refused it (a syntax error before that depth would have stopped both parsers).
            reason = ParseReason.INVALID_EVENT
            message = f"JSON nested too deeply to parse ({len(value or b'')} bytes)"
        except ValueError:
            reason, message = ParseReason.INVALID_JSON, f"not JSON ({len(value or b'')} bytes)"
        else:
            reason, message = ParseReason.INVALID_EVENT, problem
        upload_id = body_upload_id(raw) if isinstance(raw, dict) else None
        event = invalid_event_reference(raw) if isinstance(raw, dict) else None
        return self._failure(
            upload_id or key_upload_id(key, source),
            Stage.PARSE,
            reason,
            message,
            source=source,
            attempts=1,
            event=None,
            stage_seconds={},
            original=event,
        )

    def _invalid_headers(
        self,
        key: bytes | None,
        headers: list[tuple[str, bytes | None]],
        source: SourceRef,
        problem: str,
    ) -> ScreeningOutcome:
        """The outcome of a binary upload refused for its headers (the value, the file, is
        never looked at): keyed by its ``upload-id`` header when usable, else its record key."""
        raw = invalid_headers_reference(headers)
        return self._failure(
            body_upload_id(raw) or key_upload_id(key, source),
            Stage.PARSE,
            ParseReason.INVALID_HEADERS,
            f"binary upload: {problem}",
            source=source,
            attempts=1,
            event=None,
            stage_seconds={},
            original=invalid_event_reference(raw),
        )

    def _failure(
        self,
        upload_id: str,
        stage: Stage,
        reason: str,
        message: str,
        *,
        source: SourceRef,
        attempts: int,
        event: UploadEvent | None,
        stage_seconds: dict[Stage, float],
        original: dict[str, Any] | None = None,
    ) -> ScreeningOutcome:
        now = _now()
        if event is not None:
            original = reference_only(event.model_dump(mode="json"))
        verdict = error_verdict(
            upload_id=upload_id,
            stage=stage,
            reason=reason,
            message=message,
            on_error=self._settings.on_error,
            worker_id=self._settings.worker_id,
            decided_at=now,
            stage_seconds=stage_seconds,
            uploader_id=event.uploader_id if event else None,
            metadata=event.metadata if event else None,
        )
        dead_letter = DeadLetter(
            upload_id=upload_id,
            stage=stage,
            reason=reason,
            message=message[:1000],
            attempts=max(1, attempts),
            source=source,
            original_event=original,
            failed_at=now,
            worker_id=self._settings.worker_id,
        )
        log.warning("upload %s not screened: %s/%s: %s", upload_id, stage, reason, message[:200])
        return ScreeningOutcome(
            verdict=verdict,
            block=block_record(verdict),
            dead_letter=dead_letter,
            received_at=event.received_at if event else None,
        )
