"""Hash lists: entries, list policy, and parsing of the files hotlines and platforms exchange.

Owns the normalisation rules. An entry is (list, entry id, algorithm + hash, category, source,
note); a list has a kind (deny or allow), an action (block or review), a Hamming threshold per
perceptual algorithm, a version and an enabled flag. A perceptual algorithm a list's
thresholds leave out gets the default (pHash 8, dHash 10, PDQ 31), exactly as when a list names no
thresholds at all: entries of that algorithm on the list match at the default rather than
never. Thresholds are capped (:func:`max_threshold`: pHash and dHash at most
:data:`MAX_THRESHOLD_64`, PDQ at most :data:`PDQ_MAX_THRESHOLD`), so no policy can make a list
match unrelated pictures wholesale. PDQ entries are 64 hex digits (256 bits), default threshold
31 (the convention of HMA and ThreatExchange); PDQ hashes of quality below
:data:`PDQ_MIN_QUALITY` are never matched.
Policy values are checked strictly (``enabled`` must be a JSON boolean, thresholds
integers, not ``"8"``, ``8.0`` or ``true``): a typo is a reported error, never a silently
different policy. The ``hashlists`` topic's config records follow the same rules. Parsers take text
and return every good entry plus every bad line with its line number and reason: one bad line
never stops a load. A file a manifest loads into a list belongs to that list: a row naming
another is a bad line (``list_mismatch``), not an entry of a list the manifest gives no policy.
Formats: CSV with a header ``list,entry_id,algorithm,hash,category,source,note``, JSON Lines
with the same field names, and a JSON manifest naming lists, their policy and their files.

A **vPDQ entry** (algorithm ``vpdq``: a whole video's hash, one PDQ hash a second, the format
of HMA and ThreatExchange video lists) is a row of either format too (:class:`VpdqEntry`): in
JSON Lines its frames are ``"frames": [[pdq_hex, quality, seconds], ...]`` (64 hex digits, a
JSON integer 0-100, a JSON number >= 0; nothing coerced), in CSV (and, as an alternative, in
JSON Lines) its ``hash`` is ThreatExchange's vPDQ signal text, a JSON list of
``"pdq_hex,quality,seconds"`` strings. At most :data:`VPDQ_MAX_FRAMES` frames, at least one.

Must not open files (callers pass text or lines) or know about Kafka.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pipeline.core.types import LIST_ACTIONS, Action, Algorithm, HashValue, hex_value
from pipeline.errors import InputRejected

CSV_FIELDS = ("list", "entry_id", "algorithm", "hash", "category", "source", "note")
#: ``\Z``, not ``$``: ``$`` also matches before a final newline ("a\n" would pass).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,128}\Z")

#: The only distance at which an exact digest (MD5, SHA-1, SHA-256) matches, on every list.
#: A digest names byte-identical content; a list's config cannot loosen or switch it off (one
#: whose thresholds name no digest, like a bare file's default, still matches its digests).
#: A list with no config at all matches nothing, digests included: the matcher holds its
#: entries until a config says what kind of list it is and what a match asks for.
EXACT_THRESHOLD = 0

#: Thresholds a list gets when its file says nothing (bits of Hamming distance; pHash and dHash
#: have 64 bits, PDQ 256: 31 is the threshold HMA, ThreatExchange and StopNCII use for PDQ).
DEFAULT_THRESHOLDS: Mapping[Algorithm, int] = MappingProxyType(
    {Algorithm.PHASH: 8, Algorithm.DHASH: 10, Algorithm.PDQ: 31}
)

#: The largest pHash or dHash threshold a list may set (bits of 64). Unrelated pictures' 64-bit
#: hashes sit ~32 bits apart (about half the bits differ, spread ~4 bits), so a threshold near
#: 32 matches about every other upload, and 64 matches every one: a single config record with
#: ``action: block`` would block everything. At 16 even ideal, uniformly spread hashes collide
#: by chance once in ~26,000 comparisons per entry (real hashes cluster, so more often), and
#: ``pipeline bench quality`` already finds false matches at dHash 10; 16 leaves room above the
#: defaults (8, 10) for a list that trades false matches for recall, and refuses anything that
#: cannot mean "the same picture".
MAX_THRESHOLD_64 = 16

#: The largest PDQ threshold a list may set. Unrelated pictures' PDQ hashes sit ~128 bits apart
#: (each bit is above or below a median: close to a coin flip for unrelated content, so ~8 bits
#: of spread), and ThreatExchange recommends 31. 63, a quarter of the bits, leaves a list room
#: to trade false matches for recall while refusing a typo such as 128 (half of all bits, where
#: about half of all unrelated uploads would match). Search stays exact at any allowed radius,
#: only slower (the index falls back to a scan where multi-index hashing stops paying).
PDQ_MAX_THRESHOLD = 63

#: PDQ's own quality score (0-100, from the picture's gradients) below which an upload's PDQ
#: hash is never matched: flat or nearly flat pictures get hashes made of noise that match
#: arbitrary entries. 50 is the floor HMA and ThreatExchange apply.
PDQ_MIN_QUALITY = 50


def max_threshold(algorithm: Algorithm) -> int:
    """The largest threshold a list may set for ``algorithm`` (:data:`EXACT_THRESHOLD` for a
    digest, :data:`MAX_THRESHOLD_64` for pHash and dHash, :data:`PDQ_MAX_THRESHOLD` for PDQ)."""
    if not algorithm.is_perceptual:
        return EXACT_THRESHOLD
    return PDQ_MAX_THRESHOLD if algorithm is Algorithm.PDQ else MAX_THRESHOLD_64


class Category(enum.StrEnum):
    """What kind of content a list entry is (bounded: used as a metric label)."""

    CSAM = "csam"
    TERROR = "terror"
    NCII = "ncii"
    OTHER = "other"


class ListKind(enum.StrEnum):
    """Deny lists produce matches; allow lists suppress them (known false positives)."""

    DENY = "deny"
    ALLOW = "allow"


def _list_action(value: Action | str) -> Action:
    """A list's action: ``block`` or ``review`` (ValueError for anything else, ``allow`` and
    ``error`` included: a deny list cannot ask for those)."""
    action = Action(value)
    if action not in LIST_ACTIONS:
        raise ValueError(f"a list's action is block or review, not {action}")
    return action


@dataclass(frozen=True, slots=True)
class HashListEntry:
    """One known hash on one list."""

    list_name: str
    entry_id: str
    hash: HashValue
    category: Category
    source: str = ""
    note: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(list, entry id): unique across all lists."""
        return (self.list_name, self.entry_id)


@dataclass(frozen=True, slots=True)
class ListConfig:
    """A list's policy. Exact algorithms always match at :data:`EXACT_THRESHOLD` only, whatever
    ``thresholds`` holds; a perceptual algorithm missing from ``thresholds`` uses
    :data:`DEFAULT_THRESHOLDS` (via :meth:`create`)."""

    name: str
    kind: ListKind = ListKind.DENY
    action: Action = Action.REVIEW
    thresholds: Mapping[Algorithm, int] = field(default_factory=lambda: DEFAULT_THRESHOLDS)
    enabled: bool = True
    version: str = "1"

    @classmethod
    def create(
        cls,
        name: str,
        *,
        kind: ListKind | str = ListKind.DENY,
        action: Action | str = Action.REVIEW,
        thresholds: Mapping[Algorithm, int] | Mapping[str, int] | None = None,
        enabled: bool = True,
        version: str = "1",
    ) -> ListConfig:
        """Validated constructor: perceptual algorithms left out of ``thresholds`` get the
        default. Raises InputRejected (reason ``bad_list``) for a bad name, kind, action,
        algorithm, a threshold that is not an int in range, or ``enabled`` not a bool."""
        if not NAME_PATTERN.match(name):
            raise InputRejected(f"invalid list name {name!r}", reason="bad_list")
        # bool("false") is True: anything but a real boolean is refused, not coerced.
        if not isinstance(enabled, bool):
            raise InputRejected(
                f"list {name!r}: enabled must be true or false, got {enabled!r}", reason="bad_list"
            )
        try:
            parsed: dict[Algorithm, int] = {}
            for alg, bits in (thresholds or {}).items():
                if isinstance(bits, bool) or not isinstance(bits, int):
                    raise ValueError(f"threshold for {alg} must be an integer, got {bits!r}")
                parsed[Algorithm(str(alg))] = bits
            config = cls(
                name=name,
                kind=ListKind(kind),
                action=_list_action(action),
                thresholds=MappingProxyType(
                    {
                        **{a: EXACT_THRESHOLD for a in Algorithm if not a.is_perceptual},
                        **DEFAULT_THRESHOLDS,
                        **parsed,
                    }
                ),
                enabled=enabled,
                version=str(version),
            )
        except ValueError as exc:
            raise InputRejected(f"list {name!r}: {exc}", reason="bad_list") from None
        for alg, bits in config.thresholds.items():
            limit = max_threshold(alg)
            if not 0 <= bits <= limit:
                raise InputRejected(
                    f"list {name!r}: {alg} threshold must be in [0, {limit}], got {bits}",
                    reason="bad_list",
                )
        return config

    def threshold(self, algorithm: Algorithm) -> int | None:
        """Max distance that matches for ``algorithm``: :data:`EXACT_THRESHOLD` for an exact
        digest on every list; for a perceptual one, its threshold, or None when the list does
        not use it."""
        if not algorithm.is_perceptual:
            return EXACT_THRESHOLD
        return self.thresholds.get(algorithm)


#: The most frames a vPDQ entry may carry: two hours at vPDQ's one hash a second. Bounds the
#: record (~100 bytes a frame on the wire: 720 kB at the cap, under the broker's 1 MB) and the
#: comparison cost per upload.
VPDQ_MAX_FRAMES = 7200

#: The name lists and the wire give a vPDQ (whole-video) entry's algorithm.
VPDQ_ALGORITHM = "vpdq"


@dataclass(frozen=True, slots=True)
class CompactFeature:
    """One frame of a vPDQ hash as lists carry it: PDQ hash, quality (0-100), seconds."""

    pdq: int
    quality: int
    seconds: float

    def __str__(self) -> str:
        # python-threatexchange's VpdqCompactFeature.__str__ (3 significant digits of time).
        return f"{self.pdq:064x},{self.quality},{self.seconds:.3}"


@dataclass(frozen=True, slots=True)
class VpdqEntry:
    """One listed video on one list: its vPDQ frames (the key space is shared with
    :class:`HashListEntry`: (list, entry id) names one entry of either kind)."""

    list_name: str
    entry_id: str
    frames: tuple[CompactFeature, ...]
    category: Category
    source: str = ""
    note: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(list, entry id)."""
        return (self.list_name, self.entry_id)


def _pdq_hex(value: object) -> int:
    if not isinstance(value, str):
        raise ValueError(f"a frame's PDQ hash must be a string, got {type(value).__name__}")
    parsed = hex_value(Algorithm.PDQ, value)
    if parsed is None:
        raise ValueError(f"a frame's PDQ hash must be 64 hex digits, got {value[:80]!r}")
    return parsed


def vpdq_frame(item: object) -> CompactFeature:
    """One frame of the compact wire form ``[pdq_hex, quality, seconds]``, strictly: quality a
    JSON integer 0-100 (not ``"80"``, ``80.0`` or ``true``), seconds a finite number >= 0.
    Raises ValueError naming the fault."""
    if not isinstance(item, list | tuple) or len(item) != 3:
        raise ValueError(f"a frame is [pdq_hex, quality, seconds], got {str(item)[:80]!r}")
    pdq, quality, seconds = item
    if isinstance(quality, bool) or not isinstance(quality, int) or not 0 <= quality <= 100:
        raise ValueError(f"a frame's quality must be an integer 0-100, got {quality!r}")
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 <= seconds < float("inf")
    ):
        raise ValueError(f"a frame's seconds must be a number >= 0, got {seconds!r}")
    return CompactFeature(_pdq_hex(pdq), quality, float(seconds))


def vpdq_frames(frames: object) -> tuple[CompactFeature, ...]:
    """A vPDQ entry's frames from the compact form (a list of ``[pdq_hex, quality,
    seconds]``), between 1 and :data:`VPDQ_MAX_FRAMES` of them; raises ValueError."""
    if not isinstance(frames, list | tuple):
        raise ValueError("frames must be a list of [pdq_hex, quality, seconds]")
    if not 1 <= len(frames) <= VPDQ_MAX_FRAMES:
        raise ValueError(f"a vPDQ entry has 1 to {VPDQ_MAX_FRAMES} frames, got {len(frames)}")
    return tuple(vpdq_frame(item) for item in frames)


def parse_vpdq(text: str) -> tuple[CompactFeature, ...]:
    """A vPDQ hash in python-threatexchange's signal format: a JSON list of
    ``"<64 hex digits>,<quality>,<seconds>"`` strings. Raises ValueError naming the first
    malformed feature (a wrong hex length, quality outside 0-100, negative time)."""
    try:
        loaded = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise ValueError(f"a vPDQ hash is a JSON list: {exc.msg}") from None
    if not isinstance(loaded, list) or not all(isinstance(item, str) for item in loaded):
        raise ValueError("a vPDQ hash is a JSON list of 'hex,quality,seconds' strings")
    if len(loaded) > VPDQ_MAX_FRAMES:
        raise ValueError(f"a vPDQ entry has 1 to {VPDQ_MAX_FRAMES} frames, got {len(loaded)}")
    features = []
    for item in loaded:
        parts = item.split(",")
        if len(parts) != 3 or hex_value(Algorithm.PDQ, parts[0]) is None:
            raise ValueError(f"invalid vPDQ feature {item[:100]!r}")
        try:
            feature = CompactFeature(int(parts[0], 16), int(parts[1]), float(parts[2]))
        except ValueError:
            raise ValueError(f"invalid vPDQ feature {item[:100]!r}") from None
        if not 0 <= feature.quality <= 100 or not 0 <= feature.seconds < float("inf"):
            raise ValueError(f"invalid vPDQ feature {item[:100]!r}")
        features.append(feature)
    return tuple(features)


@dataclass(frozen=True, slots=True)
class LineError:
    """A line that was skipped, and why (1-based line numbers, as editors show them)."""

    line: int
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Entries that loaded and lines that did not (vPDQ entries apart, in ``videos``)."""

    entries: tuple[HashListEntry, ...]
    errors: tuple[LineError, ...]
    videos: tuple[VpdqEntry, ...] = ()


def _category(text: str) -> Category:
    try:
        return Category(text)
    except ValueError:
        raise InputRejected(f"unknown category {text!r}", reason="bad_category") from None


def _vpdq_entry(
    fields: Mapping[str, Any], list_name: str, entry_id: str, category_text: str
) -> VpdqEntry:
    """A ``vpdq`` row: frames from ``frames`` (compact form) or ``hash`` (ThreatExchange's
    signal text), exactly one of them."""
    frames, text = fields.get("frames"), fields.get("hash")
    try:
        if (frames is None) == (text in (None, "")):
            raise ValueError("a vpdq row has either frames or hash (ThreatExchange's text)")
        if frames is not None:
            features = vpdq_frames(frames)
        else:
            if not isinstance(text, str):
                raise ValueError("a vpdq hash is ThreatExchange's vPDQ text (a string)")
            features = parse_vpdq(text)
            if not features:
                raise ValueError(f"a vPDQ entry has 1 to {VPDQ_MAX_FRAMES} frames, got 0")
    except ValueError as exc:
        raise InputRejected(f"vpdq entry {entry_id!r}: {exc}", reason="bad_hash") from None
    note = fields.get("note")
    return VpdqEntry(
        list_name=list_name,
        entry_id=entry_id,
        frames=features,
        category=_category(category_text),
        source=str(fields.get("source") or "").strip()[:256],
        note=str(note).strip()[:1000] if note not in (None, "") else None,
    )


def entry_from_fields(
    fields: Mapping[str, Any], default_list: str | None = None, *, only_list: str | None = None
) -> HashListEntry | VpdqEntry:
    """Build one normalised entry from a row's fields; raises InputRejected with a reason.

    A row that names no list gets ``only_list``, else ``default_list``. ``only_list`` is the
    list a manifest loads the file into: a row naming another list is refused (reason
    ``list_mismatch``), since loading it under its own name would silently split the file off
    into a list the manifest gives no policy."""
    named = str(fields.get("list") or "").strip()
    if only_list is not None and named not in ("", only_list):
        raise InputRejected(
            f"row names list {named!r} but the manifest loads this file as list {only_list!r}",
            reason="list_mismatch",
        )
    list_name = named or only_list or default_list or ""
    if not list_name:
        raise InputRejected("the row names no list (no `list` value or column)", reason="bad_list")
    if not NAME_PATTERN.match(list_name):
        raise InputRejected(f"invalid list name {list_name!r}", reason="bad_list")
    entry_id = str(fields.get("entry_id") or "").strip()
    if not entry_id or len(entry_id) > 256:
        raise InputRejected("entry_id is missing or longer than 256", reason="bad_entry_id")
    algorithm_text = str(fields.get("algorithm") or "").strip().lower()
    category_text = str(fields.get("category") or "").strip().lower()
    if algorithm_text == VPDQ_ALGORITHM:
        return _vpdq_entry(fields, list_name, entry_id, category_text)
    try:
        algorithm = Algorithm(algorithm_text)
    except ValueError:
        raise InputRejected(
            f"unknown algorithm {algorithm_text!r}", reason="bad_algorithm"
        ) from None
    value = HashValue.from_hex(algorithm, str(fields.get("hash") or ""))
    try:
        category = Category(category_text)
    except ValueError:
        raise InputRejected(f"unknown category {category_text!r}", reason="bad_category") from None
    note = fields.get("note")
    return HashListEntry(
        list_name=list_name,
        entry_id=entry_id,
        hash=value,
        category=category,
        source=str(fields.get("source") or "").strip()[:256],
        note=str(note).strip()[:1000] if note not in (None, "") else None,
    )


def _collect(
    rows: Iterable[tuple[int, Mapping[str, Any] | None, str | None]],
    default_list: str | None,
    only_list: str | None,
) -> ParseResult:
    entries: list[HashListEntry] = []
    videos: list[VpdqEntry] = []
    errors: list[LineError] = []
    seen: dict[tuple[str, str], int] = {}
    for line, fields, problem in rows:
        if fields is None:
            errors.append(LineError(line, "bad_line", problem or "unreadable line"))
            continue
        try:
            entry = entry_from_fields(fields, default_list, only_list=only_list)
        except InputRejected as exc:
            errors.append(LineError(line, exc.reason, str(exc)))
            continue
        if entry.key in seen:
            errors.append(
                LineError(
                    line, "duplicate", f"entry {entry.entry_id!r} repeats line {seen[entry.key]}"
                )
            )
            continue
        seen[entry.key] = line
        if isinstance(entry, VpdqEntry):
            videos.append(entry)
        else:
            entries.append(entry)
    return ParseResult(tuple(entries), tuple(errors), tuple(videos))


#: Text, or its lines with their line endings (an open text file: lets callers stream a large
#: file and watch progress instead of reading it whole first).
Source = str | Iterable[str]


def _lines(source: Source) -> Iterable[str]:
    # newline="": keep "\r\n" inside each line for csv, which handles quoted newlines itself.
    return io.StringIO(source, newline="") if isinstance(source, str) else source


def _csv_rows(source: Source) -> Iterator[tuple[int, Mapping[str, Any] | None, str | None]]:
    reader = csv.DictReader(_lines(source))
    missing = {"entry_id", "algorithm", "hash", "category"} - set(reader.fieldnames or ())
    if missing:
        yield (1, None, f"header lacks {sorted(missing)}; expected {','.join(CSV_FIELDS)}")
        return
    for row in reader:
        if None in row:
            yield (reader.line_num, None, "more fields than the header")
            continue
        yield (reader.line_num, row, None)


def parse_csv(
    source: Source, default_list: str | None = None, *, only_list: str | None = None
) -> ParseResult:
    """Entries from CSV with a header row (column ``list`` may be left out: see
    :func:`entry_from_fields` for ``default_list`` and ``only_list``)."""
    return _collect(_csv_rows(source), default_list, only_list)


def _jsonl_rows(source: Source) -> Iterator[tuple[int, Mapping[str, Any] | None, str | None]]:
    # Lines end at "\n" (JSON Lines' rule; a "\r" before it is whitespace to json.loads), so
    # a U+2028 inside a JSON string does not split its line as str.splitlines() would.
    for number, raw in enumerate(_lines(source), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield (number, None, f"invalid JSON: {exc.msg}")
            continue
        if not isinstance(value, dict):
            yield (number, None, "a line must be a JSON object")
            continue
        yield (number, value, None)


def parse_jsonl(
    source: Source, default_list: str | None = None, *, only_list: str | None = None
) -> ParseResult:
    """Entries from JSON Lines (one object per line, the CSV's field names)."""
    return _collect(_jsonl_rows(source), default_list, only_list)


def parse_entries(
    source: Source, name: str, default_list: str | None = None, *, only_list: str | None = None
) -> ParseResult:
    """Parse by file name: ``.jsonl``/``.ndjson`` as JSON Lines, anything else as CSV.

    ``source`` is the text or an iterable of its lines (line endings kept), e.g. an open file.
    """
    if name.lower().endswith((".jsonl", ".ndjson")):
        return parse_jsonl(source, default_list, only_list=only_list)
    return parse_csv(source, default_list, only_list=only_list)


class ManifestError(InputRejected):
    """A manifest that cannot be used. ``line`` (1-based) is where the fault is, when the
    document has one to give (invalid JSON), so the caller can name the file and the line."""

    reason = "bad_manifest"

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True, slots=True)
class ManifestList:
    """One list of a manifest: its policy and the entry files (paths as written)."""

    config: ListConfig
    files: tuple[str, ...]


#: The fields a manifest's list may have (the hashlists topic's config record, plus files).
MANIFEST_FIELDS = frozenset({"name", "kind", "action", "thresholds", "enabled", "version", "files"})


def parse_manifest(text: str) -> tuple[ManifestList, ...]:
    """Lists from a manifest: ``{"lists": [{"name", "kind", "action", "thresholds",
    "enabled", "version", "files": [...]}]}``. Raises :class:`ManifestError` (reason
    ``bad_manifest``, with the line for invalid JSON) for a malformed document or an unknown
    field (a misspelt ``thresholds`` would otherwise leave the defaults in force), and
    InputRejected (reason ``bad_list``) for a bad policy value."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"invalid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno
        ) from None
    lists = document.get("lists") if isinstance(document, dict) else None
    if not isinstance(lists, list) or not lists:
        raise ManifestError("manifest needs a non-empty 'lists' array")
    out: list[ManifestList] = []
    for position, item in enumerate(lists):
        if not isinstance(item, dict) or not isinstance(item.get("files", []), list):
            raise ManifestError(f"lists[{position}] must be an object whose 'files' is an array")
        unknown = sorted(set(item) - MANIFEST_FIELDS)
        if unknown:
            raise ManifestError(
                f"list {item.get('name')!r}: unknown field(s) {unknown}; "
                f"known: {sorted(MANIFEST_FIELDS)}"
            )
        thresholds = item.get("thresholds")
        if thresholds is not None and not isinstance(thresholds, dict):
            raise ManifestError(f"list {item.get('name')!r}: thresholds must be an object")
        config = ListConfig.create(
            str(item.get("name", "")),
            kind=item.get("kind", ListKind.DENY),
            action=item.get("action", Action.REVIEW),
            thresholds=thresholds,
            enabled=item.get("enabled", True),
            version=str(item.get("version", "1")),
        )
        out.append(ManifestList(config, tuple(str(f) for f in item.get("files", []))))
    return tuple(out)
