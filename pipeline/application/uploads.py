"""Submitting uploads to the ``uploads`` topic and waiting for their verdicts.

Owns the upload events the CLI and the demo make (inline content, or a reference to an S3
object given as ``s3://bucket/key[?versionId=...]``; an id of the file's or key's name plus a
random suffix), as JSON records or, inline ones, in the binary inline form (the file as the
record's value, the event in headers), and the submit-and-wait use case: the verdicts topic is
read from its end *before* the uploads are produced, so a verdict that comes fast is not
missed, and every upload is confirmed by the broker
(:class:`~pipeline.adapters.delivery.Delivery`) before any wait begins.

Must not print or choose exit codes: verdicts are returned (those seen in time, in the order
of the uploads), failures raised (:class:`~pipeline.adapters.delivery.DeliveryFailed`,
:class:`~pipeline.adapters.topics.BrokerUnreachable`).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from pipeline.adapters.delivery import Delivery
from pipeline.adapters.topics import short_lived_consumer
from pipeline.config import Settings
from pipeline.models import (
    BINARY_UPLOAD_CONTENT_TYPE,
    BINARY_UPLOAD_SCHEMA_VERSION,
    BinaryUploadHeaders,
    InlineContent,
    S3Content,
    UploadEvent,
)

S3_SCHEME = "s3://"
#: How ``s3://bucket/key?versionId=ID`` names a version (the AWS console's spelling).
S3_VERSION_MARK = "?versionId="
#: Characters of a key's name kept in the upload id made for it (a random suffix follows).
UPLOAD_ID_NAME_CHARS = 64

#: A verdict as read from the verdicts topic (the JSON of a :class:`~pipeline.models.Verdict`).
VerdictJson = dict[str, Any]


def inline_event(upload_id: str, name: str, data: bytes) -> UploadEvent:
    """An upload event carrying ``data`` inline, received now, named ``name`` in its metadata."""
    return UploadEvent(
        upload_id=upload_id,
        content={"kind": "inline", "data_base64": base64.b64encode(data).decode()},
        received_at=datetime.now(UTC),
        metadata={"file": name},
    )


def upload_event(path: Path, upload_id: str | None = None) -> UploadEvent:
    """An inline upload event for a local file. Raises :class:`OSError` when it cannot be read."""
    return inline_event(
        upload_id or f"{path.stem}-{uuid.uuid4().hex[:12]}", path.name, path.read_bytes()
    )


def s3_content(uri: str) -> S3Content:
    """The object ``s3://bucket/key`` names, or a version with ``?versionId=ID`` at the end.

    The key is everything after the bucket's slash, as written (no percent-decoding, as the
    AWS CLI reads it), up to a final ``?versionId=``. Raises :class:`ValueError` saying what is
    wrong: another scheme, no key, or a bucket, key or version id S3 would not accept.
    """
    if not uri.startswith(S3_SCHEME):
        raise ValueError(f"not an s3:// URI: {uri[:80]!r}")
    bucket, slash, key = uri.removeprefix(S3_SCHEME).partition("/")
    version: str | None = None
    if S3_VERSION_MARK in key:
        key, _, version = key.rpartition(S3_VERSION_MARK)
    if not slash or not key:
        raise ValueError(f"{uri[:80]!r} names no key: write s3://BUCKET/KEY")
    try:
        return S3Content(bucket=bucket, key=key, version_id=version)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise ValueError(f"{uri[:80]!r}: {problems}") from None


def s3_event(content: S3Content, upload_id: str | None = None) -> UploadEvent:
    """An upload event for an S3 object, received now, named by its URI in the metadata."""
    name = PurePosixPath(content.key).stem[:UPLOAD_ID_NAME_CHARS] or "s3"
    return UploadEvent(
        upload_id=upload_id or f"{name}-{uuid.uuid4().hex[:12]}",
        content=content,
        received_at=datetime.now(UTC),
        metadata={"file": content.uri},
    )


def binary_record(event: UploadEvent) -> tuple[bytes, list[tuple[str, bytes]]]:
    """An inline event in the binary inline form: the file's bytes as the record's value and
    the rest of the event as Kafka headers (:class:`~pipeline.models.BinaryUploadHeaders`).
    Raises :class:`ValueError` for an event whose content is not inline."""
    if not isinstance(event.content, InlineContent):
        raise ValueError(f"only inline content has a binary form, not {event.content.kind}")
    headers = BinaryUploadHeaders.model_validate(
        {
            "content-type": BINARY_UPLOAD_CONTENT_TYPE,
            "upload-schema-version": BINARY_UPLOAD_SCHEMA_VERSION,
            "upload-id": event.upload_id,
            "upload-content-type": event.content_type,
            "uploader-id": event.uploader_id,
            "received-at": event.received_at,
            "upload-metadata": event.metadata or None,
        }
    )
    return base64.b64decode(event.content.data_base64), headers.kafka_headers()


def send_events(
    delivery: Delivery,
    settings: Settings,
    events: Sequence[UploadEvent],
    *,
    binary: bool = False,
) -> None:
    """Hand ``events`` to ``delivery``, keyed by upload id, for the uploads topic; with
    ``binary``, inline ones in the binary inline form (:func:`binary_record`)."""
    for event in events:
        key = event.upload_id.encode()
        if binary and isinstance(event.content, InlineContent):
            value, headers = binary_record(event)
            delivery.send(settings.topic_uploads, key, value, headers)
        else:
            delivery.send(settings.topic_uploads, key, event.model_dump_json().encode())


def submit_events(
    bootstrap: str,
    settings: Settings,
    events: Sequence[UploadEvent],
    wait: float,
    *,
    binary: bool = False,
) -> list[VerdictJson]:
    """Produce ``events`` (inline ones in the binary form with ``binary``); with ``wait`` > 0,
    return their verdicts seen within ``wait`` seconds of the last being confirmed (in the
    order of ``events``; missing ones left out).

    Raises :class:`~pipeline.adapters.delivery.DeliveryFailed` (naming the first upload ids)
    unless the broker confirmed every event, and
    :class:`~pipeline.adapters.topics.BrokerUnreachable` when it cannot be reached.
    """
    consumer = _verdicts_from_now(bootstrap, settings) if wait > 0 else None
    try:
        delivery = Delivery.from_settings(bootstrap, settings)
        send_events(delivery, settings, events, binary=binary)
        delivery.finish_or_raise()
        if consumer is None:
            return []
        return _await_verdicts(consumer, [e.upload_id for e in events], wait)
    finally:
        if consumer is not None:
            consumer.close()


def _verdicts_from_now(bootstrap: str, settings: Settings) -> Any:
    """A consumer of every verdicts partition, positioned at its end now."""
    from kafka import TopicPartition

    consumer = short_lived_consumer(bootstrap, settings.broker_connect_timeout_seconds)
    try:
        topic = settings.topic_verdicts
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        consumer.assign(partitions)
        # Starting a little early is harmless: verdicts are filtered by upload id.
        consumer.seek_to_end(*partitions)
        for tp in partitions:
            consumer.position(tp)
    except BaseException:
        consumer.close()
        raise
    return consumer


def _await_verdicts(consumer: Any, upload_ids: Sequence[str], wait: float) -> list[VerdictJson]:
    """The verdicts of ``upload_ids`` that ``consumer`` brings within ``wait`` seconds."""
    wanted = set(upload_ids)
    verdicts: dict[str, VerdictJson] = {}
    deadline = time.monotonic() + wait
    while wanted - set(verdicts) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            for record in records:
                verdict = json.loads(record.value)
                if verdict.get("upload_id") in wanted:
                    verdicts[verdict["upload_id"]] = verdict
    return [verdicts[upload_id] for upload_id in upload_ids if upload_id in verdicts]
