"""The binary inline form of an upload: the file's bytes as the record's value, the event in
Kafka headers. It screens exactly like the JSON form of the same file; a record with missing,
repeated or invalid headers is dead-lettered with a clear reason and without its value."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime

import pytest

from pipeline.adapters.fetch import Fetcher
from pipeline.application.uploads import binary_record, inline_event
from pipeline.config import Settings
from pipeline.core.guard import GuardLimits
from pipeline.core.matching import Matcher
from pipeline.hashpool import HashPool
from pipeline.metrics import DEAD_LETTER_REASONS, PipelineMetrics
from pipeline.models import SourceRef, Stage
from pipeline.screening import Screener, ScreeningOutcome
from pipeline.upload_forms import Headers
from tests.imagegen import encode, synthetic_image

IMAGE = encode(synthetic_image(5))
SOURCE = SourceRef(topic="uploads", partition=0, offset=3)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def screen(
    value: bytes | None, headers: Headers, *, key: bytes = b"k", max_bytes: int = 1_000_000
) -> ScreeningOutcome:
    settings = Settings(bootstrap_servers="unused:9092", worker_id="w1", max_upload_bytes=max_bytes)
    screener = Screener(
        settings,
        matcher=Matcher(),
        fetcher=Fetcher(settings.fetch_limits()),
        pool=HashPool(0),
        metrics=PipelineMetrics(),
        limits=GuardLimits(),
    )
    return asyncio.run(screener.screen(value, key, SOURCE, headers))


def good_headers(**changes: bytes | None) -> list[tuple[str, bytes]]:
    headers = {
        "content-type": b"application/octet-stream",
        "upload-schema-version": b"1",
        "upload-id": b"bin-1",
        "uploader-id": b"user-7",
        "received-at": b"2026-12-02T10:00:00+00:00",
        "upload-metadata": b'{"app":"chat","room":42}',
        "traceparent": TRACEPARENT.encode(),
        "b3": b"\xff not ours, ignored",
    } | changes
    return [(name, value) for name, value in headers.items() if value is not None]


def failure(outcome: ScreeningOutcome) -> tuple[Stage, str, str]:
    letter, error = outcome.dead_letter, outcome.verdict.error
    assert letter is not None
    assert error is not None
    assert (letter.stage, letter.reason) == (error.stage, error.reason)
    assert letter.reason in DEAD_LETTER_REASONS
    return letter.stage, letter.reason, letter.message


def test_binary_upload_screens_like_its_json_form() -> None:
    as_json = inline_event("bin-1", "a.jpg", IMAGE)
    json_outcome = screen(as_json.model_dump_json().encode(), None)
    outcome = screen(IMAGE, good_headers())
    assert outcome.dead_letter is None
    assert outcome.verdict.action == "allow"
    assert outcome.verdict.hashes == json_outcome.verdict.hashes
    assert outcome.verdict.upload_id == "bin-1"
    assert outcome.verdict.uploader_id == "user-7"
    assert outcome.verdict.metadata == {"app": "chat", "room": 42, "traceparent": TRACEPARENT}
    assert outcome.received_at == datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def test_faust_header_mapping_and_header_name_case_are_accepted() -> None:
    headers = {name.title(): value for name, value in good_headers()}
    assert screen(IMAGE, headers).dead_letter is None


def test_submit_binary_record_round_trips_through_the_screener() -> None:
    event = inline_event("cli-1", "photo.jpg", IMAGE)
    value, headers = binary_record(event)
    assert value == IMAGE
    outcome = screen(value, headers)
    assert outcome.dead_letter is None
    assert outcome.verdict.upload_id == "cli-1"
    assert outcome.verdict.metadata == {"file": "photo.jpg"}


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"upload-id": None}, "upload-id"),
        ({"upload-id": b""}, "upload-id"),
        ({"upload-schema-version": None}, "upload-schema-version"),
        ({"upload-schema-version": b"2"}, "upload-schema-version"),
        ({"uploader-id": b"\xff\xfe"}, "uploader-id is not UTF-8"),
        ({"received-at": b"yesterday"}, "received-at"),
        ({"upload-metadata": b"{not json"}, "upload-metadata"),
        ({"upload-metadata": b"[1, 2]"}, "upload-metadata"),
        ({"traceparent": b"00-short-01"}, "traceparent"),
    ],
)
def test_invalid_headers_are_dead_lettered_with_a_clear_reason(
    changes: dict[str, bytes | None], said: str
) -> None:
    stage, reason, message = failure(screen(IMAGE, good_headers(**changes)))
    assert (stage, reason) == (Stage.PARSE, "invalid_headers")
    assert message.startswith("binary upload: ")
    assert said in message


def test_a_header_given_twice_is_refused_and_keys_by_the_record_key() -> None:
    headers = [*good_headers(), ("upload-id", b"bin-2")]
    outcome = screen(IMAGE, headers, key=b"record-key")
    assert failure(outcome)[1:] == ("invalid_headers", "binary upload: header upload-id occurs"
                                    " twice (which value counts is ambiguous)")  # fmt: skip
    assert outcome.verdict.upload_id == "record-key"


def test_a_refused_binary_upload_keeps_its_id_and_no_content() -> None:
    outcome = screen(IMAGE, good_headers(**{"upload-schema-version": b"9"}))
    assert outcome.verdict.upload_id == "bin-1"
    letter = outcome.dead_letter
    assert letter is not None
    assert letter.original_event == {
        "content": {"kind": "inline"},
        "upload_id": "bin-1",
        "uploader_id": "user-7",
        "received_at": "2026-12-02T10:00:00+00:00",
    }
    written = letter.model_dump_json().encode() + outcome.verdict.model_dump_json().encode()
    assert IMAGE[100:132] not in written
    assert base64.b64encode(IMAGE[99:147]) not in written


def test_binary_headers_without_the_content_type_are_named_not_parsed_as_json() -> None:
    headers = [(n, v) for n, v in good_headers() if n != "content-type"]
    stage, reason, message = failure(screen(IMAGE, headers))
    assert (stage, reason) == (Stage.PARSE, "invalid_headers")
    assert "content-type: application/octet-stream" in message


def test_binary_upload_over_the_byte_cap_is_refused_before_hashing() -> None:
    stage, reason, _ = failure(screen(IMAGE, good_headers(), max_bytes=len(IMAGE) - 1))
    assert (stage, reason) == (Stage.FETCH, "too_large_bytes")
    assert screen(IMAGE, good_headers(), max_bytes=len(IMAGE)).dead_letter is None


@pytest.mark.parametrize("value", [None, b"", b"not an image at all"])
def test_binary_upload_that_is_no_image_is_refused_by_the_guard(value: bytes | None) -> None:
    stage, reason, _ = failure(screen(value, good_headers()))
    assert stage in (Stage.GUARD, Stage.DECODE)
    assert reason != "internal_error"


def test_json_events_with_unrelated_headers_stay_json() -> None:
    event = inline_event("j-1", "a.jpg", IMAGE).model_dump_json().encode()
    headers = [("content-type", b"application/json"), ("traceparent", TRACEPARENT.encode())]
    outcome = screen(event, headers)
    assert outcome.dead_letter is None
    assert json.loads(outcome.verdict.model_dump_json())["upload_id"] == "j-1"
