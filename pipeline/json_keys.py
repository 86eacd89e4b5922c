"""Keys given twice in one JSON object: found cheaply on the hot path, named when they are.

Owns the check that an upload event names each key once (a duplicated ``upload_id`` is ambiguous:
parsers disagree on which value counts). Every event is parsed on the hot path and inline events
carry ~200 KB of base64, so :func:`repeated_key` first rules repeats out with a byte scan and
parses a second time only when the scan cannot decide. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any


class JsonObject(dict[str, Any]):
    """A JSON object as :func:`load_json_noting_repeats` parses it: the last value of a key
    that repeats wins (as in pydantic's parser), and ``repeated`` names such keys."""

    repeated: frozenset[str] = frozenset()


def load_json_noting_repeats(raw: bytes) -> Any:
    """``json.loads`` with every object a :class:`JsonObject`. Raises ValueError (not JSON)
    or RecursionError (nested deeper than Python's parser goes)."""

    def object_from(pairs: list[tuple[str, Any]]) -> JsonObject:
        parsed = JsonObject(pairs)
        if len(parsed) != len(pairs):
            counts = Counter(name for name, _ in pairs)
            parsed.repeated = frozenset(name for name, n in counts.items() if n > 1)
        return parsed

    return json.loads(raw, object_pairs_hook=object_from)


#: Most strings, and escapes, the quick scan in :func:`_keys_may_repeat` looks at before
#: leaving the question to a full parse; an upload event has a dozen or so strings.
_MAX_SCANNED_STRINGS = 256
_MAX_SCANNED_ESCAPES = 256
#: Whitespace the quick scan reads after a string to tell a key (":" follows) from a value.
_MAX_SCANNED_BLANKS = 64


def _quotes_only_delimit(raw: bytes) -> bool:
    """Whether every ``"`` byte in ``raw`` opens or closes a string: true when no escape is
    ``\\"`` (a quote inside a string) or ``\\\\`` (an escaped backslash, which could stand just
    before a closing quote). Escapes like ``\\u00e9`` (Python's json.dumps writes them for any
    non-ASCII text) leave the quotes alone."""
    escape = raw.find(b"\\")
    for _ in range(_MAX_SCANNED_ESCAPES):
        if escape < 0:
            return True
        if raw[escape + 1 : escape + 2] in (b'"', b"\\"):
            return False
        escape = raw.find(b"\\", escape + 2)
    return escape < 0


def _keys_may_repeat(raw: bytes) -> bool:
    """False only if no key can occur twice in one object of ``raw``, JSON that parsed.

    Sound without parsing: when quotes only delimit strings, they open and close strings in
    turn and a string followed by ":" is a key; a key without escapes has one spelling, its
    bytes (one with an escape has two, "upload_id" and "upload\\u005fid", so the scan gives
    up). Cheap where it matters: ``bytes.find`` crosses an inline upload's base64 (hundreds of
    KB, no quotes or backslashes) in one memchr. Anything the scan cannot settle (such
    escapes, many strings, long whitespace) answers True, leaving it to the full parse.
    """
    if not _quotes_only_delimit(raw):
        return True
    keys: set[bytes] = set()
    closing = -1
    for _ in range(_MAX_SCANNED_STRINGS):
        opening = raw.find(b'"', closing + 1)
        if opening < 0:
            return False
        closing = raw.find(b'"', opening + 1)
        if closing < 0:
            return True
        after = raw[closing + 1 : closing + 1 + _MAX_SCANNED_BLANKS]
        following = after.lstrip(b" \t\r\n")
        if not following and len(after) == _MAX_SCANNED_BLANKS:
            return True
        if following[:1] == b":":
            key = raw[opening + 1 : closing]
            if key in keys or b"\\" in key:
                return True
            keys.add(key)
    return True


def repeated_key(raw: bytes) -> str | None:
    """A key that occurs twice in one object of ``raw`` (at any depth), or None. For JSON that
    already parsed. Parsers disagree on which copy counts (pydantic's takes the last), so an
    event with one is invalid rather than silently resolved. Every event pays this on the hot
    path, so a quick scan (about 1.5 us a string, a fraction of pydantic's parse of a 200 KB
    inline event) rules repeats out; a second, full parse (about twice pydantic's) runs only
    when it cannot: a repeat, an escaped quote, backslash or key, or hundreds of escapes (an
    encoder that writes every ``/`` of the base64 as ``\\/``).
    """
    if not _keys_may_repeat(raw):
        return None
    found: list[str] = []

    def note_repeats(value: Any) -> None:
        # Iterative: the event parsed, but nothing here should rely on its depth.
        stack = [value]
        while stack and not found:
            node = stack.pop()
            if isinstance(node, JsonObject):
                found.extend(sorted(node.repeated))
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)

    try:
        note_repeats(load_json_noting_repeats(raw))
    except (ValueError, RecursionError):  # not JSON after all: the schema check refuses it
        return None
    return found[0] if found else None
