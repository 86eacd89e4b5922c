"""The two forms of an ``uploads`` record, told apart by its headers, and the binary form's parse.

Owns the choice of form and what the binary inline form's headers mean: a record whose
``content-type`` header is ``application/octet-stream`` carries the file's bytes as its value
and its event in headers (:class:`~pipeline.models.BinaryUploadHeaders`, ``schemas/
upload-headers.json``); any other record is a JSON :class:`~pipeline.models.UploadEvent`. Pure:
no I/O, never raises on what a producer sent (a problem is returned as a bounded, value-free
message, the screener's dead letter says it).

Why a binary form: a JSON inline event carries the file as base64 (a third larger on the wire,
through the broker, the Kafka client's checksums and the prefetch buffer) and is parsed and
decoded on the worker's event loop. Measured there: pydantic's parse of a 227 KB event takes
0.05 ms and pybase64's decode 0.01 ms, against ~5 ms of hashing a 1280x720 JPEG, so moving that
parse into the hashing processes would save ~1% of a core and cost a second pool round trip
for every by-reference upload; the binary form drops both and the base64 bytes instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from pydantic import ValidationError

from pipeline.event_references import validation_summary
from pipeline.models import BINARY_UPLOAD_CONTENT_TYPE, BinaryUploadHeaders, UploadEvent

#: Kafka headers as the clients hand them over: (name, value) pairs (a name may repeat), or
#: Faust's mapping of them.
Headers = Iterable[tuple[str, bytes | None]] | Mapping[str, bytes | None] | None

#: The header names the binary form reads (its schema's properties); others are ignored.
KNOWN_HEADERS: frozenset[str] = frozenset(
    field.alias or name for name, field in BinaryUploadHeaders.model_fields.items()
)
#: A header that only the binary form has: seen without ``content-type: application/
#: octet-stream``, the producer meant the binary form and got the content type wrong.
BINARY_ONLY_HEADERS = frozenset({"upload-id", "upload-schema-version"})


def header_pairs(headers: Headers) -> list[tuple[str, bytes | None]]:
    """``headers`` as (name, value) pairs, names lowercased (Kafka header names are free text;
    HTTP's convention, which producers follow, is case-insensitive)."""
    if headers is None:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(name).lower(), value) for name, value in pairs]


def is_binary(pairs: list[tuple[str, bytes | None]]) -> bool:
    """Whether a record with these headers is in the binary inline form."""
    return any(
        name == "content-type" and value is not None
        and value.strip().lower() == BINARY_UPLOAD_CONTENT_TYPE.encode()
        for name, value in pairs
    )  # fmt: skip


def misdirected_binary(pairs: list[tuple[str, bytes | None]]) -> str | None:
    """Why a record read as JSON looks like a binary upload with a wrong content type, or None."""
    names = sorted(BINARY_ONLY_HEADERS.intersection(name for name, _ in pairs))
    if not names:
        return None
    return (
        f"has the binary form's header {names[0]} but no content-type: "
        f"{BINARY_UPLOAD_CONTENT_TYPE} header, so its value was read as a JSON event"
    )


def parse_binary_headers(pairs: list[tuple[str, bytes | None]]) -> BinaryUploadHeaders | str:
    """The binary form's headers, validated, or why they are not acceptable."""
    known: dict[str, str] = {}
    for name, value in pairs:
        if name not in KNOWN_HEADERS:
            continue
        if name in known:
            return f"header {name} occurs twice (which value counts is ambiguous)"
        if value is None:
            return f"header {name} has no value"
        try:
            known[name] = value.decode()
        except UnicodeDecodeError:
            return f"header {name} is not UTF-8 text"
    try:
        return BinaryUploadHeaders.model_validate(known)
    except ValidationError as exc:
        return validation_summary(exc)


def binary_event(headers: BinaryUploadHeaders) -> UploadEvent | str:
    """The upload event the headers describe, or why it cannot be one (its metadata with the
    trace headers added over the cap, say)."""
    try:
        return headers.event()
    except ValidationError as exc:
        return validation_summary(exc)


def invalid_headers_reference(pairs: list[tuple[str, bytes | None]]) -> dict[str, object]:
    """What a dead letter may keep of refused binary headers, as the fields of a JSON event
    (:func:`~pipeline.event_references.invalid_event_reference` then applies its allowlist and
    caps): the upload id, uploader id, declared type and time when they are text, and that
    the content was inline. Never the value."""
    fields = {
        "upload-id": "upload_id",
        "uploader-id": "uploader_id",
        "upload-content-type": "content_type",
        "received-at": "received_at",
    }
    given = Counter(name for name, _ in pairs)
    raw: dict[str, object] = {"content": {"kind": "inline"}}
    for name, value in pairs:
        field = fields.get(name)
        if field is None or value is None or given[name] > 1:  # twice: which one counts?
            continue
        try:
            raw[field] = value.decode()
        except UnicodeDecodeError:
            continue
    return raw
