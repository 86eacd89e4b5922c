"""The ``hashlists`` topic's codec: record keys, decoding, and encoding configs, entries and
retractions as records.

Owns the one mapping between the core's list entries and configs and what the topic holds:
keys ``entry/<list>/<entry_id>`` (value: a :class:`~pipeline.models.HashListEntryRecord`),
``vpdq/<list>/<entry_id>`` (value: a :class:`~pipeline.models.HashListVpdqEntryRecord`, a
listed video's vPDQ hash), ``list/<name>`` (value: a
:class:`~pipeline.models.HashListConfigRecord`) and
``quarantine/<list>/<entry_id>`` (value: a :class:`~pipeline.models.QuarantineLiftRecord`, an
operator's lift of the entry's flood quarantine); a null value (tombstone) retracts the entry,
removes the list's config or re-arms the entry's quarantine. The wire records themselves live in
:mod:`pipeline.models`. Every reader (the worker's :mod:`pipeline.hashlist_feed`) and writer (the
CLI's use cases, the benchmarks, the tests) goes through here, so the key layout and the record
shapes cannot drift apart.

Must not: open Kafka clients or choose delivery guarantees. :func:`publish` and :func:`retract`
hand records to a :class:`RecordSink` (a kafka-python ``KafkaProducer`` is one, so is
:class:`pipeline.adapters.delivery.Delivery`); flushing and checking delivery is the caller's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

import msgspec
from pydantic import ValidationError

from pipeline.core.hashlist import (
    VPDQ_ALGORITHM,
    Category,
    HashListEntry,
    ListConfig,
    VpdqEntry,
    vpdq_frames,
)
from pipeline.core.matching import Operation
from pipeline.core.types import Algorithm, HashValue, hex_value
from pipeline.errors import InputRejected
from pipeline.models import (
    HashListConfigRecord,
    HashListEntryRecord,
    HashListVpdqEntryRecord,
    QuarantineLiftRecord,
)

#: An operator's lift (or, with None, re-arm) of an entry's flood quarantine.
QuarantineOperation = tuple[Literal["quarantine"], tuple[str, str], QuarantineLiftRecord | None]
#: What one ``hashlists`` record asks of a worker: a matcher operation or a quarantine one.
TopicOperation = Operation | QuarantineOperation


class RecordSink(Protocol):
    """Where encoded records go: ``send(topic, key=..., value=...)``, as kafka-python's
    ``KafkaProducer`` spells it. What it returns (a future, say) is the sink's business."""

    def send(self, topic: str, *, key: bytes | None, value: bytes | None) -> object: ...


@dataclass(frozen=True)
class TopicRecord:
    """One record for the topic, encoded: UTF-8 key, JSON value (``None`` for a tombstone)."""

    key: bytes
    value: bytes | None


def entry_key(list_name: str, entry_id: str) -> str:
    """Topic key of a list entry."""
    return f"entry/{list_name}/{entry_id}"


def vpdq_key(list_name: str, entry_id: str) -> str:
    """Topic key of a vPDQ (whole-video) list entry."""
    return f"vpdq/{list_name}/{entry_id}"


def list_key(list_name: str) -> str:
    """Topic key of a list's config."""
    return f"list/{list_name}"


def quarantine_key(list_name: str, entry_id: str) -> str:
    """Topic key of an entry's quarantine lift."""
    return f"quarantine/{list_name}/{entry_id}"


# -- core <-> wire records ------------------------------------------------------------------------


def to_core_entry(record: HashListEntryRecord) -> HashListEntry:
    """Validate the hash against its algorithm and convert to the core's frozen entry."""
    return HashListEntry(
        list_name=record.list,
        entry_id=record.entry_id,
        hash=HashValue.from_hex(record.algorithm, record.hash),
        category=record.category,
        source=record.source,
        note=record.note,
    )


def to_core_config(record: HashListConfigRecord) -> ListConfig:
    """Convert a list's config record to the core's frozen config (validates thresholds)."""
    return ListConfig.create(
        name=record.name,
        kind=record.kind,
        action=record.action,
        thresholds=record.thresholds,
        enabled=record.enabled,
        version=record.version,
    )


def entry_record(entry: HashListEntry) -> HashListEntryRecord:
    """The wire record of a core entry."""
    return HashListEntryRecord(
        list=entry.list_name,
        entry_id=entry.entry_id,
        algorithm=entry.hash.algorithm,
        hash=entry.hash.hex,
        category=entry.category,
        source=entry.source,
        note=entry.note,
    )


def vpdq_record(entry: VpdqEntry) -> HashListVpdqEntryRecord:
    """The wire record of a core vPDQ entry (frames as ``[pdq_hex, quality, seconds]``)."""
    return HashListVpdqEntryRecord(
        list=entry.list_name,
        entry_id=entry.entry_id,
        algorithm=VPDQ_ALGORITHM,
        frames=[(f"{f.pdq:064x}", f.quality, f.seconds) for f in entry.frames],
        category=entry.category,
        source=entry.source,
        note=entry.note,
    )


def config_record(config: ListConfig) -> HashListConfigRecord:
    """The wire record of a core list config."""
    return HashListConfigRecord(
        name=config.name,
        kind=config.kind,
        action=config.action,
        thresholds=dict(config.thresholds),
        enabled=config.enabled,
        version=config.version,
    )


# -- encoding ---------------------------------------------------------------------------------


def encode_entry(entry: HashListEntry) -> TopicRecord:
    """The record that publishes (or replaces) ``entry``."""
    return TopicRecord(
        entry_key(entry.list_name, entry.entry_id).encode(),
        entry_record(entry).model_dump_json().encode(),
    )


def encode_vpdq(entry: VpdqEntry) -> TopicRecord:
    """The record that publishes (or replaces) a vPDQ entry."""
    return TopicRecord(
        vpdq_key(entry.list_name, entry.entry_id).encode(),
        vpdq_record(entry).model_dump_json().encode(),
    )


def encode_config(config: ListConfig) -> TopicRecord:
    """The record that publishes (or replaces) a list's config."""
    return TopicRecord(
        list_key(config.name).encode(), config_record(config).model_dump_json().encode()
    )


def encode_lift(lift: QuarantineLiftRecord) -> TopicRecord:
    """The record that lifts an entry's quarantine (and exempts it until re-armed)."""
    return TopicRecord(
        quarantine_key(lift.list, lift.entry_id).encode(), lift.model_dump_json().encode()
    )


def tombstone(key: str) -> TopicRecord:
    """The record that retracts whatever the topic holds under ``key``."""
    return TopicRecord(key.encode(), None)


def publish(
    sink: RecordSink,
    topic: str,
    configs: Iterable[ListConfig],
    entries: Iterable[HashListEntry | VpdqEntry],
) -> int:
    """Send ``configs``, then ``entries``, to ``topic``; returns the records handed to ``sink``.

    Configs first, so a worker that reads the topic in order knows a list's policy before its
    entries (a worker holds, never matches, the entries of a list whose config it has not
    read: see :class:`pipeline.core.matching.Matcher`)."""
    sent = 0
    for record in [encode_config(config) for config in configs]:
        sink.send(topic, key=record.key, value=record.value)
        sent += 1
    for entry in entries:
        record = encode_vpdq(entry) if isinstance(entry, VpdqEntry) else encode_entry(entry)
        sink.send(topic, key=record.key, value=record.value)
        sent += 1
    return sent


def retract(sink: RecordSink, topic: str, keys: Iterable[str]) -> int:
    """Send a tombstone for each of ``keys`` to ``topic``; returns how many were handed over."""
    sent = 0
    for key in keys:
        record = tombstone(key)
        sink.send(topic, key=record.key, value=record.value)
        sent += 1
    return sent


# -- decoding ---------------------------------------------------------------------------------


#: What a ``hashlists`` record is about, by its key: the ``operation`` label of
#: ``screening_hashlist_updates_total`` (``unknown``: a key of none of these shapes).
RECORD_KINDS: tuple[str, ...] = ("entry", "vpdq", "list", "quarantine", "unknown")


def record_kind(key: bytes | None) -> str:
    """What the record under ``key`` is about (one of :data:`RECORD_KINDS`), whether or not
    its value is valid: so a rejection can be counted against what was rejected."""
    kind, _, rest = (key or b"").decode("utf-8", errors="replace").partition("/")
    if (kind in ("entry", "vpdq", "quarantine") and "/" in rest) or (kind == "list" and rest):
        return kind
    return "unknown"


def _problem(exc: ValidationError) -> str:
    """The first problem of a refused record: where, what, and the type and value it got (cut
    short: a value is a policy field or a hash, never content)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"] if part != "[key]") or "record"
    more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
    if first["type"] == "value_error":  # our own validator's message names the value already
        return f"{where}: {first['msg'].removeprefix('Value error, ')}{more}"
    got = first.get("input")
    shown = repr(got)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{where}: {first['msg']}, got {type(got).__name__} {shown}{more}"


#: A list name as :class:`~pipeline.models.HashListEntryRecord` allows it. ``\Z``, not ``$``:
#: Python's ``$`` also matches before a final newline, which the model's pattern refuses.
_LIST_NAME = r"^[A-Za-z0-9_.:-]+\Z"


class _EntryWire(msgspec.Struct, forbid_unknown_fields=True):
    """:class:`~pipeline.models.HashListEntryRecord`'s rules as a msgspec struct: the fast
    path for the bulk of the topic (a 10M-entry list is 10M of these).

    msgspec decodes it strictly (no coercion of any type) several times faster than pydantic
    validates the model. It may only ever be *stricter* than the model: a record it refuses is
    decoded again by the model, which accepts it or refuses it with the model's message, so
    what is accepted and every error message stay the model's
    (tests/unit/test_hashlist_fastpath.py checks both on generated records)."""

    list: Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=_LIST_NAME)]
    entry_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    algorithm: Algorithm
    hash: Annotated[str, msgspec.Meta(min_length=16, max_length=66)]
    category: Category
    source: Annotated[str, msgspec.Meta(max_length=256)] = ""
    note: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    schema_version: Literal[1] = 1


_ENTRY_DECODER = msgspec.json.Decoder(_EntryWire)


def _decode_entry(value: bytes) -> HashListEntryRecord | _EntryWire:
    """The entry record in ``value``: by the fast path, or by the model when the fast path
    refuses it (raising the model's ValidationError when the model refuses it too)."""
    try:
        return _ENTRY_DECODER.decode(value)
    except msgspec.DecodeError:  # msgspec.ValidationError is one
        return HashListEntryRecord.model_validate_json(value)


#: An entry as the bulk path decodes it: (list, entry id, algorithm, hash value, category).
FastEntry = tuple[str, str, Algorithm, int, Category]


def fast_entry(key: bytes | None, value: bytes | None) -> FastEntry | None:
    """The entry an ``entry/...`` record publishes, decoded without a model or an object per
    field; None for anything else (a retraction, another kind of record, or an entry record
    the fast path does not accept: :func:`parse_hashlist_record` then decides, and names the
    fault). What it returns is what :func:`parse_hashlist_record` gives for the same record
    (tests/unit/test_hashlist_fastpath.py), less the source and note, which no match uses."""
    if value is None or key is None or not key.startswith(b"entry/"):
        return None
    try:
        list_name, slash, entry_id = key[6:].decode().partition("/")
        entry = _ENTRY_DECODER.decode(value)
    except (UnicodeDecodeError, msgspec.DecodeError):
        return None
    if not slash or entry.list != list_name or entry.entry_id != entry_id:
        return None
    parsed = hex_value(entry.algorithm, entry.hash)
    if parsed is None:
        return None
    return (list_name, entry_id, entry.algorithm, parsed, entry.category)


def parse_hashlist_record(key: bytes | None, value: bytes | None) -> TopicOperation:
    """Decode one ``hashlists`` topic record into an operation for the matcher, or for the
    flood quarantine (``quarantine`` records).

    Validation is strict: a config's ``enabled`` must be a JSON boolean and its thresholds
    JSON integers within :func:`pipeline.core.hashlist.max_threshold` (as in a manifest), so
    ``"no"``, ``0``, ``"8"``, ``8.0`` or a pHash threshold of 64 are refused, never coerced.
    Raises :class:`InputRejected` (reason ``bad_key``, ``bad_record``, ``bad_hash`` or
    ``bad_list``, its message naming the field and the value) for a record that cannot be
    applied; the caller counts it under :func:`record_kind` and skips it.
    """
    text = (key or b"").decode("utf-8", errors="replace")
    kind, _, rest = text.partition("/")
    try:
        if kind == "entry" and "/" in rest:
            list_name, _, entry_id = rest.partition("/")
            if value is None:
                return ("entry", (list_name, entry_id), None)
            entry = _decode_entry(value)
            if (entry.list, entry.entry_id) != (list_name, entry_id):
                raise InputRejected("record does not match its key", reason="bad_key")
            return (
                "entry",
                (list_name, entry_id),
                HashListEntry(
                    list_name=entry.list,
                    entry_id=entry.entry_id,
                    hash=HashValue.from_hex(entry.algorithm, entry.hash),
                    category=entry.category,
                    source=entry.source,
                    note=entry.note,
                ),
            )
        if kind == "vpdq" and "/" in rest:
            list_name, _, entry_id = rest.partition("/")
            if value is None:
                return ("vpdq", (list_name, entry_id), None)
            video = HashListVpdqEntryRecord.model_validate_json(value)
            if (video.list, video.entry_id) != (list_name, entry_id):
                raise InputRejected("record does not match its key", reason="bad_key")
            try:
                frames = vpdq_frames([list(frame) for frame in video.frames])
            except ValueError as exc:  # the model checked the same: a guard against drift
                raise InputRejected(f"vpdq entry {entry_id!r}: {exc}", reason="bad_hash") from None
            return (
                "vpdq",
                (list_name, entry_id),
                VpdqEntry(
                    list_name=video.list,
                    entry_id=video.entry_id,
                    frames=frames,
                    category=video.category,
                    source=video.source,
                    note=video.note,
                ),
            )
        if kind == "list" and rest:
            if value is None:
                return ("list", rest, None)
            config = HashListConfigRecord.model_validate_json(value)
            if config.name != rest:
                raise InputRejected("record does not match its key", reason="bad_key")
            return ("list", rest, to_core_config(config))
        if kind == "quarantine" and "/" in rest:
            list_name, _, entry_id = rest.partition("/")
            if value is None:
                return ("quarantine", (list_name, entry_id), None)
            lift = QuarantineLiftRecord.model_validate_json(value)
            if (lift.list, lift.entry_id) != (list_name, entry_id):
                raise InputRejected("record does not match its key", reason="bad_key")
            return ("quarantine", (list_name, entry_id), lift)
    except ValidationError as exc:
        raise InputRejected(
            f"invalid {kind} record {rest[:80]!r}: {_problem(exc)}", reason="bad_record"
        ) from None
    raise InputRejected(f"unknown hash-list key {text[:80]!r}", reason="bad_key")
