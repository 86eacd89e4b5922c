"""Upload ids: every output is keyed by the id the event's body names, never a cut of it, and
an event whose JSON gives one key twice is invalid rather than silently resolved."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline import json_keys
from pipeline.adapters.fetch import Fetcher
from pipeline.config import Settings
from pipeline.core.guard import GuardLimits
from pipeline.core.matching import Matcher
from pipeline.fetch_policy import FetchLimits
from pipeline.hashpool import HashPool
from pipeline.json_keys import repeated_key
from pipeline.metrics import PipelineMetrics
from pipeline.models import (
    MAX_UPLOAD_ID_CHARS,
    SourceRef,
    Stage,
    UploadEvent,
    stand_in_upload_id,
)
from pipeline.screening import Screener, ScreeningOutcome

SOURCE = SourceRef(topic="uploads", partition=3, offset=41)
#: A path upload: with no file root set it fails at fetch, which shows it got past parsing.
PATH_CONTENT = '{"kind": "path", "path": "a.jpg"}'
CONTENT_FIELD = f'"content": {PATH_CONTENT}'


def json_object(*members: str) -> str:
    """JSON object text from member texts, as given: a key may repeat."""
    return "{" + ", ".join(members) + "}"


def screen(value: bytes, key: bytes | None = b"uploader-9") -> ScreeningOutcome:
    """Screen one raw record keyed, as a producer may, by its uploader rather than its id."""
    screener = Screener(
        Settings(bootstrap_servers="unused:9092", worker_id="w1"),
        matcher=Matcher(),
        fetcher=Fetcher(FetchLimits(max_bytes=1000)),
        pool=HashPool(0),
        metrics=PipelineMetrics(),
        limits=GuardLimits(),
    )
    return asyncio.run(screener.screen(value, key, SOURCE))


def failure(outcome: ScreeningOutcome) -> tuple[str, str, str]:
    """(upload id, stage, reason), checked to agree between the verdict and the dead letter."""
    letter, error = outcome.dead_letter, outcome.verdict.error
    assert letter is not None
    assert error is not None
    assert letter.upload_id == outcome.verdict.upload_id
    assert (letter.stage, letter.reason) == (error.stage, error.reason)
    return outcome.verdict.upload_id, letter.stage, letter.reason


def path_event(upload_id: object) -> bytes:
    return json.dumps({"upload_id": upload_id, "content": json.loads(PATH_CONTENT)}).encode()


# --- over-long ids -------------------------------------------------------------------------


def test_two_long_ids_with_one_prefix_keep_distinct_verdicts() -> None:
    prefix = "p" * MAX_UPLOAD_ID_CHARS  # itself a valid id another upload may have
    first, second = prefix + "-first", prefix + "-second"
    outcomes = [screen(path_event(first)), screen(path_event(second)), screen(path_event(prefix))]
    ids = [outcome.verdict.upload_id for outcome in outcomes]
    assert ids == [
        stand_in_upload_id(first.encode()),
        stand_in_upload_id(second.encode()),
        prefix,
    ]
    for outcome in outcomes[:2]:
        _, stage, reason = failure(outcome)
        assert (stage, reason) == (Stage.PARSE, "invalid_event")
        assert outcome.dead_letter is not None
        assert "at most 256 characters" in outcome.dead_letter.message
        assert outcome.dead_letter.original_event is not None
        assert "upload_id" not in outcome.dead_letter.original_event  # named, not copied
        assert "upload_id" in outcome.dead_letter.original_event["omitted_fields"]
    # The 256-character id is valid: it got past parsing.
    assert failure(outcomes[2])[1:] == (Stage.FETCH, "file_root_unset")


def test_the_stand_in_id_is_a_digest_a_producer_can_compute() -> None:
    upload_id = "é" * 300
    assert stand_in_upload_id(upload_id.encode()) == (
        "sha256:" + hashlib.sha256(upload_id.encode()).hexdigest()
    )
    assert len(stand_in_upload_id(upload_id.encode())) <= MAX_UPLOAD_ID_CHARS


def test_an_id_that_is_not_valid_unicode_is_refused_not_an_internal_error() -> None:
    value = b'{"upload_id": "a\\ud800b", "uploader_id": "\\udfff", "content": ' + (
        PATH_CONTENT.encode() + b"}"
    )
    outcome = screen(value)
    upload_id, stage, reason = failure(outcome)
    assert (stage, reason) == (Stage.PARSE, "invalid_event")
    assert upload_id == stand_in_upload_id("a\ud800b".encode("utf-8", "surrogatepass"))
    assert outcome.dead_letter is not None
    outcome.dead_letter.model_dump_json()  # emittable: no lone surrogate was copied
    assert outcome.dead_letter.original_event is not None
    assert outcome.dead_letter.original_event["omitted_fields"] == ["upload_id", "uploader_id"]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (b"k" * MAX_UPLOAD_ID_CHARS, "k" * MAX_UPLOAD_ID_CHARS),
        (b"k" * (MAX_UPLOAD_ID_CHARS + 1), stand_in_upload_id(b"k" * (MAX_UPLOAD_ID_CHARS + 1))),
        (b"\xff\xfe", stand_in_upload_id(b"\xff\xfe")),
        (None, "uploads-3-41"),
    ],
    ids=["longest-key", "long-key", "binary-key", "no-key"],
)
def test_an_event_without_a_usable_id_is_keyed_by_its_record_key(
    key: bytes | None, expected: str
) -> None:
    assert failure(screen(b"{not json", key=key))[0] == expected


# --- outputs follow the body's id, not the record key --------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        path_event("body-id"),  # valid: fails at fetch
        json.dumps({"upload_id": "body-id", "content": "x"}).encode(),  # invalid event
    ],
    ids=["valid", "invalid"],
)
def test_outputs_are_keyed_by_the_body_id_whatever_the_record_key(value: bytes) -> None:
    outcome = screen(value, key=b"uploader-9")
    assert failure(outcome)[0] == "body-id"


# --- keys given twice ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        json_object('"upload_id": "a"', CONTENT_FIELD, '"upload_id": "b"'),
        json_object('"upload_id": "a"', CONTENT_FIELD, '"upload\\u005fid": "b"'),
        json_object('"upload_id" : "a"', CONTENT_FIELD, '\n"upload_id"\t: "a"'),
    ],
    ids=["plain", "escaped-spelling", "same-value"],
)
def test_a_repeated_upload_id_is_an_invalid_event_keyed_by_the_record_key(value: str) -> None:
    outcome = screen(value.encode(), key=b"record-key")
    assert failure(outcome) == ("record-key", Stage.PARSE, "invalid_event")
    assert outcome.dead_letter is not None
    assert "upload_id occurs twice" in outcome.dead_letter.message
    assert outcome.dead_letter.original_event is not None
    assert outcome.dead_letter.original_event["omitted_fields"] == ["upload_id"]


def test_a_repeated_id_in_an_otherwise_invalid_event_is_not_used_either() -> None:
    value = b'{"upload_id": "a", "upload_id": "b", "content": 7}'
    assert failure(screen(value, key=b"record-key")) == ("record-key", "parse", "invalid_event")


@pytest.mark.parametrize(
    "value",
    [
        '{"upload_id": "a", "content": {"kind": "path", "path": "a.jpg", "path": "b.jpg"}}',
        json_object('"upload_id": "a"', CONTENT_FIELD, '"metadata": {"k": 1, "k": 2}'),
        json_object('"upload_id": "a"', CONTENT_FIELD, CONTENT_FIELD),
    ],
    ids=["in-content", "in-metadata", "content"],
)
def test_any_key_repeated_in_one_object_makes_the_event_invalid(value: str) -> None:
    UploadEvent.model_validate_json(value)  # pydantic alone resolves it silently
    assert failure(screen(value.encode()))[1:] == (Stage.PARSE, "invalid_event")


def test_one_name_in_different_objects_is_no_repeat() -> None:
    value = json_object('"upload_id": "a"', CONTENT_FIELD, '"metadata": {"upload_id": "x"}')
    assert failure(screen(value.encode()))[1:] == (Stage.FETCH, "file_root_unset")


def test_a_typical_inline_event_is_checked_without_a_second_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hot path: ~200 KB of base64 is crossed by one memchr, not parsed again."""

    def no_parse(raw: bytes) -> Any:
        raise AssertionError("parsed again")

    monkeypatch.setattr(json_keys, "load_json_noting_repeats", no_parse)
    event = {
        "schema_version": 1,
        "upload_id": "u-1",
        "content": {"kind": "inline", "data_base64": "QUJD" * 50_000},
        "uploader_id": "p-1",
        "received_at": "2026-11-22T12:00:00Z",
        "metadata": {"app": "chat", "tags": ["a", "b"], "nested": {"n": 1}, "note": "café"},
    }
    assert repeated_key(json.dumps(event).encode()) is None  # "caf\u00e9": an escape
    assert repeated_key(json.dumps(event, ensure_ascii=False, indent=2).encode()) is None


# Objects as lists of pairs, so keys can repeat; a small key alphabet makes repeats common.
_KEYS = st.sampled_from(["a", "b", "upload_id", "é", 'q"', "kind"])
_LEAVES = st.one_of(st.none(), st.integers(), _KEYS, st.text(max_size=5))
_JSON = st.recursive(
    _LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda items: ("list", items)),
        st.lists(st.tuples(_KEYS, children), max_size=4).map(lambda pairs: ("object", pairs)),
    ),
    max_leaves=12,
)


def _encode(node: Any, escape: str, blank: str) -> str:
    """JSON text of a generated node, objects keeping repeated keys. ``escape``: which strings
    are written with every character as a \\u escape (none, values, or all: keys too)."""

    def text(value: str, is_key: bool = False) -> str:
        if escape == "all" or (escape == "values" and not is_key):
            return '"' + "".join(f"\\u{ord(ch):04x}" for ch in value) + '"'
        return json.dumps(value, ensure_ascii=False)

    if isinstance(node, tuple) and node[0] == "list":
        return "[" + ",".join(_encode(item, escape, blank) for item in node[1]) + "]"
    if isinstance(node, tuple):
        members = (f"{text(k, is_key=True)}{blank}:{_encode(v, escape, blank)}" for k, v in node[1])
        return "{" + ",".join(members) + "}"
    return text(node) if isinstance(node, str) else json.dumps(node)


def _has_repeat(node: Any) -> bool:
    if isinstance(node, tuple) and node[0] == "list":
        return any(_has_repeat(item) for item in node[1])
    if isinstance(node, tuple):
        keys = [k for k, _ in node[1]]
        return len(set(keys)) != len(keys) or any(_has_repeat(v) for _, v in node[1])
    return False


@given(
    node=_JSON,
    escape=st.sampled_from(["none", "values", "all"]),
    blank=st.sampled_from(["", " ", "\n\t ", " " * 100]),
)
def test_repeated_key_agrees_with_the_document(node: Any, escape: str, blank: str) -> None:
    """Against the generated structure: the quick scan never hides a repeat."""
    raw = _encode(node, escape, blank).encode()
    assert (repeated_key(raw) is not None) == _has_repeat(node), raw
