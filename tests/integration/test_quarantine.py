"""Flood quarantine on a real broker: operators lift and re-arm through the hashlists topic
(`pipeline quarantine lift|rearm|list`), and a real worker quarantines an entry that floods,
then blocks on it again once it is lifted."""

from __future__ import annotations

import pytest

from pipeline.core.hashlist import ListConfig
from tests.integration.harness import KafkaIO, Topics
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
