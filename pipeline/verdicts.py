"""Building the wire records of an outcome: verdicts, blocks and alerts.

Owns the mapping from core results (hashes, matches, decision) to records, so the offline CLI
and the streaming worker emit identical verdicts (with the same hashes computed for them and
the same stage named for a failed hashing job), and keeps every record bounded in size: an
image near many list entries lists at most ``MAX_MATCHES_PER_RECORD`` matches (the decisive ones
first) and counts the rest, so no verdict can grow past what the broker accepts.
Must not do I/O.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from datetime import datetime
from typing import Any

from pipeline.core.decision import Decision
from pipeline.core.guard import ImageRejected
from pipeline.core.hashlist import ListKind
from pipeline.core.matching import Match, Matcher
from pipeline.core.types import BASELINE_PERCEPTUAL, Action, Algorithm, HashValue
from pipeline.core.videomatch import VPDQ_RULE, VpdqRule, match_video, match_vpdq_entries
from pipeline.errors import PipelineError
from pipeline.hashprocess import HashJobResult
from pipeline.models import (
    MAX_MATCHES_PER_RECORD,
    AlertRecord,
    BlockRecord,
    DeadLetter,
    ErrorInfo,
    ImageFacts,
    MatchRecord,
    RegionRecord,
    Stage,
    Verdict,
    VpdqSharesRecord,
)


def verdict_algorithms(in_use: Iterable[Algorithm]) -> tuple[Algorithm, ...]:
    """What to hash an upload with, worker and CLI alike: pHash and dHash (verdicts carry them
    whatever the lists hold), and PDQ and the exact digests when some list uses them."""
    used = set(in_use)
    return tuple(alg for alg in Algorithm if alg in BASELINE_PERCEPTUAL or alg in used)


def hashing_failure_stage(error: PipelineError) -> Stage:
    """The stage a failed hashing job is reported against: ``guard`` when the guard refused the
    image, else ``hash`` (it timed out, or its process died)."""
    return Stage.GUARD if isinstance(error, ImageRejected) else Stage.HASH


def match_record(match: Match, quarantined: bool = False) -> MatchRecord:
    """The wire form of a core match; ``quarantined``: its entry is quarantined."""
    return MatchRecord(
        list=match.list_name,
        list_version=match.list_version,
        list_kind=match.list_kind,
        list_action=match.list_action,
        entry_id=match.entry_id,
        category=match.category,
        algorithm=match.algorithm,
        distance=match.distance,
        threshold=match.threshold,
        orientation=match.orientation,
        region=None
        if match.region is None
        else RegionRecord(
            x=match.region.x,
            y=match.region.y,
            width=match.region.width,
            height=match.region.height,
            kind=match.region.kind,
        ),
        quarantined=quarantined,
        frame_seconds=[round(t, 3) for t in match.frame_seconds[:50]]
        if match.frame_seconds
        else None,
        vpdq=None
        if match.vpdq is None
        else VpdqSharesRecord(
            query_percent=match.vpdq.query_percent,
            entry_percent=match.vpdq.entry_percent,
            query_threshold=match.vpdq.query_threshold,
            entry_threshold=match.vpdq.entry_threshold,
        ),
    )


def upload_matches(
    matcher: Matcher, result: HashJobResult, vpdq: VpdqRule = VPDQ_RULE
) -> list[Match]:
    """What one hashed upload matches: an image by its hashes and views, a video by its file
    digests and each sampled frame (:func:`pipeline.core.videomatch.match_video`: every match
    names the times of the frames that matched), and its frames as a whole against the vPDQ
    entries (:func:`pipeline.core.videomatch.match_vpdq_entries`, by ``vpdq``'s shares)."""
    if result.media == "video":
        found = [found.match for found in match_video(matcher, result.hashes, result.frames)]
        return found + match_vpdq_entries(matcher.view, result.frames, vpdq)
    return matcher.match(result.hashes, result.views)


def image_facts(result: HashJobResult) -> ImageFacts:
    """What a verdict says about the decoded picture of a hashing job's result."""
    return ImageFacts(
        format=result.format,
        width=result.width,
        height=result.height,
        low_information=bool(result.views) and result.views[0].low_information,
        pdq_quality=result.views[0].pdq_quality if result.views else None,
        media="video" if result.media == "video" else "image",
        duration_seconds=round(result.duration_seconds, 3) if result.media == "video" else None,
    )


def hex_hashes(hashes: Mapping[Algorithm, int]) -> dict[Algorithm, str]:
    """Hashes as canonical hex, the form verdicts carry."""
    return {alg: HashValue(alg, value).hex for alg, value in hashes.items()}


def _bounded(
    matches: list[Match], action: Action, quarantined: Container[tuple[str, str]] = frozenset()
) -> tuple[list[MatchRecord], int]:
    """At most MAX_MATCHES_PER_RECORD records and how many were left out. Deny matches whose
    list action is the verdict's action come first (they explain it), then the rest; each
    group keeps the core's nearest-first order (the sort is stable). Matches of entries in
    ``quarantined`` say so."""
    ranked = sorted(
        matches, key=lambda m: (m.list_kind is not ListKind.DENY, m.list_action is not action)
    )
    kept = ranked[:MAX_MATCHES_PER_RECORD]
    records = [match_record(m, (m.list_name, m.entry_id) in quarantined) for m in kept]
    return records, len(ranked) - len(kept)


def screened_verdict(
    *,
    upload_id: str,
    hashes: Mapping[Algorithm, int],
    image: ImageFacts,
    decision: Decision,
    worker_id: str,
    decided_at: datetime,
    stage_seconds: Mapping[Stage, float] | None = None,
    uploader_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Verdict:
    """The verdict of an upload that was hashed and matched."""
    action = decision.action
    held = {(m.list_name, m.entry_id) for m in decision.quarantined}
    matches, omitted = _bounded([*decision.matches, *decision.allowed_by], action, held)
    suppressed, omitted_suppressed = _bounded(list(decision.suppressed), action, held)
    return Verdict(
        upload_id=upload_id,
        action=action,
        matches=matches,
        suppressed=suppressed,
        matches_omitted=omitted + omitted_suppressed,
        hashes=hex_hashes(hashes),
        image=image,
        stage_seconds=dict(stage_seconds or {}),
        worker_id=worker_id,
        decided_at=decided_at,
        uploader_id=uploader_id,
        metadata=dict(metadata or {}),
    )


def error_verdict(
    *,
    upload_id: str,
    stage: Stage,
    reason: str,
    message: str,
    on_error: Action | None,
    worker_id: str,
    decided_at: datetime,
    stage_seconds: Mapping[Stage, float] | None = None,
    uploader_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Verdict:
    """The verdict of an upload that could not be screened (plus the fail-closed action)."""
    return Verdict(
        upload_id=upload_id,
        action=Action.ERROR,
        error_action=on_error,
        error=ErrorInfo(stage=stage, reason=reason, message=message[:1000]),
        stage_seconds=dict(stage_seconds or {}),
        worker_id=worker_id,
        decided_at=decided_at,
        uploader_id=uploader_id,
        metadata=dict(metadata or {}),
    )


def block_record(verdict: Verdict) -> BlockRecord | None:
    """The enforcement record for a verdict that blocks (fail-closed errors included)."""
    if Action.BLOCK not in (verdict.action, verdict.error_action):
        return None
    return BlockRecord(
        upload_id=verdict.upload_id,
        uploader_id=verdict.uploader_id,
        matches=verdict.matches,
        matches_omitted=verdict.matches_omitted,
        decided_at=verdict.decided_at,
        worker_id=verdict.worker_id,
        metadata=verdict.metadata,
    )


def alert_records(verdict: Verdict) -> list[AlertRecord]:
    """One alert per matched deny entry of a block or review verdict (the nearest match when
    an entry matched on several algorithms: one alert id, one alert)."""
    if verdict.action not in (Action.BLOCK, Action.REVIEW):
        return []
    alerts = {}
    for m in verdict.matches:
        alert_id = AlertRecord.make_id(verdict.upload_id, m.list, m.entry_id)
        if m.list_kind != "deny" or alert_id in alerts:
            continue
        alerts[alert_id] = AlertRecord(
            alert_id=alert_id,
            upload_id=verdict.upload_id,
            uploader_id=verdict.uploader_id,
            list=m.list,
            list_version=m.list_version,
            entry_id=m.entry_id,
            category=m.category,
            algorithm=m.algorithm,
            distance=m.distance,
            action=verdict.action,
            decided_at=verdict.decided_at,
            worker_id=verdict.worker_id,
        )
    return list(alerts.values())


#: Matches a slim copy keeps (see :func:`slim_verdict`).
SLIM_MATCHES = 10


def slim_verdict(verdict: Verdict) -> Verdict:
    """The verdict without metadata and with at most SLIM_MATCHES matches (the decisive ones
    come first), for when the broker refused the full record. Same upload, same action."""
    kept = verdict.matches[:SLIM_MATCHES]
    dropped = len(verdict.matches) - len(kept) + len(verdict.suppressed)
    return verdict.model_copy(
        update={
            "matches": kept,
            "suppressed": [],
            "matches_omitted": verdict.matches_omitted + dropped,
            "metadata": {},
        }
    )


def slim_block(block: BlockRecord) -> BlockRecord:
    """The block record without metadata and with at most SLIM_MATCHES matches."""
    kept = block.matches[:SLIM_MATCHES]
    return block.model_copy(
        update={
            "matches": kept,
            "matches_omitted": block.matches_omitted + len(block.matches) - len(kept),
            "metadata": {},
        }
    )


def slim_dead_letter(letter: DeadLetter) -> DeadLetter:
    """The dead letter without the original event and with a short message."""
    return letter.model_copy(update={"original_event": None, "message": letter.message[:200]})
