"""Hash-list files load what is valid and report every bad line with its number."""

from __future__ import annotations

import io
import json

import pytest

from pipeline.core.hashlist import (
    DEFAULT_THRESHOLDS,
    Category,
    ListConfig,
    ListKind,
    ManifestError,
    parse_csv,
    parse_entries,
    parse_jsonl,
    parse_manifest,
)
from pipeline.core.types import EXACT_ALGORITHMS, Action, Algorithm
from pipeline.errors import InputRejected

HEADER = "list,entry_id,algorithm,hash,category,source,note\n"
PHASH = "abcdef0123456789"
MD5 = "0" * 31 + "1"


def test_csv_loads_good_lines_and_reports_bad_ones_by_line_number() -> None:
    text = HEADER + "\n".join(
        [
            f"eokm,e1,phash,{PHASH},csam,EOKM,first",  # line 2
            f"eokm,e2,PHASH,0x{PHASH.upper()},csam,EOKM,",  # 3: normalised
            "eokm,e3,phash,xyz,csam,EOKM,",  # 4: bad hash
            f"eokm,e4,ahash,{PHASH},csam,EOKM,",  # 5: unknown algorithm
            f"eokm,e5,md5,{MD5},weapons,EOKM,",  # 6: unknown category
            f"eokm,e1,md5,{MD5},csam,EOKM,",  # 7: duplicate key
            f"bad list!,e6,md5,{MD5},csam,EOKM,",  # 8: bad list name
            f",e7,md5,{MD5},ncii,StopNCII,",  # 9: no list name
            f"eokm,e8,md5,{MD5},terror,,,extra",  # 10: too many fields
        ]
    )
    result = parse_csv(text)
    assert [e.entry_id for e in result.entries] == ["e1", "e2"]
    assert result.entries[1].hash.hex == PHASH
    assert result.entries[0].note == "first"
    assert result.entries[1].note is None
    assert [(e.line, e.reason) for e in result.errors] == [
        (4, "bad_hash"),
        (5, "bad_algorithm"),
        (6, "bad_category"),
        (7, "duplicate"),
        (8, "bad_list"),
        (9, "bad_list"),
        (10, "bad_line"),
    ]


def test_default_list_fills_a_missing_list_column() -> None:
    result = parse_csv("entry_id,algorithm,hash,category\nx,md5," + MD5 + ",ncii\n", "stopncii")
    assert result.entries[0].list_name == "stopncii"
    assert result.entries[0].category is Category.NCII


def test_a_manifest_file_belongs_to_its_list_rows_naming_another_are_refused() -> None:
    text = HEADER + "\n".join(
        [
            f"eokm,e1,md5,{MD5},csam,EOKM,",  # line 2: its own list
            f",e2,md5,{MD5},csam,EOKM,",  # 3: names none: the manifest's
            f"ncmec,e3,md5,{MD5},csam,NCMEC,",  # 4: another list: not split off
        ]
    )
    result = parse_csv(text, only_list="eokm")
    assert [(e.list_name, e.entry_id) for e in result.entries] == [("eokm", "e1"), ("eokm", "e2")]
    assert [(e.line, e.reason) for e in result.errors] == [(4, "list_mismatch")]
    assert "'ncmec'" in result.errors[0].message


def test_invalid_manifest_json_carries_its_line() -> None:
    with pytest.raises(ManifestError, match=r"invalid JSON: .* \(column 12\)") as caught:
        parse_manifest('{"lists": [\n  {"name": "x",\n   "files" []}]}')
    assert (caught.value.line, caught.value.reason) == (3, "bad_manifest")


def test_csv_without_the_required_header_is_one_clear_error() -> None:
    result = parse_csv("a,b,c\n1,2,3\n")
    assert not result.entries
    assert result.errors[0].line == 1
    assert "header lacks" in result.errors[0].message


def test_jsonl_lines() -> None:
    text = "\n".join(
        [
            json.dumps({"list": "iwf", "entry_id": "1", "algorithm": "sha1", "hash": "a" * 40,
                        "category": "csam", "source": "IWF"}),
            "{not json",
            "[1, 2]",
            "",
            json.dumps({"list": "iwf", "entry_id": "2", "algorithm": "sha256", "hash": "b" * 63,
                        "category": "csam"}),
        ]
    )  # fmt: skip
    result = parse_jsonl(text)
    assert [e.hash.algorithm for e in result.entries] == [Algorithm.SHA1]
    assert [(e.line, e.reason) for e in result.errors] == [
        (2, "bad_line"),
        (3, "bad_line"),
        (5, "bad_hash"),
    ]


def test_format_follows_the_file_name() -> None:
    line = json.dumps(
        {"list": "l", "entry_id": "1", "algorithm": "md5", "hash": MD5, "category": "other"}
    )
    assert len(parse_entries(line, "x.jsonl").entries) == 1
    assert len(parse_entries(HEADER + f"l,1,md5,{MD5},other,,\n", "x.csv").entries) == 1


def test_manifest_and_list_config_validation() -> None:
    manifest = {
        "lists": [
            {"name": "eokm", "kind": "deny", "action": "block",
             "thresholds": {"phash": 6}, "version": "2026-11", "files": ["a.csv"]},
            {"name": "fp", "kind": "allow", "files": []},
        ]
    }  # fmt: skip
    lists = parse_manifest(json.dumps(manifest))
    eokm = lists[0].config
    assert (eokm.kind, eokm.action, eokm.version) == (ListKind.DENY, Action.BLOCK, "2026-11")
    assert eokm.threshold(Algorithm.PHASH) == 6
    # Left out, dHash keeps its default rather than silently never matching.
    assert eokm.threshold(Algorithm.DHASH) == DEFAULT_THRESHOLDS[Algorithm.DHASH] == 10
    assert eokm.threshold(Algorithm.MD5) == 0
    assert lists[1].config.kind is ListKind.ALLOW
    assert lists[0].files == ("a.csv",)
    for bad in ["{", "{}", '{"lists": [{"name": "x", "thresholds": {"phash": 99}}]}',
                '{"lists": [{"name": "x", "kind": "maybe"}]}']:  # fmt: skip
        with pytest.raises(InputRejected):
            parse_manifest(bad)


def test_exact_thresholds_cannot_be_loosened() -> None:
    with pytest.raises(InputRejected, match="md5 threshold"):
        ListConfig.create("x", thresholds={"md5": 2})


@pytest.mark.parametrize(
    "config",
    [ListConfig(name="bare"), ListConfig(name="x", thresholds={Algorithm.SHA1: 9})],
    ids=["bare-default", "loosened"],
)
def test_exact_algorithms_match_at_zero_whatever_the_thresholds_hold(config: ListConfig) -> None:
    assert {a: config.threshold(a) for a in EXACT_ALGORITHMS} == dict.fromkeys(EXACT_ALGORITHMS, 0)


@pytest.mark.parametrize("enabled", ["false", "true", 0, 1, None, [], "no"])
def test_enabled_must_be_a_real_boolean(enabled: object) -> None:
    # bool("false") is True: a string that reads as off must not leave the list on.
    manifest = {"lists": [{"name": "x", "enabled": enabled, "files": []}]}
    with pytest.raises(InputRejected, match="enabled must be true or false") as caught:
        parse_manifest(json.dumps(manifest))
    assert caught.value.reason == "bad_list"


@pytest.mark.parametrize("enabled", [True, False])
def test_enabled_booleans_load(enabled: bool) -> None:
    manifest = {"lists": [{"name": "x", "enabled": enabled, "files": []}]}
    assert parse_manifest(json.dumps(manifest))[0].config.enabled is enabled


@pytest.mark.parametrize(
    "thresholds",
    [{"phash": "8"}, {"phash": 8.5}, {"phash": True}, {"phash": None}, {"ahash": 8}, {"phash": -1}],
)
def test_thresholds_must_be_integers_of_known_algorithms(thresholds: object) -> None:
    manifest = {"lists": [{"name": "x", "thresholds": thresholds, "files": []}]}
    with pytest.raises(InputRejected) as caught:
        parse_manifest(json.dumps(manifest))
    assert caught.value.reason == "bad_list"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"name": "x", "threshold": {"phash": 4}, "files": []}, "unknown field"),
        ({"name": "x", "enable": False, "files": []}, "unknown field"),
        ({"name": "x", "thresholds": [4], "files": []}, "thresholds must be an object"),
    ],
)
def test_manifest_typos_are_reported_not_ignored(item: dict[str, object], message: str) -> None:
    with pytest.raises(InputRejected, match=message) as caught:
        parse_manifest(json.dumps({"lists": [item]}))
    assert caught.value.reason == "bad_manifest"


def test_missing_perceptual_thresholds_use_the_defaults() -> None:
    for given_, expected in [
        (None, {Algorithm.PHASH: 8, Algorithm.DHASH: 10}),
        ({}, {Algorithm.PHASH: 8, Algorithm.DHASH: 10}),
        ({"dhash": 4}, {Algorithm.PHASH: 8, Algorithm.DHASH: 4}),
        ({"phash": 0, "dhash": 16}, {Algorithm.PHASH: 0, Algorithm.DHASH: 16}),
    ]:
        config = ListConfig.create("x", thresholds=given_)
        assert {a: config.threshold(a) for a in expected} == expected


def test_jsonl_lines_end_only_at_newlines() -> None:
    # U+2028 is legal inside a JSON string; str.splitlines() used to cut the line there.
    line = json.dumps(
        {"list": "l", "entry_id": "1", "algorithm": "md5", "hash": "0" * 32,
         "category": "other", "note": "a\u2028b"},
        ensure_ascii=False,
    )  # fmt: skip
    result = parse_entries(io.StringIO(line + "\r\n" + line.replace('"1"', '"2"')), "x.jsonl")
    assert [(e.entry_id, e.note) for e in result.entries] == [("1", "a\u2028b"), ("2", "a\u2028b")]
    assert result.errors == ()
