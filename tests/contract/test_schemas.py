"""schemas/ mirrors the wire models exactly, and real records validate and round-trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from pipeline.adapters import hashlist_topic
from pipeline.adapters.hashlist_topic import entry_key, list_key, parse_hashlist_record
from pipeline.core.hashlist import Category, HashListEntry, ListConfig
from pipeline.core.types import Algorithm, HashValue
from pipeline.errors import InputRejected
from pipeline.models import (
    SCHEMAS,
    AlertRecord,
    BinaryUploadHeaders,
    DeadLetter,
    HashListConfigRecord,
    HashListEntryRecord,
    QuarantineLiftRecord,
    Record,
    SourceRef,
    Stage,
    UploadEvent,
    schema_text,
)

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schema_equals_generated(name: str) -> None:
    committed = (SCHEMA_DIR / name).read_text()
    assert committed == schema_text(SCHEMAS[name]), (
        f"schemas/{name} is stale: run `python -m pipeline.models --write-schemas`"
    )


def test_no_stray_schema_files() -> None:
    assert {p.name for p in SCHEMA_DIR.glob("*.json")} == set(SCHEMAS)


EXAMPLES: list[Record] = [
    UploadEvent(upload_id="u1", content={"kind": "url", "url": "https://cdn.example/a.jpg"},
                uploader_id="user-9", received_at=NOW, metadata={"app": "chat"}),
    UploadEvent(upload_id="u2", content={"kind": "inline", "data_base64": "aGVsbG8="}),
    UploadEvent(upload_id="u3", content={"kind": "path", "path": "2026/11/a.png"}),
    AlertRecord(alert_id="u1:eokm:e1", upload_id="u1", list="eokm", list_version="7",
                entry_id="e1", category="csam", algorithm="phash", distance=3,
                action="block", decided_at=NOW, worker_id="w1"),
    DeadLetter(upload_id="u9", stage=Stage.FETCH, reason="timeout", message="read timed out",
               attempts=3, source=SourceRef(topic="uploads", partition=1, offset=42),
               original_event={"upload_id": "u9"}, failed_at=NOW, worker_id="w1"),
    HashListEntryRecord(list="eokm", entry_id="e1", algorithm="md5", hash="0" * 32,
                        category="csam", source="EOKM"),
    HashListConfigRecord(name="eokm", kind="deny", action="block", thresholds={"phash": 8}),
    QuarantineLiftRecord(list="eokm", entry_id="e1", lifted_at=NOW, reason="ticket T-1"),
]  # fmt: skip


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).__name__)
def test_examples_validate_against_committed_schema_and_round_trip(record: Record) -> None:
    name = next(n for n, model in SCHEMAS.items() if model is type(record))
    schema = json.loads((SCHEMA_DIR / name).read_text())
    payload = json.loads(record.model_dump_json())
    jsonschema.Draft202012Validator(schema).validate(payload)
    assert type(record).model_validate_json(record.model_dump_json()) == record


def test_schema_rejects_what_the_model_rejects() -> None:
    schema = json.loads((SCHEMA_DIR / "upload-event.json").read_text())
    bad = {"schema_version": 1, "upload_id": "", "content": {"kind": "url", "url": "ftp://x/y"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(bad)
    with pytest.raises(ValueError, match="validation error"):
        UploadEvent.model_validate(bad)


def test_hashlist_topic_records_decode_to_operations() -> None:
    entry = HashListEntryRecord(list="eokm", entry_id="e1", algorithm="phash",
                                hash="ABCDEF0123456789", category="csam")  # fmt: skip
    kind, key, value = parse_hashlist_record(
        entry_key("eokm", "e1").encode(), entry.model_dump_json().encode()
    )
    assert (kind, key) == ("entry", ("eokm", "e1"))
    assert value is not None
    assert value.hash.hex == "abcdef0123456789"
    assert parse_hashlist_record(entry_key("eokm", "e1").encode(), None) == (
        "entry", ("eokm", "e1"), None,
    )  # fmt: skip
    config = HashListConfigRecord(name="eokm", action="block")
    assert (
        parse_hashlist_record(list_key("eokm").encode(), config.model_dump_json().encode())[0]
        == "list"
    )
    for key, value, reason in [
        (b"entry/eokm/e2", entry.model_dump_json().encode(), "bad_key"),
        (b"nonsense", b"{}", "bad_key"),
        (b"entry/eokm/e1", b"{not json", "bad_record"),
        (b"entry/eokm/e1", entry.model_copy(update={"hash": "zz" * 8}).model_dump_json().encode(),
         "bad_hash"),
    ]:  # fmt: skip
        with pytest.raises(InputRejected) as caught:
            parse_hashlist_record(key, value)
        assert caught.value.reason == reason


class RecordingSink:
    """A :class:`~pipeline.adapters.hashlist_topic.RecordSink` that keeps what it is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    def send(self, topic: str, *, key: bytes | None, value: bytes | None) -> None:
        self.sent.append((topic, key, value))


def test_what_the_codec_publishes_decodes_to_what_was_published() -> None:
    config = ListConfig.create("eokm", action="block", thresholds={"phash": 6}, version="v7")
    entries = [
        HashListEntry("eokm", f"e{i}", HashValue(algorithm, 0xABCDEF0123456789 + i), Category.CSAM)
        for i, algorithm in enumerate([Algorithm.PHASH, Algorithm.DHASH])
    ]
    sink = RecordingSink()
    assert hashlist_topic.publish(sink, "hashlists", [config], entries) == 3
    assert hashlist_topic.retract(sink, "hashlists", [entry_key("eokm", "e0")]) == 1
    assert {topic for topic, _, _ in sink.sent} == {"hashlists"}
    decoded = [parse_hashlist_record(key, value) for _, key, value in sink.sent]
    assert decoded == [  # the config first, so a reader knows a list's policy before its entries
        ("list", "eokm", config),
        ("entry", ("eokm", "e0"), entries[0]),
        ("entry", ("eokm", "e1"), entries[1]),
        ("entry", ("eokm", "e0"), None),
    ]
    schema = json.loads((SCHEMA_DIR / "hashlist-entry.json").read_text())
    jsonschema.validate(json.loads(sink.sent[1][2] or b""), schema)


def test_a_quarantine_lift_decodes_to_a_quarantine_operation() -> None:
    lift = QuarantineLiftRecord(list="eokm", entry_id="a/b", lifted_at=NOW)
    record = hashlist_topic.encode_lift(lift)
    assert record.key == b"quarantine/eokm/a/b"
    assert parse_hashlist_record(record.key, record.value) == ("quarantine", ("eokm", "a/b"), lift)
    assert parse_hashlist_record(record.key, None) == ("quarantine", ("eokm", "a/b"), None)
    with pytest.raises(InputRejected) as caught:
        parse_hashlist_record(b"quarantine/eokm/other", record.value)
    assert caught.value.reason == "bad_key"


def test_binary_upload_headers_validate_against_committed_schema_and_round_trip() -> None:
    """The binary inline form's header set: what a producer sends (header name -> UTF-8 text)
    validates against schemas/upload-headers.json and parses back to the same record."""
    schema = json.loads((SCHEMA_DIR / "upload-headers.json").read_text())
    headers = BinaryUploadHeaders.model_validate(
        {"content-type": "application/octet-stream", "upload-schema-version": "1",
         "upload-id": "u7", "upload-content-type": "image/jpeg", "uploader-id": "user-9",
         "received-at": NOW, "upload-metadata": {"app": "chat"},
         "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    )  # fmt: skip
    sent = {name: value.decode() for name, value in headers.kafka_headers()}
    assert set(sent) == {
        "content-type", "upload-schema-version", "upload-id", "upload-content-type",
        "uploader-id", "received-at", "upload-metadata", "traceparent",
    }  # fmt: skip
    jsonschema.Draft202012Validator(schema).validate(sent)
    assert BinaryUploadHeaders.model_validate(sent) == headers
    for missing in ("content-type", "upload-schema-version", "upload-id"):
        incomplete = {k: v for k, v in sent.items() if k != missing}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft202012Validator(schema).validate(incomplete)
        with pytest.raises(ValueError, match="validation error"):
            BinaryUploadHeaders.model_validate(incomplete)
