"""`hashlist publish`, `hashlist retract` and `submit` as an operator uses them, on a real broker.

Publishing entries must never change a list's config unless the operator gave one (a manifest,
or --kind/--action/--version/--threshold), and the output says which config, if any, went out:
the audit saw `hashlist publish more.csv` turn a block, version v7, pHash-4 list into review,
version 1, pHash 8. Retracting must say which keys the topic did not hold instead of claiming to
have retracted them, and refuse a call with nothing to retract. `submit`'s verdict lines say how
close a match was (distance/threshold) and what the list asks for.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.clirun import run_cli_in_process
from tests.imagegen import encode, synthetic_image
from tests.integration.harness import REPO, KafkaIO, Topics, WorkerProcess
from tests.integration.lists import entries_for

pytestmark = [pytest.mark.integration]

CSV_HEADER = "list,entry_id,algorithm,hash,category,source,note\n"


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``pipeline ARGS``: ``submit`` as a user runs it (a new interpreter), the commands that
    only talk to Kafka through the same entry point in this process (an interpreter start
    each cost several seconds of imports on the shared machine)."""
    if args[0] != "submit":
        return run_cli_in_process(*args, env=env)
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, **env},
    )


def hashlist_records(topics: Topics) -> list[tuple[str, dict[str, Any] | None]]:
    """Every (key, value) on the test's hash-list topic, tombstones as None, read independently
    of the code under test (to the high watermark; end offsets are short on this broker)."""
    topic = topics.name("hashlists")
    consumer = KafkaConsumer(bootstrap_servers=topics.bootstrap, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[tuple[int, str, dict[str, Any] | None]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for part in consumer.poll(timeout_ms=200).values():
                records += [
                    (r.timestamp, r.key.decode(), None if r.value is None else json.loads(r.value))
                    for r in part
                ]
            if all(
                consumer.highwater(tp) is not None
                and consumer.position(tp) >= consumer.highwater(tp)
                for tp in partitions
            ):
                return [(key, value) for _, key, value in sorted(records, key=lambda r: r[0])]
        raise AssertionError("could not read the hash-list topic to its high watermark")
    finally:
        consumer.close()


def config_records(topics: Topics, name: str) -> list[dict[str, Any] | None]:
    return [value for key, value in hashlist_records(topics) if key == f"list/{name}"]


def write_csv(path: Path, list_name: str, *entry_ids: str) -> Path:
    rows = "".join(
        f"{list_name},{entry_id},phash,{i + 1:016x},csam,test,\n"
        for i, entry_id in enumerate(entry_ids)
    )
    path.write_text(CSV_HEADER + rows)
    return path


@pytest.fixture
def eokm_v7(topics: Topics, tmp_path: Path) -> str:
    """List `eokm` published from a manifest: block, version v7, pHash threshold 4. Returns
    what the publish printed."""
    write_csv(tmp_path / "eokm.csv", "eokm", "e1", "e2")
    manifest = tmp_path / "eokm.json"
    manifest.write_text(
        json.dumps(
            {
                "lists": [
                    {
                        "name": "eokm",
                        "kind": "deny",
                        "action": "block",
                        "version": "v7",
                        "thresholds": {"phash": 4},
                        "files": ["eokm.csv"],
                    }
                ]
            }
        )
    )
    result = run_cli("hashlist", "publish", str(manifest), "-q", env=topics.env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_publishing_entries_alone_leaves_the_list_config_as_it_is(
    topics: Topics, tmp_path: Path, eokm_v7: str
) -> None:
    more = write_csv(tmp_path / "more.csv", "eokm", "e3")
    result = run_cli("hashlist", "publish", str(more), "-q", env=topics.env)
    assert result.returncode == 0, result.stderr
    newest = config_records(topics, "eokm")[-1]
    assert newest is not None
    assert (newest["action"], newest["version"], newest["thresholds"]["phash"]) == (
        "block",
        "v7",
        4,
    )
    assert len(config_records(topics, "eokm")) == 1  # only the manifest's was ever sent
    # Each publish says which config went out, or that none did.
    assert (
        "list 'eokm': config published: deny, action block, version v7, "
        "thresholds dhash=10 pdq=31 phash=4 (from the manifest)"
    ) in eokm_v7
    assert "published 1 records (1 entries, 0 list config(s))" in result.stdout
    assert "list 'eokm': entries only; its config is left as it is" in result.stdout


def test_a_config_option_changes_only_what_it_names(
    topics: Topics, tmp_path: Path, eokm_v7: str
) -> None:
    more = write_csv(tmp_path / "more.csv", "eokm", "e3")
    result = run_cli(
        "hashlist", "publish", str(more), "--list", "eokm", "--threshold", "phash=6", "-q",
        env=topics.env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    newest = config_records(topics, "eokm")[-1]
    assert newest is not None
    assert (newest["action"], newest["version"], newest["thresholds"]["phash"]) == (
        "block",
        "v7",
        6,
    )
    assert (
        "list 'eokm': config published: deny, action block, version v7, thresholds dhash=10 "
        "pdq=31 phash=6 (--threshold over the config on the topic)"
    ) in result.stdout

    # A list with no config yet starts from the defaults, and the output says so.
    fresh = write_csv(tmp_path / "fresh.csv", "fresh", "f1")
    result = run_cli(
        "hashlist", "publish", str(fresh), "--list", "fresh", "--action", "block", "-q",
        env=topics.env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "list 'fresh': config published: deny, action block, version 1, thresholds dhash=10 "
        "pdq=31 phash=8 (--action over the defaults (the list had no config))"
    ) in result.stdout


def test_publishing_entries_of_a_list_without_a_config_says_they_are_held(
    topics: Topics, tmp_path: Path
) -> None:
    bare = write_csv(tmp_path / "new.csv", "brand-new", "e1")
    result = run_cli("hashlist", "publish", str(bare), "-q", env=topics.env)
    assert result.returncode == 0, result.stderr
    assert (
        "list 'brand-new': entries only, and the topic has no config for it: workers hold its "
        "entries (they match nothing) until one is published"
    ) in result.stdout
    assert config_records(topics, "brand-new") == []  # no default config published for it


def test_retract_names_the_keys_the_topic_does_not_hold(topics: Topics, tmp_path: Path) -> None:
    kafka = KafkaIO(topics)
    try:
        kafka.publish(None, entries_for("demo", seed=1))  # entry ids 1-phash and 1-dhash
    finally:
        kafka.close()

    result = run_cli(
        "hashlist", "retract", "--list", "demo", "1-phash", "never-seen", env=topics.env
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.strip() == "retracted 1 key(s)"
    assert "1 key(s) not on topic" in result.stderr
    assert "entry/demo/never-seen" in result.stderr
    tombstones = [key for key, value in hashlist_records(topics) if value is None]
    assert tombstones == ["entry/demo/1-phash"]  # nothing sent for the unknown id

    # Retracting it again: the topic no longer holds it, and the operator is told.
    result = run_cli("hashlist", "retract", "--list", "demo", "1-phash", env=topics.env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.strip() == "retracted 0 key(s)"
    assert "already retracted" in result.stderr
    assert "entry/demo/1-phash" in result.stderr

    result = run_cli("hashlist", "retract", "--list", "demo", "1-dhash", env=topics.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "retracted 1 key(s)"
    assert result.stderr == ""


def test_retract_with_nothing_to_retract_is_refused(topics: Topics) -> None:
    result = run_cli("hashlist", "retract", "--list", "demo", env=topics.env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        "pipeline: nothing to retract: give ENTRY_IDs, --file FILE or --list-config"
    )
    assert "retracted" not in result.stdout
    assert hashlist_records(topics) == []


@pytest.mark.slow
def test_submit_lines_say_distance_of_threshold_and_the_lists_action(
    kafka: KafkaIO, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    from pipeline.core.hashlist import ListConfig

    kafka.publish(
        ListConfig.create("known", action="block", thresholds={"phash": 8, "dhash": 10}),
        entries_for("known", seed=1),
    )
    start_worker()
    near_copy = tmp_path / "near-copy.jpg"
    near_copy.write_bytes(encode(synthetic_image(1), quality=55))
    stranger = tmp_path / "stranger.jpg"
    stranger.write_bytes(encode(synthetic_image(77)))

    result = run_cli("submit", str(near_copy), str(stranger), "--wait", "60", env=kafka.topics.env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert re.fullmatch(
        r"\s*block  near-copy\.jpg  known \(block\): "
        r"1-(phash|dhash) \1 \d+/(8|10), 1-(phash|dhash) \3 \d+/(8|10)",
        lines["near-copy.jpg"],
    ), lines
    assert re.fullmatch(r"\s*allow  stranger\.jpg\s+no match", lines["stranger.jpg"]), lines
    assert "--json" in result.stderr  # where the whole verdict is

    result = run_cli("submit", str(near_copy), "--wait", "60", "--json", env=kafka.topics.env)
    assert result.returncode == 0, result.stdout + result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["action"] == "block"
    assert {m["threshold"] for m in verdict["matches"]} == {8, 10}

    # The binary inline form: the file as the record's value, the event in Kafka headers.
    result = run_cli(
        "submit", "--binary", str(near_copy), "--wait", "60", "--json", env=kafka.topics.env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    binary = json.loads(result.stdout)
    assert binary["action"] == "block"
    assert binary["hashes"] == verdict["hashes"]
    assert binary["metadata"] == {"file": "near-copy.jpg"}


def test_vpdq_entries_of_a_list_file_are_published_and_retracted_by_file(
    topics: Topics, tmp_path: Path
) -> None:
    frames = [["f0" * 32, 90, 0.0], ["0f" * 32, 80, 1.0]]
    videos = tmp_path / "videos.jsonl"
    videos.write_text(
        json.dumps(
            {"list": "vids", "entry_id": "v1", "algorithm": "vpdq", "frames": frames,
             "category": "terror", "source": "test"}
        )
        + "\n"
    )  # fmt: skip
    result = run_cli("hashlist", "publish", str(videos), "-q", env=topics.env)
    assert result.returncode == 0, result.stderr
    assert "published 1 records (1 entries, 0 list config(s))" in result.stdout
    [(key, value)] = hashlist_records(topics)
    assert key == "vpdq/vids/v1"
    assert value is not None
    assert (value["algorithm"], value["frames"]) == ("vpdq", frames)

    result = run_cli("hashlist", "retract", "--list", "vids", "--file", str(videos), env=topics.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "retracted 1 key(s)"
    assert hashlist_records(topics)[-1] == ("vpdq/vids/v1", None)

    # By id, with --vpdq: its key is vpdq/<list>/<id> (without, entry/vids/v1 is not held).
    result = run_cli("hashlist", "publish", str(videos), "-q", env=topics.env)
    assert result.returncode == 0, result.stderr
    result = run_cli("hashlist", "retract", "--list", "vids", "v1", env=topics.env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "entry/vids/v1" in result.stderr
    result = run_cli("hashlist", "retract", "--list", "vids", "--vpdq", "v1", env=topics.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert hashlist_records(topics)[-1] == ("vpdq/vids/v1", None)
