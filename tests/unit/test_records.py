"""Output records stay bounded and content-free: metadata caps, match caps, and what a dead
letter keeps of an event that failed validation."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from pipeline.adapters.fetch import Fetcher
from pipeline.config import Settings
from pipeline.core.decision import decide
from pipeline.core.guard import GuardLimits
from pipeline.core.hashlist import Category, ListKind
from pipeline.core.matching import Match, Matcher
from pipeline.core.types import Action, Algorithm
from pipeline.event_references import invalid_event_reference
from pipeline.fetch_policy import FetchLimits
from pipeline.hashpool import HashPool
from pipeline.metrics import PipelineMetrics
from pipeline.models import (
    MAX_MATCHES_PER_RECORD,
    METADATA_MAX_BYTES,
    DeadLetter,
    ImageFacts,
    SourceRef,
    Stage,
    UploadEvent,
)
from pipeline.screening import Screener
from pipeline.verdicts import alert_records, block_record, screened_verdict

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
#: Stand-in for image content: base64 of bytes, as an attacker or a buggy client would send it
#: (27 KiB: over the metadata cap).
CONTENT = base64.b64encode(bytes(range(256)) * 80).decode()
FINGERPRINT = CONTENT[100:140]


def event(**fields: object) -> bytes:
    return json.dumps(
        {"upload_id": "u1", "content": {"kind": "url", "url": "https://cdn.example/a"}, **fields}
    ).encode()


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"note": "x" * (METADATA_MAX_BYTES + 1)}, "bytes as JSON"),
        ({f"k{i}": 1 for i in range(65)}, "at most 64"),
        ({"k" * 129: 1}, "metadata"),
        ({"a": [[[[[[[[["deep"]]]]]]]]]}, "nested"),
    ],
)
def test_metadata_over_the_caps_makes_the_event_invalid(metadata: object, problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        UploadEvent.model_validate_json(event(metadata=metadata))
    assert problem in str(caught.value)


def test_metadata_within_the_caps_passes_through() -> None:
    metadata = {"app": "chat", "tags": ["a", "b"], "nested": {"n": 1}, "note": "x" * 8000}
    assert UploadEvent.model_validate_json(event(metadata=metadata)).metadata == metadata


def _screener() -> Screener:
    settings = Settings(bootstrap_servers="unused:9092", worker_id="w1")
    return Screener(
        settings,
        matcher=Matcher(),
        fetcher=Fetcher(FetchLimits(max_bytes=1000)),
        pool=HashPool(0),
        metrics=PipelineMetrics(),
        limits=GuardLimits(),
    )


def screen_raw(value: bytes) -> DeadLetter:
    outcome = asyncio.run(
        _screener().screen(value, b"u1", SourceRef(topic="uploads", partition=0, offset=7))
    )
    assert outcome.dead_letter is not None
    text = outcome.dead_letter.model_dump_json() + outcome.verdict.model_dump_json()
    assert FINGERPRINT not in text, "content reached a dead letter or verdict"
    return outcome.dead_letter


@pytest.mark.parametrize(
    "raw",
    [
        {"upload_id": "u1", "content": CONTENT},  # content as a bare string
        {"upload_id": "u1", "content": {"kind": "inline", "data_base64": CONTENT, "x": 1}},
        {"upload_id": "u1", "content": {"kind": CONTENT}},  # echoed by pydantic's message
        {"upload_id": "u1", "content": {"kind": "url", "url": "data:image/png;base64," + CONTENT}},
        {"upload_id": "u1", "image": CONTENT, "content": {"kind": "path", "path": "a.png"}},
        {"upload_id": "u1", CONTENT[:2000]: 1, "content": {"kind": "path", "path": "a.png"}},
        {"upload_id": "u1", "content": {"kind": "path", "path": "a"}, "metadata": {"b": CONTENT}},
        {"upload_id": ["u1", CONTENT], "content": None},
        {"upload_id": "u1", "content": {"kind": "inline", "data_base64": "", "path": CONTENT}},
        {
            "upload_id": "u1",
            "content": {"kind": "url", "url": "https://a.example/", "path": CONTENT},
        },
        {"upload_id": "u1", "content": {"kind": "path", "path": "a.png", "url": CONTENT}},
    ],
    ids=[
        "content-string",
        "inline-extra",
        "kind-tag",
        "data-url",
        "extra-field",
        "key-name",
        "huge-metadata",
        "id-list",
        "inline-with-path",
        "url-with-path",
        "path-with-url",
    ],
)
def test_invalid_events_never_carry_content_into_the_dead_letter(raw: dict[str, object]) -> None:
    letter = screen_raw(json.dumps(raw).encode())
    assert (letter.stage, letter.reason) == (Stage.PARSE, "invalid_event")


def test_an_invalid_event_keeps_known_references_and_names_the_rest() -> None:
    raw = {
        "upload_id": "u" * 400,
        "uploader_id": "user-9",
        "content": {"kind": "url", "url": "https://cdn.example/a.jpg?token=secret"},
        "metadata": {"app": "chat"},
        "image": CONTENT,
        "schema_version": 7,
        CONTENT[:80]: "x",
    }
    kept = invalid_event_reference(raw)
    assert kept == {
        "uploader_id": "user-9",
        "content": {"kind": "url", "url": "https://cdn.example/a.jpg"},
        "metadata": {"app": "chat"},
        "schema_version": 7,
        # Over its cap: named, not cut (a cut id is another upload's id).
        "omitted_fields": ["image", "upload_id"],
        "omitted_field_count": 3,
    }


@pytest.mark.parametrize(
    ("content", "kept"),
    [
        (
            {"kind": "inline", "data_base64": CONTENT, "path": "p" * 4096},
            {"kind": "inline", "omitted_fields": ["path"], "omitted_field_count": 1},
        ),
        (
            {"kind": "url", "url": "https://cdn.example/a?t=1", "path": "p", "extra": 1},
            {
                "kind": "url",
                "url": "https://cdn.example/a",
                "omitted_fields": ["extra", "path"],
                "omitted_field_count": 2,
            },
        ),
        (
            {"kind": "path", "path": "a.png", "url": "https://cdn.example/a"},
            {"kind": "path", "path": "a.png", "omitted_fields": ["url"], "omitted_field_count": 1},
        ),
        (
            {"kind": "path", "path": "p" * 4097},  # over the schema's cap: named, not cut
            {"kind": "path", "omitted_fields": ["path"], "omitted_field_count": 1},
        ),
        (
            {"kind": "file", "path": "a.png", "url": "https://cdn.example/a"},
            {"kind": None, "omitted_fields": ["path", "url"], "omitted_field_count": 2},
        ),
        (
            {"kind": "url", "url": 7},
            {"kind": "url", "omitted_fields": ["url"], "omitted_field_count": 1},
        ),
        (
            {"kind": "s3", "bucket": "b-1", "key": "a/b.jpg", "version_id": "v1", "data": CONTENT},
            {
                "kind": "s3",
                "bucket": "b-1",
                "key": "a/b.jpg",
                "version_id": "v1",
                "omitted_fields": ["data"],
                "omitted_field_count": 1,
            },
        ),
        (
            {"kind": "s3", "bucket": "b" * 64, "key": CONTENT, "url": "https://cdn.example/a"},
            {
                "kind": "s3",
                "omitted_fields": ["bucket", "key", "url"],
                "omitted_field_count": 3,
            },
        ),
        (
            {"kind": "s3", "bucket": "b-1", "key": "k", "version_id": None},
            {"kind": "s3", "bucket": "b-1", "key": "k", "version_id": None},
        ),
        (
            {"kind": "url", "url": "https://cdn.example/a", "bucket": "b-1", "key": "k"},
            {
                "kind": "url",
                "url": "https://cdn.example/a",
                "omitted_fields": ["bucket", "key"],
                "omitted_field_count": 2,
            },
        ),
    ],
    ids=[
        "inline-path",
        "url-path",
        "path-url",
        "long-path",
        "unknown-kind",
        "url-not-text",
        "s3-extra",
        "s3-over-caps",
        "s3-no-version",
        "url-s3-fields",
    ],
)
def test_content_keeps_only_the_reference_its_kind_carries(
    content: dict[str, object], kept: dict[str, object]
) -> None:
    """Mismatched and unknown content fields are named, never copied (nor cut)."""
    assert invalid_event_reference({"upload_id": "u1", "content": content}) == {
        "upload_id": "u1",
        "content": kept,
    }


def test_a_valid_event_that_fails_later_keeps_its_bounded_metadata() -> None:
    value = event(metadata={"app": "chat"}, content={"kind": "path", "path": "a.png"})
    letter = screen_raw(value)  # path uploads are disabled: fails at fetch
    assert letter.reason == "file_root_unset"
    assert letter.original_event is not None
    assert letter.original_event["metadata"] == {"app": "chat"}
    assert letter.original_event["content"] == {"kind": "path", "path": "a.png"}


def _match(i: int, kind: ListKind = ListKind.DENY, action: Action = Action.REVIEW) -> Match:
    return Match(
        list_name="L" * 128,
        list_version="v" * 64,
        list_kind=kind,
        list_action=action,
        entry_id=f"{i:04d}" + "e" * 252,
        category=Category.CSAM,
        algorithm=Algorithm.PHASH,
        distance=i % 11,
        threshold=10,
    )


def test_worst_case_records_stay_far_below_the_broker_limit() -> None:
    """Largest legal metadata and ids, and an image near thousands of list entries."""
    matches = [_match(i) for i in range(3000)]
    matches.append(_match(9999, action=Action.BLOCK))  # decisive, and the farthest
    metadata = {f"k{i:03d}": "x" * 200 for i in range(63)}
    metadata["note"] = "é" * ((METADATA_MAX_BYTES - len(json.dumps(metadata)) - 20) // 2)
    metadata = UploadEvent(
        upload_id="u", content={"kind": "path", "path": "p"}, metadata=metadata
    ).metadata
    verdict = screened_verdict(
        upload_id="u" * 256,
        hashes={Algorithm.PHASH: 1, Algorithm.DHASH: 2},
        image=ImageFacts(format="JPEG", width=1, height=1),
        decision=decide(matches),
        worker_id="w" * 256,
        decided_at=NOW,
        uploader_id="p" * 256,
        metadata=metadata,
    )
    assert len(verdict.matches) == MAX_MATCHES_PER_RECORD
    assert verdict.matches_omitted == len(matches) - MAX_MATCHES_PER_RECORD
    # The decisive block match comes first even though it is the farthest.
    assert verdict.action == "block"
    assert verdict.matches[0].list_action == "block"
    block = block_record(verdict)
    assert block is not None
    alerts = alert_records(verdict)
    assert len(alerts) == MAX_MATCHES_PER_RECORD
    for record in (verdict, block, *alerts):
        assert len(record.model_dump_json().encode()) < 256 * 1024, type(record).__name__
