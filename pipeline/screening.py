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
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from pipeline.adapters.fetch import Fetcher, redact
from pipeline.adapters.fetch_policy import FetchFailed, FetchReason, FetchRefused
from pipeline.backoff import backoff_seconds
from pipeline.config import Settings
from pipeline.core.decision import decide
from pipeline.core.guard import GuardLimits, ImageRejected
from pipeline.core.matching import Matcher
from pipeline.core.types import Algorithm
from pipeline.errors import ErrorReason, PipelineError
from pipeline.hashpool import HashJobResult, HashPool
from pipeline.metrics import PipelineMetrics
from pipeline.models import (
    MAX_UPLOAD_ID_CHARS,
    AlertRecord,
    BlockRecord,
    DeadLetter,
    ImageFacts,
    InlineContent,
    JsonObject,
    ParseReason,
    PathContent,
    SourceRef,
    Stage,
    UploadEvent,
    UrlContent,
    Verdict,
    load_json_noting_repeats,
    metadata_problem,
    repeated_key,
    stand_in_upload_id,
)
from pipeline.verdicts import (
    alert_records,
    block_record,
    error_verdict,
    hashing_failure_stage,
    screened_verdict,
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


def refuse_unusable_path(content: InlineContent | UrlContent | PathContent) -> None:
    """Raise :class:`FetchRefused` (reason ``bad_path``) for a path no file can have. Pure.

    A NUL byte ends the C string the OS is given, so opening such a path fails with a bare
    ValueError rather than a refusal; it is refused here, before any fetch, instead.
    """
    if isinstance(content, PathContent) and "\x00" in content.path:
        raise FetchRefused("path contains a NUL byte", reason=FetchReason.BAD_PATH)


#: Known content kinds (anything else is recorded as None: an unknown "kind" may be content).
_CONTENT_KINDS = frozenset({"inline", "url", "path"})
#: Text fields an invalid event's dead letter keeps, with the schema's length caps.
_KEPT_TEXT_FIELDS = {
    "upload_id": MAX_UPLOAD_ID_CHARS,
    "content_type": 255,
    "uploader_id": 256,
    "received_at": 64,
}
#: Field names recorded as they are; any other name (a key could itself be base64) is only
#: counted, never written.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_OMITTED_FIELD_NAMES = 32
MAX_PATH_CHARS = 4096


def _is_text(value: object, max_chars: int | None = None) -> bool:
    """Whether ``value`` is a string a record can carry as it is: at most ``max_chars`` long
    (a longer one is named, never cut) and valid Unicode (``json.loads`` lets a lone surrogate
    through; serialising it would fail only when the record is emitted)."""
    if not isinstance(value, str) or (max_chars is not None and len(value) > max_chars):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _repeated(raw: dict[str, Any]) -> frozenset[str]:
    """Keys given more than once in ``raw``: ambiguous, so named and never used."""
    return raw.repeated if isinstance(raw, JsonObject) else frozenset()


def _with_omitted(kept: dict[str, Any], omitted: list[str]) -> dict[str, Any]:
    """``kept`` plus the names (plain ones only, capped) and the count of left-out fields."""
    if omitted:
        names = sorted(k for k in omitted if _PLAIN_NAME.match(k))
        kept["omitted_fields"] = names[:MAX_OMITTED_FIELD_NAMES]
        kept["omitted_field_count"] = len(omitted)
    return kept


def _content_reference(content: dict[str, Any]) -> dict[str, Any]:
    """A content object reduced to its kind and the one reference that kind carries: the URL
    (redacted) of a ``url``, the path of a ``path``. Inline data is content and is dropped; any
    other field (a ``path`` on inline content, say) is named, never copied: it is not a
    reference of this kind, so nothing says it is not content."""
    repeated = _repeated(content)
    kind = content.get("kind")
    kind = kind if kind in _CONTENT_KINDS and "kind" not in repeated else None
    kept: dict[str, Any] = {"kind": kind}
    omitted: list[str] = []
    for key, value in content.items():
        if key in repeated:
            omitted.append(key)
        elif key == "kind" or (key == "data_base64" and kind == "inline"):
            continue
        elif key == "url" and kind == "url" and _is_text(value):
            kept["url"] = redact(value)
        elif key == "path" and kind == "path" and _is_text(value, MAX_PATH_CHARS):
            kept["path"] = value
        else:
            omitted.append(key)
    return _with_omitted(kept, omitted)


def _reference_only(event: dict[str, Any]) -> dict[str, Any]:
    """A validated event without content: inline data dropped, URLs without query strings.

    Validation already bounded every field (metadata included), so only content is touched.
    """
    kept = dict(event)
    if isinstance(kept.get("content"), dict):
        kept["content"] = _content_reference(kept["content"])
    return kept


def invalid_event_reference(raw: dict[str, Any]) -> dict[str, Any]:
    """What a dead letter may keep of an event that failed validation. Pure.

    Nothing about such an event can be trusted, and content can sit in any field (a string
    ``content``, an extra ``data`` key), so this is an allowlist: known fields of the expected
    type within their length caps, the content's kind and reference, metadata only when it is
    within the caps, and for everything else (a key given twice included) only the field's
    name (if it is a plain name) and a count. Nothing is cut: a cut id names another upload.
    """
    repeated = _repeated(raw)
    kept: dict[str, Any] = {}
    omitted: list[str] = []
    for key, value in raw.items():
        if key in repeated:
            omitted.append(key)
        elif key == "content" and isinstance(value, dict):
            kept[key] = _content_reference(value)
        elif _kept_as_is(key, value):
            kept[key] = value
        else:
            omitted.append(key)
    return _with_omitted(kept, omitted)


def _kept_as_is(key: str, value: object) -> bool:
    """Whether an invalid event's top-level field is one a dead letter may copy: a known text
    field within its cap, a plausible schema version, or metadata within its caps."""
    cap = _KEPT_TEXT_FIELDS.get(key)
    if cap is not None:
        return _is_text(value, cap)
    if key == "schema_version":
        return type(value) is int and 0 <= value < 1000
    return key == "metadata" and metadata_problem(value) is None


def body_upload_id(raw: dict[str, Any]) -> str | None:
    """The id an invalid event's outputs are keyed by, from its body; None if it names none
    (no ``upload_id``, not a string, empty, or given twice: which one would count?). An id the
    records cannot carry as it is (over MAX_UPLOAD_ID_CHARS, or not valid Unicode) is replaced
    by its :func:`stand_in_upload_id`, never cut. Pure."""
    upload_id = raw.get("upload_id")
    if not isinstance(upload_id, str) or not upload_id or "upload_id" in _repeated(raw):
        return None
    if _is_text(upload_id, MAX_UPLOAD_ID_CHARS):
        return upload_id
    return stand_in_upload_id(upload_id.encode("utf-8", "surrogatepass"))


def key_upload_id(key: bytes | None, source: SourceRef) -> str:
    """The id an upload's outputs are keyed by when its body names none: the record's key
    (or its stand-in when longer than MAX_UPLOAD_ID_CHARS or not UTF-8, never cut), else its
    place in the topic. Pure."""
    if not key:
        return f"{source.topic}-{source.partition}-{source.offset}"
    try:
        text = key.decode()
    except UnicodeDecodeError:
        return stand_in_upload_id(key)
    return text if len(text) <= MAX_UPLOAD_ID_CHARS else stand_in_upload_id(key)


def validation_summary(exc: ValidationError) -> str:
    """A bounded description of why an event failed validation, free of its values.

    Pydantic messages can quote the input (an unknown discriminator tag is echoed whole) and
    locations can hold arbitrary keys, so long quoted values and odd key names are elided.
    """
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(
        str(p) if isinstance(p, int) or _PLAIN_NAME.match(p) else "<key>" for p in first["loc"]
    )
    message = first["msg"]
    for value in (first.get("ctx") or {}).values():
        if isinstance(value, str) and len(value) > 32:
            message = message.replace(value, "<...>")
    return f"{exc.error_count()} problem(s); first: {where or '<event>'}: {message[:200]}"


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
    ) -> None:
        self._settings = settings
        self._matcher = matcher
        self._fetcher = fetcher
        self._pool = pool
        self._metrics = metrics
        self._limits = limits
        self._sleep = sleep

    async def close(self) -> None:
        """Release the fetcher's connection pool."""
        await self._fetcher.close()

    async def screen(
        self, value: bytes | None, key: bytes | None, source: SourceRef
    ) -> ScreeningOutcome:
        """Screen one raw event from the ``uploads`` topic. Never raises."""
        self._metrics.events_received.inc()
        self._metrics.in_flight.inc()
        progress = _Progress()
        try:
            return await self._screen(value, key, source, progress)
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
        self, value: bytes | None, key: bytes | None, source: SourceRef, progress: _Progress
    ) -> ScreeningOutcome:
        try:
            event = UploadEvent.model_validate_json(value or b"")
        except ValidationError as exc:
            return self._invalid(key, value, source, validation_summary(exc))
        repeated = repeated_key(value or b"")
        if repeated is not None:
            name = repeated if _PLAIN_NAME.match(repeated) else "<key>"
            problem = f"key {name} occurs twice in one object (which value counts is ambiguous)"
            return self._invalid(key, value, source, problem)
        progress.event, progress.stage = event, Stage.FETCH
        timings: dict[Stage, float] = {}
        received_at = event.received_at

        started = time.perf_counter()
        try:
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

        progress.stage = Stage.MATCH  # matching, deciding and building the records
        started = time.perf_counter()
        decision = decide(self._matcher.match(result.hashes))
        timings[Stage.MATCH] = time.perf_counter() - started
        for match in (*decision.matches, *decision.allowed_by):
            self._metrics.match(match.list_name, match.category.value, match.algorithm.value)
        verdict = screened_verdict(
            upload_id=event.upload_id,
            hashes=result.hashes,
            image=ImageFacts(format=result.format, width=result.width, height=result.height),
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
            received_at=received_at,
        )

    async def _fetch(self, event: UploadEvent) -> tuple[bytes, int]:
        """The upload's bytes and the attempts it took, within one total deadline for every
        attempt and backoff (PIPELINE_FETCH_DEADLINE_SECONDS): a server that trickles bytes
        keeps resetting the read timeout, but not this. Raises PipelineError with ``attempts``.
        """
        attempts = self._settings.fetch_attempts
        attempt = 0
        try:
            async with asyncio.timeout(self._settings.fetch_deadline_seconds):
                while True:
                    attempt += 1
                    try:
                        return await self._fetcher.fetch(event.content), attempt
                    except FetchFailed as exc:
                        if attempt == attempts:
                            exc.attempts = attempt
                            raise
                        delay = backoff_seconds(
                            attempt - 1,
                            self._settings.fetch_backoff_seconds,
                            MAX_FETCH_BACKOFF_SECONDS,
                        )
                        log.info(
                            "fetch %s for %s failed (%s); retry %d in %.2fs",
                            self._where(event),
                            event.upload_id,
                            exc.reason,
                            attempt,
                            delay,
                        )
                        await self._sleep(delay)
        except TimeoutError:
            raise FetchFailed(
                f"fetch deadline of {self._settings.fetch_deadline_seconds:g}s passed "
                f"during attempt {attempt} {self._where(event)}".rstrip(),
                reason="timeout",
                attempts=attempt,
            ) from None

    @staticmethod
    def _where(event: UploadEvent) -> str:
        return redact(event.content.url) if isinstance(event.content, UrlContent) else ""

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
            original = _reference_only(event.model_dump(mode="json"))
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
