"""What an error verdict and a dead letter may keep of an upload event: references, never
content.

Owns the allowlist. Nothing about an invalid event can be trusted, and content can sit in any
field, so only known fields of the expected type and size are kept, the content's kind and the
one reference that kind carries (a redacted URL, a path, an S3 bucket, key and version); every
other field is named (if its name is plain) and counted, never copied. Also the upload id
outputs are keyed by when the body cannot give one, and a bounded, value-free summary of a
validation error. Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from pipeline.adapters.fetch import redact
from pipeline.json_keys import JsonObject
from pipeline.models import (
    MAX_UPLOAD_ID_CHARS,
    S3_KEY_MAX_BYTES,
    SourceRef,
    metadata_problem,
    stand_in_upload_id,
)

#: Known content kinds (anything else is recorded as None: an unknown "kind" may be content).
_CONTENT_KINDS = frozenset({"inline", "url", "path", "s3"})
#: Text fields an invalid event's dead letter keeps, with the schema's length caps.
_KEPT_TEXT_FIELDS = {
    "upload_id": MAX_UPLOAD_ID_CHARS,
    "content_type": 255,
    "uploader_id": 256,
    "received_at": 64,
}
#: Field names recorded as they are; any other name (a key could itself be base64) is only
#: counted, never written.
PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_OMITTED_FIELD_NAMES = 32
MAX_PATH_CHARS = 4096
#: The fields of an ``s3`` reference and their caps in characters (bucket names are ASCII;
#: a key's cap is in bytes, so no key within it is longer in characters).
S3_REFERENCE_FIELDS = {"bucket": 63, "key": S3_KEY_MAX_BYTES, "version_id": 1024}


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
        names = sorted(k for k in omitted if PLAIN_NAME.match(k))
        kept["omitted_fields"] = names[:MAX_OMITTED_FIELD_NAMES]
        kept["omitted_field_count"] = len(omitted)
    return kept


def _content_reference(content: dict[str, Any]) -> dict[str, Any]:
    """A content object reduced to its kind and the one reference that kind carries: the URL
    (redacted) of a ``url``, the path of a ``path``, the bucket, key and version id of an
    ``s3`` object. Inline data is content and is dropped; any
    other field (a ``path`` on inline content, say) is named, never copied: it is not a
    reference of this kind, so nothing says it is not content."""
    repeated = _repeated(content)
    kind = content.get("kind")
    # isinstance first: a list or object as "kind" is unhashable, and must not crash the check.
    kind = (
        kind
        if isinstance(kind, str) and kind in _CONTENT_KINDS and "kind" not in repeated
        else None
    )
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
        elif kind == "s3" and key in S3_REFERENCE_FIELDS and _s3_reference(key, value):
            kept[key] = value
        else:
            omitted.append(key)
    return _with_omitted(kept, omitted)


def _s3_reference(key: str, value: object) -> bool:
    """Whether ``value`` may be kept as an ``s3`` reference's ``key`` field: text within the
    field's cap, or null for the optional version id (a parsed event carries it as None)."""
    if key == "version_id" and value is None:
        return True
    return _is_text(value, S3_REFERENCE_FIELDS[key])


def reference_only(event: dict[str, Any]) -> dict[str, Any]:
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
        str(p) if isinstance(p, int) or PLAIN_NAME.match(p) else "<key>" for p in first["loc"]
    )
    message = first["msg"]
    for value in (first.get("ctx") or {}).values():
        if isinstance(value, str) and len(value) > 32:
            message = message.replace(value, "<...>")
    return f"{exc.error_count()} problem(s); first: {where or '<event>'}: {message[:200]}"
