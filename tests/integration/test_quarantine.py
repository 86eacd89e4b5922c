"""Flood quarantine on a real broker: operators lift and re-arm through the hashlists topic
(`pipeline quarantine lift|rearm|list`), and a real worker quarantines an entry that floods,
then blocks on it again once it is lifted."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from pipeline.core.hashlist import ListConfig
from tests.imagegen import encode, synthetic_image
from tests.integration.harness import KafkaIO, Topics, WorkerProcess, wait_until
from tests.integration.lists import entries_for
from tests.integration.test_cli_hashlists import hashlist_records, run_cli

pytestmark = [pytest.mark.integration]


def test_lift_rearm_and_list_act_on_the_topic_only_for_what_it_holds(
    topics: Topics, kafka: KafkaIO
) -> None:
    lift = ("quarantine", "lift", "--list", "demo", "--entry", "1-dhash")
    result = run_cli(*lift, env=topics.env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "holds no entry 'entry/demo/1-dhash'; nothing sent" in result.stderr
    assert hashlist_records(topics) == []

    kafka.publish(ListConfig.create("demo", action="block"), entries_for("demo", seed=1))
    result = run_cli(*lift, "--reason", "T-42: genuine campaign", env=topics.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "blocks again on every worker" in result.stdout
    lifts = [(k, v) for k, v in hashlist_records(topics) if k.startswith("quarantine/")]
    assert len(lifts) == 1
    key, value = lifts[0]
    assert key == "quarantine/demo/1-dhash"
    assert value is not None
    assert (value["list"], value["entry_id"], value["reason"]) == (
        "demo", "1-dhash", "T-42: genuine campaign",
    )  # fmt: skip

    result = run_cli("quarantine", "list", env=topics.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split()[1:] == ["demo", "1-dhash", "T-42:", "genuine", "campaign"]
    assert "1 entry lifted" in result.stderr

    rearm = ("quarantine", "rearm", "--list", "demo", "--entry", "1-dhash")
    result = run_cli(*rearm, env=topics.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("quarantine/demo/1-dhash", None) in hashlist_records(topics)
    result = run_cli(*rearm, env=topics.env)  # not lifted any more: named, nothing sent
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is not lifted" in result.stderr
    result = run_cli("quarantine", "list", env=topics.env)
    assert (result.returncode, result.stdout) == (0, "")


def quarantined_count(worker: WorkerProcess) -> float:
    found = re.search(
        r'screening_quarantined_entries\{list="known"\} ([0-9.e+]+)', worker.metrics()
    )
    return float(found.group(1)) if found else -1.0


@pytest.mark.slow
def test_a_flooding_entry_is_quarantined_by_a_worker_and_blocks_again_once_lifted(
    topics: Topics, kafka: KafkaIO, start_worker: Callable[..., WorkerProcess]
) -> None:
    # One entry (the dHash of one picture) on a block list.
    entry = next(e for e in entries_for("known", seed=1) if e.entry_id == "1-dhash")
    kafka.publish(ListConfig.create("known", action="block"), [entry])
    worker = start_worker(
        QUARANTINE_WINDOW_UPLOADS="20", QUARANTINE_MIN_UPLOADS="10", QUARANTINE_SHARE="0.2"
    )
    picture = encode(synthetic_image(1), quality=85)

    # A raid re-posting the one known file: repeats count once, the entry keeps blocking.
    raid = {f"raid-{i}" for i in range(12)}
    for upload_id in sorted(raid):
        kafka.upload(upload_id, picture)
    verdicts = kafka.verdicts_for(raid, timeout=120)
    assert {v["action"] for v in verdicts.values()} == {"block"}
    assert quarantined_count(worker) == 0

    # Different files matching it (re-encodes of the picture at other qualities): the window
    # holds 12 + n uploads of 1 + n different files, over 20% from n = 2 on. So one more
    # blocks, then the entry is quarantined and the rest ask for review, saying why.
    flood = {f"flood-{i}": encode(synthetic_image(1), quality=60 + i) for i in range(15)}
    for upload_id, content in sorted(flood.items()):
        kafka.upload(upload_id, content)
    verdicts = kafka.verdicts_for(set(flood), timeout=120)
    actions = sorted(v["action"] for v in verdicts.values())
    assert actions == ["block"] + ["review"] * 14
    for verdict in verdicts.values():
        (match,) = verdict["matches"]
        assert (match["entry_id"], match["list_action"]) == ("1-dhash", "block")
        assert match["quarantined"] is (verdict["action"] == "review")
    assert len(kafka.read_all("blocks")) == 13
    metrics = worker.metrics()
    assert 'screening_entry_quarantined_timestamp_seconds{entry_id="1-dhash",list="known"}' in (
        metrics
    )
    assert 'screening_quarantine_demoted_matches_total{list="known"} 14.0' in metrics
    assert quarantined_count(worker) == 1
    assert (
        "entry quarantined: list=known entry=1-dhash matched 3 different files in the last 14 "
        "uploads" in worker.log()
    )

    result = run_cli("quarantine", "lift", "--list", "known", "--entry", "1-dhash",
                     env=topics.env)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    wait_until(lambda: quarantined_count(worker) == 0, timeout=30, what="the lift to apply")
    assert "screening_entry_quarantined_timestamp_seconds{" not in worker.metrics()

    # Lifted: the entry blocks again, and stays exempt while it keeps flooding.
    after = {f"after-{i}" for i in range(12)}
    for upload_id in sorted(after):
        kafka.upload(upload_id, picture)
    verdicts = kafka.verdicts_for(after, timeout=120)
    assert {v["action"] for v in verdicts.values()} == {"block"}
    assert not any(v["matches"][0]["quarantined"] for v in verdicts.values())
    assert quarantined_count(worker) == 0
