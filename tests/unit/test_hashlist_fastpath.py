"""The fast decoder of ``hashlists`` entry records accepts exactly what the model accepts.

:func:`pipeline.adapters.hashlist_topic.parse_hashlist_record` decodes entry records with a
msgspec struct and falls back to the pydantic model only when the struct refuses one. So the
struct must never accept what the model refuses, and must give the same entry when both accept;
and the fallback must keep the model's messages. Checked on generated records that mix valid
fields with the near misses the model refuses (wrong types, lengths, patterns, extra fields).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.adapters.hashlist_topic import (
    _ENTRY_DECODER,
    entry_key,
    fast_entry,
    parse_hashlist_record,
    to_core_entry,
)
from pipeline.core.hashlist import Category, HashListEntry
from pipeline.core.types import Algorithm
from pipeline.errors import InputRejected
from pipeline.models import HashListEntryRecord

NAMES = st.sampled_from(["eokm", "a.b:c-d_e", "x" * 128, "x" * 129, "", "bad name", "eokm\n", 7])
IDS = st.one_of(
    st.sampled_from(["e1", "x" * 256, "x" * 257, "", "é" * 200, None, 12, True]),
    st.text(max_size=300),
)
ALGORITHMS = st.one_of(
    st.sampled_from([a.value for a in Algorithm]),
    st.sampled_from(["PHASH", "md4", "", 1, None]),
)
HASHES = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEFx +_", min_size=14, max_size=68),
    st.sampled_from(["0" * 16, "0x" + "f" * 16, " " + "a" * 16 + " ", "f" * 64, 123, None]),
)
CATEGORIES = st.one_of(st.sampled_from([c.value for c in Category]), st.sampled_from(["CSAM", 3]))
TEXTS = st.one_of(st.none(), st.text(max_size=1100), st.integers(), st.booleans())
VERSIONS = st.sampled_from([1, 1.0, "1", 2, True, None])

OPTIONAL = object()


@st.composite
def entry_fields(draw: st.DrawFn) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "list": draw(NAMES),
        "entry_id": draw(IDS),
        "algorithm": draw(ALGORITHMS),
        "hash": draw(HASHES),
        "category": draw(CATEGORIES),
    }
    for name, values in (("source", TEXTS), ("note", TEXTS), ("schema_version", VERSIONS)):
        if draw(st.booleans()):
            fields[name] = draw(values)
    if draw(st.integers(0, 9)) == 0:
        fields["extra"] = 1
    if draw(st.integers(0, 9)) == 0:
        del fields[draw(st.sampled_from(sorted(fields)))]
    return fields


def model_outcome(value: bytes) -> HashListEntryRecord | None:
    try:
        return HashListEntryRecord.model_validate_json(value)
    except ValidationError:
        return None


def reference_parse(key: bytes, value: bytes) -> tuple[str, Any]:
    """What parsing gave with the model alone (the behaviour before the fast path)."""
    try:
        record = HashListEntryRecord.model_validate_json(value)
        return ("ok", to_core_entry(record))
    except ValidationError:
        return ("rejected", None)
    except InputRejected as exc:
        return ("rejected", exc.reason)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entry_fields())
def test_the_fast_decoder_never_accepts_what_the_model_refuses(fields: dict[str, Any]) -> None:
    value = json.dumps(fields).encode()
    model = model_outcome(value)
    try:
        fast = _ENTRY_DECODER.decode(value)
    except msgspec.DecodeError:
        fast = None
    if fast is not None:
        assert model is not None, f"fast path accepted what the model refuses: {fields!r}"
        assert msgspec.structs.asdict(fast) == model.model_dump()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entry_fields())
def test_parsing_gives_what_the_model_alone_gave(fields: dict[str, Any]) -> None:
    name, entry_id = fields.get("list"), fields.get("entry_id")
    key = entry_key(str(name), str(entry_id)).encode()
    value = json.dumps(fields).encode()
    expected = reference_parse(key, value)
    try:
        _, _, entry = parse_hashlist_record(key, value)
    except InputRejected:
        assert expected[0] == "rejected" or expected[1].key != (str(name), str(entry_id))
        return
    assert expected == ("ok", entry)


def good(**fields: Any) -> dict[str, Any]:
    return {
        "list": "eokm",
        "entry_id": "e1",
        "algorithm": "phash",
        "hash": "0123456789abcdef",
        "category": "csam",
        **fields,
    }


@pytest.mark.parametrize(
    "fields",
    [
        good(),
        good(source="hotline", note="seen 2026"),
        good(note=None, schema_version=1),
        good(algorithm="pdq", hash="ab" * 32),
        good(hash="0x0123456789ABCDEF"),
        good(entry_id="é" * 256),
    ],
)
def test_ordinary_records_take_the_fast_path(fields: dict[str, Any]) -> None:
    # Not vacuous: what producers write is decoded by the struct, not by the fallback.
    _ENTRY_DECODER.decode(json.dumps(fields).encode())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (good(schema_version=2), "schema_version: "),
        (good(list="eokm\n"), "list: String should match pattern"),
        (good(extra=1), "extra: Extra inputs are not permitted"),
        (good(category="CSAM"), "category: Input should be"),
    ],
)
def test_a_refused_record_keeps_the_models_message(fields: dict[str, Any], message: str) -> None:
    key = entry_key(str(fields["list"]), "e1").encode()
    with pytest.raises(InputRejected, match="invalid entry record") as caught:
        parse_hashlist_record(key, json.dumps(fields).encode())
    assert caught.value.reason == "bad_record"
    assert message in str(caught.value), str(caught.value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entry_fields(), st.sampled_from(["same", "other-list", "other-id", "bad-key"]))
def test_the_bulk_path_gives_what_parsing_gives(fields: dict[str, Any], key_kind: str) -> None:
    name, entry_id = str(fields.get("list")), str(fields.get("entry_id"))
    key = {
        "same": entry_key(name, entry_id),
        "other-list": entry_key(name + "x", entry_id),
        "other-id": entry_key(name, entry_id + "x"),
        "bad-key": f"entry/{name}",
    }[key_kind].encode()
    value = json.dumps(fields).encode()
    fast = fast_entry(key, value)
    if fast is None:
        return  # parse_hashlist_record decides: the other tests cover it
    _, _, entry = parse_hashlist_record(key, value)
    assert isinstance(entry, HashListEntry)
    assert fast == (
        entry.list_name,
        entry.entry_id,
        entry.hash.algorithm,
        entry.hash.value,
        entry.category,
    )


def test_the_bulk_path_takes_ordinary_records_and_leaves_the_rest() -> None:
    value = json.dumps(good()).encode()
    assert fast_entry(b"entry/eokm/e1", value) == (
        "eokm",
        "e1",
        Algorithm.PHASH,
        0x0123456789ABCDEF,
        Category.CSAM,
    )
    assert fast_entry(b"entry/eokm/e2", value) is None  # the key names another entry
    assert fast_entry(b"entry/eokm/e1", None) is None  # a retraction
    assert fast_entry(b"list/eokm", value) is None
    assert fast_entry(b"entry/eokm/e1", json.dumps(good(hash="0123")).encode()) is None
