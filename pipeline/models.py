"""Wire records: what crosses Kafka and the CLI as JSON, validated at the boundary.

Owns the shape of every record the pipeline reads or writes (upload event, verdict, block,
alert, dead letter, hash-list entry and list config). Each record carries ``schema_version``;
the JSON Schemas in ``schemas/`` are generated from these models (``python -m pipeline.models
--write-schemas``) and a contract test fails when they drift. Records never carry image
content: verdicts and dead letters hold hashes and references. The pure core never sees these
models; the ``hashlists`` topic's keys, and the conversion of its records to and from the
core's entries and configs, are :mod:`pipeline.adapters.hashlist_topic`'s.
"""

from __future__ import annotations

import builtins
import enum
import hashlib
import json
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import to_json

from pipeline.core.hashlist import (
    MAX_THRESHOLD_64,
    PDQ_MAX_THRESHOLD,
    VPDQ_MAX_FRAMES,
    Category,
    ListKind,
    max_threshold,
)
from pipeline.core.orientation import Orientation
from pipeline.core.regions import RegionKind
from pipeline.core.types import Action, Algorithm

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
MAX_UPLOAD_ID_CHARS = 256
UploadId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_UPLOAD_ID_CHARS,
        description=f"1 to {MAX_UPLOAD_ID_CHARS} characters. An upload event with a longer id "
        "is invalid (never cut); its error verdict and dead letter carry `sha256:` and the hex "
        "SHA-256 of the id's UTF-8 bytes instead.",
    ),
]

# Caps on an upload's pass-through metadata. It is copied into the verdict, the block record and
# dead letters, so without a cap one event could make every output record too large for the
# broker (Kafka refuses records over ~1 MB by default) and stall its partition.
METADATA_MAX_BYTES = 16 * 1024  # serialized as compact JSON, UTF-8
METADATA_MAX_KEYS = 64  # top level
METADATA_MAX_KEY_CHARS = 128
METADATA_MAX_DEPTH = 8  # nested objects/arrays
#: Most matches (and, separately, suppressed matches) a verdict or block record lists. The
#: decision uses every match; the records keep the decisive ones first, then the nearest.
MAX_MATCHES_PER_RECORD = 100


def stand_in_upload_id(refused_id: bytes) -> str:
    """The id an error verdict carries for an upload whose own id it cannot carry (over
    MAX_UPLOAD_ID_CHARS, or not text): ``sha256:`` and the id's hex digest. Distinct ids keep
    distinct verdicts, which cutting them did not (two ids with one 256-character prefix
    overwrote each other's verdicts), and a producer can compute the key of its verdict."""
    return "sha256:" + hashlib.sha256(refused_id).hexdigest()


def metadata_problem(value: object) -> str | None:
    """Why ``value`` is not acceptable upload metadata, or None. Pure; never raises."""
    if not isinstance(value, dict):
        return "metadata must be a JSON object"
    if len(value) > METADATA_MAX_KEYS:
        return f"metadata has {len(value)} keys; at most {METADATA_MAX_KEYS}"
    if any(not isinstance(k, str) or len(k) > METADATA_MAX_KEY_CHARS for k in value):
        return f"metadata keys must be strings of at most {METADATA_MAX_KEY_CHARS} characters"
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:  # depth first, iteratively: a deep document must not exhaust the stack
        node, depth = stack.pop()
        if not isinstance(node, dict | list):
            continue
        if depth > METADATA_MAX_DEPTH:
            return f"metadata is nested deeper than {METADATA_MAX_DEPTH} levels"
        stack.extend(
            (child, depth + 1) for child in (node.values() if isinstance(node, dict) else node)
        )
    try:
        size = len(to_json(value))
    except ValueError:
        return "metadata is not serializable as JSON"
    if size > METADATA_MAX_BYTES:
        return f"metadata is {size} bytes as JSON; at most {METADATA_MAX_BYTES}"
    return None


def _check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    problem = metadata_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Metadata = Annotated[
    dict[Annotated[str, Field(max_length=METADATA_MAX_KEY_CHARS)], Any],
    Field(
        max_length=METADATA_MAX_KEYS,
        description=f"Passed through as is; at most {METADATA_MAX_BYTES} bytes as compact JSON, "
        f"nested at most {METADATA_MAX_DEPTH} levels.",
    ),
    AfterValidator(_check_metadata),
]


#: A list's action on the wire: ``block`` or ``review`` (core.types.LIST_ACTIONS).
ListActionName = Literal[Action.BLOCK, Action.REVIEW]


class Record(BaseModel):
    """Base of every wire record: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)


class ParseReason(enum.StrEnum):
    """Why an upload event was refused before anything was fetched."""

    INVALID_JSON = "invalid_json"
    INVALID_EVENT = "invalid_event"
    #: A record in the binary inline form whose headers are missing or invalid.
    INVALID_HEADERS = "invalid_headers"


class EmitReason(enum.StrEnum):
    """Why an output was written other than as screened (the broker refused it for good)."""

    EMIT_FAILED = "emit_failed"


class Stage(enum.StrEnum):
    """Where in the pipeline something happened (bounded: used as a metric label)."""

    PARSE = "parse"
    FETCH = "fetch"
    GUARD = "guard"
    DECODE = "decode"
    HASH = "hash"
    MATCH = "match"
    EMIT = "emit"
    ALERT = "alert"
    HASHLIST = "hashlist"


# --- uploads ---------------------------------------------------------------------------------


class InlineContent(Record):
    kind: Literal["inline"] = "inline"
    data_base64: str = Field(description="The file, base64-encoded (small files only).")


class UrlContent(Record):
    kind: Literal["url"] = "url"
    url: str = Field(min_length=8, max_length=8192, pattern=r"^(?i:https?)://")


class PathContent(Record):
    kind: Literal["path"] = "path"
    path: str = Field(min_length=1, max_length=4096, description="Relative to the file root.")


#: S3's rules for a general-purpose bucket's name: 3 to 63 lowercase letters, digits, dots and
#: hyphens, starting and ending with a letter or digit, no two dots in a row, not an IPv4
#: address. It also keeps out what the S3 client would read as something other than a bucket in
#: the configured endpoint: an access-point or Object Lambda ARN (``arn:aws:s3:...``) routes the
#: request to another endpoint, possibly another account's.
S3_BUCKET_PATTERN = r"^(?!\d+\.\d+\.\d+\.\d+$)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
#: S3's cap on an object key, in bytes of UTF-8.
S3_KEY_MAX_BYTES = 1024
#: A key of printable characters: a control character (a newline) in a key would be written into
#: the worker's log lines and forge others.
S3_KEY_PATTERN = r"^[^\x00-\x1f\x7f]+$"
#: A version id as S3 hands them out: opaque, URL-ready (printable ASCII), at most 1024 bytes.
S3_VERSION_ID_PATTERN = r"^[\x21-\x7e]{1,1024}$"


def _key_within_s3_cap(key: str) -> str:
    """The key, if S3 could hold it: at most S3_KEY_MAX_BYTES bytes of valid UTF-8 (a lone
    surrogate from a JSON escape has no UTF-8 form)."""
    try:
        size = len(key.encode())
    except UnicodeEncodeError:
        raise ValueError("key is not valid Unicode") from None
    if size > S3_KEY_MAX_BYTES:
        raise ValueError(f"key is {size} bytes as UTF-8; S3 keys are at most {S3_KEY_MAX_BYTES}")
    if any(segment in (".", "..") for segment in key.split("/")):
        # S3 keeps them literally, but a proxy or a path-style endpoint may normalise
        # "uploads/../private/x" into another object than the one named.
        raise ValueError("key has a '.' or '..' path segment")
    return key


class S3Content(Record):
    """An object in S3-API object storage (AWS S3, MinIO, Ceph RGW, ...), read with the
    worker's own endpoint and credentials (``PIPELINE_S3_*``)."""

    # The bucket pattern needs look-aheads, which pydantic's default (Rust) regex engine lacks.
    model_config = ConfigDict(regex_engine="python-re")

    kind: Literal["s3"] = "s3"
    bucket: str = Field(
        min_length=3,
        max_length=63,
        pattern=S3_BUCKET_PATTERN,
        description="A bucket name under S3's naming rules (no ARNs, no IP addresses).",
    )
    key: Annotated[str, AfterValidator(_key_within_s3_cap)] = Field(
        min_length=1,
        max_length=S3_KEY_MAX_BYTES,
        pattern=S3_KEY_PATTERN,
        description=f"The object key, 1 to {S3_KEY_MAX_BYTES} bytes as UTF-8, no control "
        "characters, no '.' or '..' path segment.",
    )
    version_id: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        pattern=S3_VERSION_ID_PATTERN,
        description="A version of the object; absent reads the current one.",
    )

    @field_validator("bucket", "key", "version_id")
    @classmethod
    def _no_final_newline(cls, value: str | None) -> str | None:
        """The patterns end in ``$``, which the python-re engine also matches before a final
        newline: a bucket or key ending in one would pass them and reach the log lines. (They
        stay ``$`` for the JSON Schemas, whose regex dialect has no end-of-text anchor.)"""
        if value is not None and value.endswith("\n"):
            raise ValueError("must not end in a newline")
        return value

    @property
    def uri(self) -> str:
        """``s3://bucket/key``, with ``?versionId=...`` for a version: for logs and messages."""
        version = f"?versionId={self.version_id}" if self.version_id is not None else ""
        return f"s3://{self.bucket}/{self.key}{version}"


#: Every content form; ``kind`` tells them apart.
AnyContent = InlineContent | UrlContent | PathContent | S3Content
Content = Annotated[AnyContent, Field(discriminator="kind")]


class UploadEvent(Record):
    """One upload to screen (topic ``uploads``). Producers usually key it by upload id but may
    key it by anything (the uploader, to keep one uploader's uploads in order): every output
    is keyed by the ``upload_id`` of the body. A key given twice in one JSON object makes the
    event invalid: parsers disagree on which one counts."""

    schema_version: Literal[1] = 1
    upload_id: UploadId
    content: Content
    content_type: str | None = Field(None, max_length=255)
    uploader_id: str | None = Field(None, max_length=256, description="Opaque to the pipeline.")
    received_at: datetime | None = None
    metadata: Metadata = Field(default_factory=dict)


#: The ``content-type`` header that marks an ``uploads`` record as the binary inline form.
BINARY_UPLOAD_CONTENT_TYPE = "application/octet-stream"
#: The version of the binary form's header set (the ``upload-schema-version`` header).
BINARY_UPLOAD_SCHEMA_VERSION = "1"
#: W3C Trace Context ``traceparent``: version, trace id, parent id, flags (lowercase hex).
TRACEPARENT_PATTERN = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


class BinaryUploadHeaders(BaseModel):
    """The Kafka headers of an upload in the binary inline form (topic ``uploads``).

    The record's value is the file's bytes, as they are (no JSON, no base64); these headers
    carry what a JSON event carries beside its content. Each header's value is UTF-8 text.
    ``content-type: application/octet-stream`` is what selects the form; a record without it is
    read as a JSON :class:`UploadEvent`. Headers not named here (a tracer's ``b3``, say) are
    allowed and ignored. A header given twice makes the record invalid, like a repeated key in
    a JSON event. ``traceparent`` and ``tracestate`` (W3C Trace Context) are copied into the
    upload's metadata under those names, so its verdict carries them."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    content_type: Literal["application/octet-stream"] = Field(
        alias="content-type",
        description="Selects the binary form: the record's value is the file's bytes.",
    )
    schema_version: Literal["1"] = Field(alias="upload-schema-version")
    upload_id: UploadId = Field(alias="upload-id")
    media_type: str | None = Field(
        None,
        alias="upload-content-type",
        max_length=255,
        description="The file's declared type (the JSON event's content_type); informative only.",
    )
    uploader_id: str | None = Field(
        None, alias="uploader-id", max_length=256, description="Opaque to the pipeline."
    )
    received_at: datetime | None = Field(
        None, alias="received-at", description="RFC 3339, as in the JSON event."
    )
    metadata: Annotated[
        Metadata | None,
        # The header is text: JSON of an object (the validator below parses it).
        WithJsonSchema(
            {"type": "string", "contentMediaType": "application/json",
             "contentSchema": {"type": "object"}}
        ),
    ] = Field(
        None,
        alias="upload-metadata",
        description="The JSON event's metadata as compact JSON text, with its caps.",
    )  # fmt: skip
    traceparent: str | None = Field(None, pattern=TRACEPARENT_PATTERN)
    tracestate: str | None = Field(None, max_length=512)

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_from_json(cls, value: object) -> object:
        """The header holds the object as JSON text (a record's header is bytes, not JSON)."""
        if isinstance(value, str | bytes):
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError("upload-metadata is not a JSON object") from None
        return value

    def event(self) -> UploadEvent:
        """The JSON event these headers describe, its content inline; the bytes themselves stay
        in the record's value (``data_base64`` is empty here, never filled)."""
        metadata = dict(self.metadata or {})
        for name in ("traceparent", "tracestate"):
            value = getattr(self, name)
            if value is not None:
                metadata.setdefault(name, value)
        return UploadEvent(
            upload_id=self.upload_id,
            content=InlineContent(data_base64=""),
            content_type=self.media_type,
            uploader_id=self.uploader_id,
            received_at=self.received_at,
            metadata=metadata,
        )

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        """The headers to produce, in schema order, absent ones left out."""
        fields = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        if "upload-metadata" in fields:
            fields["upload-metadata"] = json.dumps(fields["upload-metadata"], separators=(",", ":"))
        return [(name, str(value).encode()) for name, value in fields.items()]


# --- verdicts and what follows from them -------------------------------------------------------


class RegionRecord(Record):
    """The part of an upload that matched, in the pixels of the upload as seen upright (after
    its EXIF orientation; ``image.width``/``height`` are the stored size, swapped when the
    EXIF orientation turns the picture a quarter)."""

    x: int = Field(ge=0)
    y: int = Field(ge=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    kind: RegionKind = Field(
        description="whole: the whole upload; trimmed: without uniform borders (pad,"
        " letterbox); embedded: a picture inside a screenshot, chat frame or meme; uncropped:"
        " the whole upload with its edges extended, as if a crop of a few percent of each side"
        " were undone; straightened: the whole upload turned back by the few degrees its"
        " fill-coloured corners show."
    )


class VpdqSharesRecord(Record):
    """How a video matched a vPDQ entry (ThreatExchange's rule): percent of the upload's usable
    frames that match some entry frame, percent of the entry's frames matched, and the
    thresholds both had to reach."""

    query_percent: float = Field(ge=0, le=100)
    entry_percent: float = Field(ge=0, le=100)
    query_threshold: float = Field(ge=0, le=100)
    entry_threshold: float = Field(ge=0, le=100)


class MatchRecord(Record):
    """Why an upload matched: enough for an engineer to explain the decision."""

    list: str
    list_version: str
    list_kind: ListKind
    list_action: ListActionName
    entry_id: str
    category: Category
    algorithm: Algorithm
    distance: int = Field(ge=0)
    threshold: int = Field(ge=0)
    orientation: Orientation = Field(
        Orientation.IDENTITY,
        description="How the upload is turned or flipped relative to the listed picture.",
    )
    region: RegionRecord | None = Field(
        None,
        description="Which part of the upload matched, in its pixels; absent for exact digests"
        " and for matches of given hashes (no picture).",
    )
    quarantined: bool = Field(
        False,
        description="The entry is quarantined on this worker (it matched too large a share of "
        "uploads): this match asks for review, whatever list_action says.",
    )
    frame_seconds: builtins.list[float] | None = Field(
        None,
        max_length=50,
        description="For a video: when the sampled frames that matched are shown, in seconds "
        "from its start (the first 50); absent for images and file-digest matches.",
    )
    vpdq: VpdqSharesRecord | None = Field(
        None,
        description="For a match of a vPDQ (whole-video) entry: the shares of frames that "
        "matched; algorithm is then pdq and distance the nearest frame pair's.",
    )


class ImageFacts(Record):
    format: str
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    media: Literal["image", "video"] = Field("image", description="What the upload is.")
    duration_seconds: float | None = Field(
        None, ge=0, description="A video's duration (from its header); absent for images."
    )
    low_information: bool = Field(
        False,
        description="Too little detail (near-uniform, gradient, vignette, stripes) for a"
        " perceptual match to mean anything: the whole picture was not searched by perceptual"
        " hash (exact digests and detailed regions still were).",
    )
    pdq_quality: int | None = Field(
        None,
        ge=0,
        le=100,
        description="PDQ's quality score of the whole picture, when a PDQ list is loaded;"
        " below 50 the picture is not matched by PDQ.",
    )


class ErrorInfo(Record):
    stage: Stage
    reason: str = Field(max_length=64, pattern=r"^[a-z0-9_]+$")
    message: str = Field(max_length=1000)


class Verdict(Record):
    """Exactly one per upload (topic ``verdicts``, keyed by upload id)."""

    schema_version: Literal[1] = 1
    upload_id: UploadId
    action: Action
    error_action: Action | None = Field(
        None, description="With action=error: the fail-closed action added by policy, if any."
    )
    matches: list[MatchRecord] = Field(default_factory=list, max_length=MAX_MATCHES_PER_RECORD)
    suppressed: list[MatchRecord] = Field(
        default_factory=list,
        max_length=MAX_MATCHES_PER_RECORD,
        description="Deny matches suppressed by an allow-list match.",
    )
    matches_omitted: int = Field(
        0, ge=0, description="Matches and suppressed matches left out to bound the record size."
    )
    hashes: dict[Algorithm, str] = Field(default_factory=dict, description="Hex, never content.")
    image: ImageFacts | None = None
    error: ErrorInfo | None = None
    stage_seconds: dict[Stage, float] = Field(default_factory=dict)
    worker_id: str
    decided_at: datetime
    uploader_id: str | None = None
    metadata: Metadata = Field(default_factory=dict)


class BlockRecord(Record):
    """What an enforcement service consumes (topic ``blocks``, keyed by upload id)."""

    schema_version: Literal[1] = 1
    upload_id: UploadId
    uploader_id: str | None = None
    matches: list[MatchRecord] = Field(max_length=MAX_MATCHES_PER_RECORD)
    matches_omitted: int = Field(0, ge=0, description="Matches left out to bound the size.")
    decided_at: datetime
    worker_id: str
    metadata: Metadata = Field(default_factory=dict)


class AlertRecord(Record):
    """One match to deliver to the alert sinks (topic ``alerts``, the durable outbox)."""

    schema_version: Literal[1] = 1
    alert_id: str = Field(description="upload_id:list:entry_id, the sinks' idempotency key.")
    upload_id: UploadId
    uploader_id: str | None = None
    list: str
    list_version: str
    entry_id: str
    category: Category
    algorithm: Algorithm
    distance: int = Field(ge=0)
    action: Action
    decided_at: datetime
    worker_id: str

    @staticmethod
    def make_id(upload_id: str, list_name: str, entry_id: str) -> str:
        """The idempotency key of the alert for one (upload, list entry) pair."""
        return f"{upload_id}:{list_name}:{entry_id}"


class SourceRef(Record):
    """Where a consumed record came from."""

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class DeadLetter(Record):
    """Anything that could not be screened or delivered (topic ``dead-letters``). No content."""

    schema_version: Literal[1] = 1
    upload_id: str | None = None
    stage: Stage
    reason: str = Field(max_length=64, pattern=r"^[a-z0-9_]+$")
    message: str = Field(max_length=1000)
    attempts: int = Field(1, ge=1)
    source: SourceRef | None = None
    original_event: dict[str, Any] | None = Field(
        None,
        description="References only, never content: for an event that parsed, the event with "
        "inline data removed and URLs redacted; for one that did not, an allowlist of known "
        "fields with capped lengths and, of its content, the kind and the one reference that "
        "kind carries (url or path), plus the names (not values) of every other key.",
    )
    failed_at: datetime
    worker_id: str


# --- hash lists --------------------------------------------------------------------------------


class HashListEntryRecord(Record):
    """One list entry (topic ``hashlists``, key ``entry/<list>/<entry_id>``; null retracts)."""

    schema_version: Literal[1] = 1
    list: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    entry_id: str = Field(min_length=1, max_length=256)
    algorithm: Algorithm
    hash: str = Field(min_length=16, max_length=66)
    category: Category
    source: str = Field("", max_length=256)
    note: str | None = Field(None, max_length=1000)


#: One frame of a vPDQ entry on the wire: ``[pdq_hex, quality, seconds]`` (strict: quality a
#: JSON integer, seconds a JSON number; no strings, booleans, NaN or infinity).
VpdqFrameWire = tuple[
    Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")],
    Annotated[StrictInt, Field(ge=0, le=100)],
    Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)],
]


class HashListVpdqEntryRecord(Record):
    """One listed video's vPDQ hash (topic ``hashlists``, key ``vpdq/<list>/<entry_id>``; null
    retracts): one frame a second as ThreatExchange's vPDQ computes it, each
    ``[pdq_hex, quality, seconds]``, at most VPDQ_MAX_FRAMES (7200: two hours)."""

    schema_version: Literal[1] = 1
    list: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    entry_id: str = Field(min_length=1, max_length=256)
    algorithm: Literal["vpdq"]
    frames: builtins.list[VpdqFrameWire] = Field(min_length=1, max_length=VPDQ_MAX_FRAMES)
    category: Category
    source: str = Field("", max_length=256)
    note: str | None = Field(None, max_length=1000)


#: A list's threshold on the wire: a JSON integer (``"8"``, ``8.0`` and ``true`` are refused,
#: not coerced), in bits. The per-algorithm cap is :func:`pipeline.core.hashlist.max_threshold`'s.
Threshold = Annotated[
    StrictInt,
    Field(
        ge=0,
        description=f"Bits of Hamming distance: at most {MAX_THRESHOLD_64} for phash and "
        f"dhash, {PDQ_MAX_THRESHOLD} for pdq, 0 for md5, sha1 and sha256 (digests always match "
        "at 0).",
    ),
]


class HashListConfigRecord(Record):
    """A list's policy (topic ``hashlists``, key ``list/<name>``; null removes the list).

    Validated as strictly as a manifest's list: ``enabled`` is a JSON boolean and thresholds
    JSON integers within their algorithm's cap, never coerced from other types."""

    schema_version: Literal[1] = 1
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: ListKind = ListKind.DENY
    action: ListActionName = Action.REVIEW
    thresholds: dict[Algorithm, Threshold] = Field(default_factory=dict)
    enabled: StrictBool = True
    version: str = Field("1", max_length=64)

    @field_validator("thresholds")
    @classmethod
    def _capped(cls, thresholds: dict[Algorithm, int]) -> dict[Algorithm, int]:
        """Each threshold within its algorithm's cap (the schema can only describe these)."""
        for algorithm, bits in thresholds.items():
            cap = max_threshold(algorithm)
            if bits > cap:
                raise ValueError(f"{algorithm} threshold must be in [0, {cap}], got {bits}")
        return thresholds


class QuarantineLiftRecord(Record):
    """An operator lifted an entry's flood quarantine and exempted it until re-armed (topic
    ``hashlists``, key ``quarantine/<list>/<entry_id>``; null re-arms)."""

    schema_version: Literal[1] = 1
    list: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    entry_id: str = Field(min_length=1, max_length=256)
    lifted_at: datetime
    reason: str | None = Field(
        None, max_length=1000, description="Why, in the operator's words (a ticket, a finding)."
    )


# --- schemas -----------------------------------------------------------------------------------

#: Every wire record and the schema file it is published as.
SCHEMAS: Mapping[str, type[BaseModel]] = {
    "upload-event.json": UploadEvent,
    "upload-headers.json": BinaryUploadHeaders,
    "verdict.json": Verdict,
    "block.json": BlockRecord,
    "alert.json": AlertRecord,
    "dead-letter.json": DeadLetter,
    "hashlist-entry.json": HashListEntryRecord,
    "hashlist-vpdq-entry.json": HashListVpdqEntryRecord,
    "hashlist-config.json": HashListConfigRecord,
    "quarantine-lift.json": QuarantineLiftRecord,
}


def schema_text(model: type[BaseModel]) -> str:
    """The JSON Schema of a record, as committed in schemas/."""
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Regenerate every schema file; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in SCHEMAS.items():
        path = directory / name
        path.write_text(schema_text(model))
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - developer tool
    if sys.argv[1:] == ["--write-schemas"]:
        for path in write_schemas():
            print(path)
    else:
        print("usage: python -m pipeline.models --write-schemas", file=sys.stderr)
        raise SystemExit(2)
