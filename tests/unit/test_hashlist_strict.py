"""A list's policy is validated as strictly on the ``hashlists`` topic as in a manifest, with
thresholds capped; every refused record is counted against what it was about; and entries of
a list with no config are held, visibly, until it arrives."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pipeline.adapters.hashlist_topic import (
    RECORD_KINDS,
    encode_vpdq,
    entry_key,
    list_key,
    parse_hashlist_record,
    quarantine_key,
    record_kind,
    vpdq_key,
)
from pipeline.adapters.listfiles import load_paths
from pipeline.core.hashlist import (
    MAX_THRESHOLD_64,
    PDQ_MAX_THRESHOLD,
    VPDQ_MAX_FRAMES,
    Category,
    CompactFeature,
    HashListEntry,
    ListConfig,
    VpdqEntry,
    max_threshold,
    parse_manifest,
)
from pipeline.core.matching import Matcher
from pipeline.core.matching import Operation as MatcherOperation
from pipeline.core.types import Action, Algorithm, HashValue
from pipeline.core.videomatch import format_vpdq
from pipeline.errors import InputRejected
from pipeline.hashlist_feed import MatcherTarget
from pipeline.health import WorkerHealth
from pipeline.metrics import LIST_OPERATIONS, LIST_UPDATE_OUTCOMES, PipelineMetrics


def config_value(**fields: object) -> bytes:
    return json.dumps({"name": "eokm", "action": "block", **fields}).encode()


def decode_config(**fields: object) -> ListConfig:
    kind, name, config = parse_hashlist_record(list_key("eokm").encode(), config_value(**fields))
    assert (kind, name) == ("list", "eokm")
    assert isinstance(config, ListConfig)
    return config


def manifest_config(**fields: object) -> ListConfig:
    item = {"name": "eokm", "action": "block", "files": [], **fields}
    return parse_manifest(json.dumps({"lists": [item]}))[0].config


# Each was coerced and applied before: "no" and 0 as off, "yes" as on, true as a threshold of 1,
# "8" and 8.0 as 8. Each is a typo or a producer bug whose meaning nobody can know.
COERCIONS = {
    "enabled-no": ({"enabled": "no"}, "enabled", "str 'no'"),
    "enabled-0": ({"enabled": 0}, "enabled", "int 0"),
    "enabled-1": ({"enabled": 1}, "enabled", "int 1"),
    "enabled-yes": ({"enabled": "yes"}, "enabled", "str 'yes'"),
    "enabled-false-text": ({"enabled": "false"}, "enabled", "str 'false'"),
    "enabled-null": ({"enabled": None}, "enabled", "NoneType None"),
    "phash-true": ({"thresholds": {"phash": True}}, "thresholds.phash", "bool True"),
    "phash-text": ({"thresholds": {"phash": "8"}}, "thresholds.phash", "str '8'"),
    "phash-float": ({"thresholds": {"phash": 8.0}}, "thresholds.phash", "float 8.0"),
    "phash-null": ({"thresholds": {"phash": None}}, "thresholds.phash", "NoneType None"),
    "algorithm-case": ({"thresholds": {"PHASH": 8}}, "thresholds.PHASH", "str 'PHASH'"),
    "kind-case": ({"kind": "DENY"}, "kind", "str 'DENY'"),
    "action-allow": ({"action": "allow"}, "action", "str 'allow'"),
    "thresholds-list": ({"thresholds": [8]}, "thresholds", "list [8]"),
    "version-number": ({"version": 2}, "version", "int 2"),
}


@pytest.mark.parametrize(("fields", "where", "got"), list(COERCIONS.values()), ids=list(COERCIONS))
def test_a_loosely_typed_config_record_is_refused_naming_field_and_value(
    fields: dict[str, object], where: str, got: str
) -> None:
    with pytest.raises(InputRejected) as caught:
        decode_config(**fields)
    assert caught.value.reason == "bad_record"
    message = str(caught.value)
    assert message.startswith("invalid list record 'eokm': "), message
    assert f"{where}: " in message, message
    assert f"got {got}" in message, message


@pytest.mark.parametrize(
    "fields",
    [fields for fields, _, _ in COERCIONS.values() if "version" not in fields],
    ids=[name for name, (fields, _, _) in COERCIONS.items() if "version" not in fields],
)
def test_a_manifest_refuses_the_same_values(fields: dict[str, object]) -> None:
    # The same rules in both places: what the topic refuses, a manifest refuses too (a
    # manifest's version is the one field it reads as text, so it may be written as a number).
    with pytest.raises(InputRejected):
        manifest_config(**fields)


def test_good_records_decode_to_the_policy_a_manifest_gives() -> None:
    fields: dict[str, object] = {
        "kind": "deny",
        "enabled": False,
        "thresholds": {"phash": 6, "dhash": 0, "pdq": 40, "md5": 0},
        "version": "2026-11",
    }
    assert decode_config(**fields) == manifest_config(**fields)
    assert decode_config(**fields).enabled is False


CAPS = {Algorithm.PHASH: MAX_THRESHOLD_64, Algorithm.DHASH: MAX_THRESHOLD_64}
CAPS[Algorithm.PDQ] = PDQ_MAX_THRESHOLD


def test_the_caps_refuse_what_could_only_match_unrelated_pictures() -> None:
    # Unrelated pictures sit ~32 bits apart on 64-bit hashes and ~128 on PDQ's 256: a cap at or
    # past a quarter of the bits would let a single config record match most uploads.
    assert MAX_THRESHOLD_64 == 16
    assert PDQ_MAX_THRESHOLD == 63
    assert {alg: max_threshold(alg) for alg in CAPS} == CAPS
    assert all(max_threshold(alg) == 0 for alg in Algorithm if not alg.is_perceptual)


@pytest.mark.parametrize("algorithm", list(CAPS), ids=str)
def test_a_threshold_at_the_cap_loads_and_one_past_it_is_refused(algorithm: Algorithm) -> None:
    cap = CAPS[algorithm]
    at_cap = {"thresholds": {algorithm.value: cap}}
    assert decode_config(**at_cap).threshold(algorithm) == cap
    assert manifest_config(**at_cap).threshold(algorithm) == cap
    for past in (cap + 1, algorithm.bits):
        fields = {"thresholds": {algorithm.value: past}}
        with pytest.raises(InputRejected, match=rf"{algorithm} threshold must be in \[0, {cap}\]"):
            manifest_config(**fields)
        with pytest.raises(InputRejected, match=rf"{algorithm} threshold must be in \[0, {cap}\]"):
            decode_config(**fields)


def test_a_phash_threshold_of_64_does_not_reach_the_matcher() -> None:
    # The reported fault: {"phash": 64} with action block matched (and blocked) every upload.
    with pytest.raises(InputRejected) as caught:
        decode_config(thresholds={"phash": 64})
    assert caught.value.reason in ("bad_record", "bad_list")
    with pytest.raises(InputRejected):
        ListConfig.create("eokm", action="block", thresholds={"phash": 64})


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        (entry_key("eokm", "e1"), "entry"),
        (vpdq_key("eokm", "v1"), "vpdq"),
        (list_key("eokm"), "list"),
        (quarantine_key("eokm", "e1"), "quarantine"),
        ("entry/no-entry-id", "unknown"),
        ("list/", "unknown"),
        ("nonsense", "unknown"),
        ("", "unknown"),
    ],
)
def test_a_record_is_counted_against_what_its_key_names(key: str, kind: str) -> None:
    assert record_kind(key.encode()) == kind
    assert kind in RECORD_KINDS


def test_rejections_are_counted_per_operation_with_bounded_labels() -> None:
    metrics = PipelineMetrics()
    assert set(LIST_OPERATIONS) == {"entry", "vpdq", "list", "quarantine", "unknown"}
    assert set(LIST_UPDATE_OUTCOMES) == {"applied", "held", "rejected"}
    rejected = [
        (list_key("eokm").encode(), config_value(enabled="no")),
        (entry_key("eokm", "e1").encode(), b'{"list": "eokm"}'),
        (b"nonsense", b"{}"),
    ]
    for key, value in rejected:
        with pytest.raises(InputRejected):
            parse_hashlist_record(key, value)
        metrics.list_update(record_kind(key), "rejected")
    metrics.list_update("anything else", "rejected_for_a_reason")

    def count(operation: str, outcome: str) -> float:
        labels = {"operation": operation, "outcome": outcome}
        value = metrics.registry.get_sample_value("screening_hashlist_updates_total", labels)
        assert value is not None
        return value

    assert count("list", "rejected") == 1
    assert count("entry", "rejected") == 1
    assert count("unknown", "rejected") == 2
    assert count("quarantine", "held") == 0  # every combination exists from the start


# -- entries of a list without a config are held ------------------------------------------------


def held_gauge(metrics: PipelineMetrics, name: str) -> float | None:
    return metrics.registry.get_sample_value("screening_hashlist_held_entries", {"list": name})


def test_the_worker_holds_entries_of_a_list_without_a_config_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics, health = PipelineMetrics(), WorkerHealth()
    matcher = Matcher()
    target = MatcherTarget(matcher, metrics, health=health)
    first = HashListEntry("late", "1", HashValue(Algorithm.PHASH, 0), Category.CSAM)
    digest = HashListEntry("late", "2", HashValue(Algorithm.MD5, 7), Category.CSAM)
    operations: list[MatcherOperation] = [
        ("entry", first.key, first),
        ("entry", digest.key, digest),
    ]
    with caplog.at_level(logging.INFO, logger="pipeline.hashlist_feed"):
        target.apply(list(operations))
    assert [target.outcome(op) for op in operations] == ["held", "held"]
    assert matcher.match({Algorithm.PHASH: 0, Algorithm.MD5: 7}) == []
    assert held_gauge(metrics, "late") == 2
    assert health.report()["held_entries"] == {"late": 2}
    (warning,) = [r for r in caplog.records if "held" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "'late': 2 entries held, not matched" in warning.getMessage()

    caplog.clear()
    config = ListConfig.create("late", action="block")
    with caplog.at_level(logging.INFO, logger="pipeline.hashlist_feed"):
        target.apply([("list", "late", config)])
    assert target.outcome(("list", "late", config)) == "applied"
    assert [target.outcome(op) for op in operations] == ["applied", "applied"]
    assert {m.entry_id for m in matcher.match({Algorithm.PHASH: 0, Algorithm.MD5: 7})} == {"1", "2"}
    assert held_gauge(metrics, "late") == 0
    assert health.report()["held_entries"] == {}
    assert any("config arrived" in r.getMessage() for r in caplog.records)

    # Retracting the config holds them again; retracting the entries empties the count.
    target.apply([("list", "late", None)])
    assert held_gauge(metrics, "late") == 2
    target.apply([("entry", first.key, None), ("entry", digest.key, None)])
    assert held_gauge(metrics, "late") == 0


def test_offline_bare_files_keep_an_explicit_default_config(tmp_path: Path) -> None:
    # `pipeline match --lists bare.csv`: no config anywhere, so the loader gives one, stated.
    bare = tmp_path / "bare.csv"
    bare.write_text(
        "list,entry_id,algorithm,hash,category,source,note\n"
        f"bare,1,phash,{0:016x},csam,,\n"
        f"bare,2,md5,{7:032x},csam,,\n"
    )
    loaded = load_paths([bare])
    assert loaded.configs == {"bare": ListConfig(name="bare")}
    matcher = Matcher()
    for config in loaded.configs.values():
        matcher.set_list(config)
    matcher.upsert(loaded.entries)
    assert matcher.held_counts() == {}
    hits = matcher.match({Algorithm.PHASH: 0b11, Algorithm.MD5: 7})
    assert [(m.entry_id, m.list_action) for m in hits] == [
        ("2", Action.REVIEW),
        ("1", Action.REVIEW),
    ]


# -- vPDQ (whole-video) entries: the same strictness, bounded -------------------------------------

GOOD_FRAME = ["f0" * 32, 80, 1.0]


def vpdq_value(frames: object, **fields: object) -> bytes:
    record = {"list": "eokm", "entry_id": "v1", "algorithm": "vpdq", "category": "csam"}
    return json.dumps({**record, "frames": frames, **fields}).encode()


def test_a_vpdq_record_decodes_to_its_frames() -> None:
    frames = [GOOD_FRAME, ["0F" * 32, 100, 2]]
    kind, key, entry = parse_hashlist_record(vpdq_key("eokm", "v1").encode(), vpdq_value(frames))
    assert (kind, key) == ("vpdq", ("eokm", "v1"))
    assert isinstance(entry, VpdqEntry)
    assert entry.frames == (
        CompactFeature(int("f0" * 32, 16), 80, 1.0),
        CompactFeature(int("0f" * 32, 16), 100, 2.0),
    )
    assert entry.category is Category.CSAM
    assert parse_hashlist_record(vpdq_key("eokm", "v1").encode(), None) == (
        "vpdq",
        ("eokm", "v1"),
        None,
    )


# Each a value a lax decoder would coerce or pass: a quality as a string, a float or a boolean,
# a time as a string or a boolean, a short or non-hex hash, a negative time, a missing field.
VPDQ_FAULTS = {
    "quality-str": [["f0" * 32, "80", 1.0]],
    "quality-float": [["f0" * 32, 80.0, 1.0]],
    "quality-bool": [["f0" * 32, True, 1.0]],
    "quality-over": [["f0" * 32, 101, 1.0]],
    "seconds-str": [["f0" * 32, 80, "1.0"]],
    "seconds-bool": [["f0" * 32, 80, True]],
    "seconds-negative": [["f0" * 32, 80, -1.0]],
    "hash-short": [["f0" * 31, 80, 1.0]],
    "hash-not-hex": [["g0" * 32, 80, 1.0]],
    "frame-short": [["f0" * 32, 80]],
    "no-frames": [],
    "frames-not-a-list": "f0f0",
}


@pytest.mark.parametrize("frames", VPDQ_FAULTS.values(), ids=VPDQ_FAULTS.keys())
def test_a_loosely_typed_vpdq_record_is_refused(frames: object) -> None:
    with pytest.raises(InputRejected) as caught:
        parse_hashlist_record(vpdq_key("eokm", "v1").encode(), vpdq_value(frames))
    assert caught.value.reason == "bad_record"
    assert "frames" in str(caught.value)


@pytest.mark.parametrize("frames", VPDQ_FAULTS.values(), ids=VPDQ_FAULTS.keys())
def test_a_list_file_refuses_the_same_vpdq_frames(frames: object, tmp_path: Path) -> None:
    good = {"list": "eokm", "entry_id": "good", "algorithm": "vpdq", "category": "csam"}
    path = tmp_path / "videos.jsonl"
    path.write_text(
        json.dumps({**good, "frames": [GOOD_FRAME]})
        + "\n"
        + json.dumps({**good, "entry_id": "bad", "frames": frames})
        + "\n"
    )
    loaded = load_paths([path])
    assert [video.entry_id for video in loaded.videos] == ["good"]
    [error] = loaded.errors[str(path)]
    assert (error.line, error.reason) == (2, "bad_hash")


def test_a_vpdq_entry_is_capped_in_frames() -> None:
    at_cap = [GOOD_FRAME] * VPDQ_MAX_FRAMES
    _, _, entry = parse_hashlist_record(vpdq_key("eokm", "v1").encode(), vpdq_value(at_cap))
    assert isinstance(entry, VpdqEntry)
    assert len(entry.frames) == VPDQ_MAX_FRAMES
    with pytest.raises(InputRejected):
        parse_hashlist_record(vpdq_key("eokm", "v1").encode(), vpdq_value([*at_cap, GOOD_FRAME]))
    with pytest.raises(InputRejected):
        parse_hashlist_record(
            vpdq_key("eokm", "v1").encode(), vpdq_value([GOOD_FRAME], unknown="field")
        )


def test_a_csv_vpdq_row_carries_threatexchanges_text_and_round_trips_to_the_topic(
    tmp_path: Path,
) -> None:
    features = (CompactFeature(int("f0" * 32, 16), 80, 0.0), CompactFeature(7, 51, 1.0))
    path = tmp_path / "videos.csv"
    text = format_vpdq(features).replace('"', '""')
    path.write_text(f'list,entry_id,algorithm,hash,category\neokm,v1,vpdq,"{text}",terror\n')
    [video] = load_paths([path]).videos
    assert video.frames == features
    record = encode_vpdq(video)
    assert record.key == b"vpdq/eokm/v1"
    assert parse_hashlist_record(record.key, record.value) == ("vpdq", ("eokm", "v1"), video)


def test_a_vpdq_record_at_its_caps_fits_the_brokers_default_message_size() -> None:
    longest_time = 1.2345678901234567e-300  # 23 characters, the longest a float prints as
    entry = VpdqEntry(
        "l" * 128,
        "e" * 256,
        tuple(CompactFeature((1 << 256) - 1, 100, longest_time) for _ in range(VPDQ_MAX_FRAMES)),
        Category.TERROR,
        source="s" * 256,
        note="é" * 1000,
    )
    record = encode_vpdq(entry)
    assert record.value is not None
    assert len(record.value) < 1_000_000  # Kafka's default message.max.bytes is 1,048,588
    assert parse_hashlist_record(record.key, record.value)[2] == entry


def test_the_worker_target_holds_applies_counts_and_retracts_vpdq_entries() -> None:
    metrics = PipelineMetrics()
    matcher = Matcher()
    target = MatcherTarget(matcher, metrics, health=WorkerHealth())
    video = VpdqEntry("films", "v1", (CompactFeature(1, 90, 0.0),), Category.TERROR)
    record = encode_vpdq(video)
    operation = parse_hashlist_record(record.key, record.value)
    target.apply([operation])
    assert target.outcome(operation) == "held"
    assert held_gauge(metrics, "films") == 1
    assert matcher.view.videos == ()  # held: not matched

    target.apply([("list", "films", ListConfig.create("films", action="block"))])
    assert target.outcome(operation) == "applied"
    assert [entry.key for entry in matcher.view.videos] == [video.key]
    (words,) = matcher.view.video_words
    assert words.tolist() == [[0, 0, 0, 1]]  # its frames, kept as 64-bit words
    assert matcher.algorithms_in_use() == (Algorithm.PDQ,)  # uploads get PDQ hashes for it
    labels = {"list": "films", "algorithm": "vpdq"}
    assert metrics.registry.get_sample_value("screening_index_entries", labels) == 1

    target.apply([parse_hashlist_record(record.key, None)])
    assert matcher.view.videos == ()
    assert metrics.registry.get_sample_value("screening_index_entries", labels) == 0


def test_a_list_name_ending_in_a_newline_is_refused() -> None:
    """``$`` matches before a final newline: "known\\n" passed the name pattern."""
    with pytest.raises(InputRejected, match="invalid list name"):
        ListConfig.create("known\n", kind="deny", action="block")
