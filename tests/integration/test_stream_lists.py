"""Live hash lists on a real broker: readiness waits for the lists, updates apply while running.

Every worker reads the whole hash-list topic. /readyz must not answer 200 before the index holds
every entry published before start; an entry published while the worker runs must match within
seconds; a retraction must stop matches; a restarted worker comes back with the same lists.
Entries whose list has no config are held, counted and shown until it arrives; config records
that break the manifest rules are refused.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.core.hashlist import Category, HashListEntry, ListConfig
from pipeline.core.types import Algorithm, HashValue
from tests.imagegen import encode, synthetic_image
from tests.integration.harness import KafkaIO, WorkerProcess, http_get, wait_until
from tests.integration.lists import entries_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BULK_ENTRIES = 60_000


def loaded_entries(metrics: str, list_name: str) -> int:
    pattern = rf'screening_index_entries\{{algorithm="\w+",list="{list_name}"\}} ([0-9.e+]+)'
    return int(sum(float(v) for v in re.findall(pattern, metrics)))


def bulk_entries(list_name: str, count: int) -> list[HashListEntry]:
    rng = random.Random(1234)
    return [
        HashListEntry(
            list_name=list_name,
            entry_id=f"bulk-{i}",
            hash=HashValue(Algorithm.PHASH, rng.getrandbits(64)),
            category=Category.OTHER,
        )
        for i in range(count)
    ]


def screen(kafka: KafkaIO, upload_id: str, seed: int) -> dict[str, object]:
    kafka.upload(upload_id, encode(synthetic_image(seed), quality=80))
    return kafka.verdicts_for({upload_id}, timeout=60)[upload_id]


def test_ready_only_after_lists_are_loaded_and_updates_apply_live(
    kafka: KafkaIO, start_worker: Callable[..., WorkerProcess]
) -> None:
    config = ListConfig.create("live", kind="deny", action="block")
    kafka.publish(config, [*bulk_entries("live", BULK_ENTRIES), *entries_for("live", seed=1)])
    total = BULK_ENTRIES + 2

    worker = start_worker(wait_ready=False)
    statuses: list[int] = []

    def ready_with_full_index() -> bool:
        try:
            status, _ = http_get(worker.base_url + "/readyz", timeout=1)
        except OSError:
            return False  # web server not up yet
        statuses.append(status)
        if status != 200:
            return False
        # Ready means every entry published before start is in the index.
        assert loaded_entries(worker.metrics(), "live") == total
        return True

    wait_until(ready_with_full_index, 120, interval=0.05, what="readiness")
    assert statuses[0] == 503, f"/readyz answered {statuses[0]} before the lists were loaded"

    assert screen(kafka, "before-3", seed=3)["action"] == "allow"
    assert screen(kafka, "known-1", seed=1)["action"] == "block"

    # Published while running: matched within seconds.
    published_at = time.monotonic()
    kafka.publish(None, entries_for("live", seed=3))
    wait_until(lambda: loaded_entries(worker.metrics(), "live") == total + 2, 30, what="live add")
    verdict = screen(kafka, "after-3", seed=3)
    assert verdict["action"] == "block"
    assert time.monotonic() - published_at < 15

    # Retracted (both algorithms): no longer matched.
    kafka.retract("live", "3-phash")
    kafka.retract("live", "3-dhash")
    wait_until(lambda: loaded_entries(worker.metrics(), "live") == total, 30, what="retraction")
    assert screen(kafka, "retracted-3", seed=3)["action"] == "allow"

    # A restarted worker rebuilds the same lists from the topic.
    worker.stop()
    restarted = start_worker()
    assert loaded_entries(restarted.metrics(), "live") == total
    assert screen(kafka, "restart-3", seed=3)["action"] == "allow"
    assert screen(kafka, "restart-1", seed=1)["action"] == "block"


def sample(metrics: str, name: str, **labels: str) -> float:
    """One sample of the worker's /metrics (0 when the series does not exist)."""
    for family in text_string_to_metric_families(metrics):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return 0.0


def test_entries_whose_list_config_has_not_arrived_are_held_until_it_does(
    kafka: KafkaIO, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Entries first, digest included; their list's config never came, and two config records
    # that the worker once coerced (enabled "no") or took at face value (pHash 64: matches every
    # upload) are refused. Held, they match nothing; the upload is allowed.
    held = entries_for("late", 1, (Algorithm.PHASH, Algorithm.DHASH, Algorithm.MD5))
    kafka.publish(None, held)
    for bad in ({"enabled": "no"}, {"thresholds": {"phash": 64}}):
        record = {"name": "late", "action": "block", **bad}
        kafka.send("hashlists", "list/late", json.dumps(record).encode())
    worker = start_worker()
    upload = encode(synthetic_image(1))  # byte for byte the picture the entries were made from
    kafka.upload("while-held", upload)
    assert kafka.verdicts_for({"while-held"})["while-held"]["action"] == "allow"

    metrics = worker.metrics()
    updates = "screening_hashlist_updates_total"
    assert sample(metrics, updates, operation="entry", outcome="held") == len(held)
    assert sample(metrics, updates, operation="list", outcome="rejected") == 2
    assert sample(metrics, updates, operation="unknown", outcome="rejected") == 0
    assert sample(metrics, "screening_hashlist_held_entries", list="late") == len(held)
    status, body = http_get(worker.base_url + "/readyz")
    assert status == 200  # held entries are shown, not a reason to stop screening other lists
    assert json.loads(body)["held_entries"] == {"late": len(held)}
    assert "hash list 'late': 3 entries held, not matched" in worker.log()
    assert "enabled: Input should be a valid boolean, got str 'no'" in worker.log()
    assert "phash threshold must be in [0, 16], got 64" in worker.log()

    # The config arrives: the held entries match at once, under its policy.
    kafka.publish(ListConfig.create("late", action="block"), [])
    wait_until(
        lambda: sample(worker.metrics(), "screening_hashlist_held_entries", list="late") == 0,
        30,
        what="held entries released",
    )
    kafka.upload("after-config", upload)
    verdict = kafka.verdicts_for({"after-config"})["after-config"]
    assert verdict["action"] == "block"
    assert {m["entry_id"] for m in verdict["matches"]} == {e.entry_id for e in held}
    assert json.loads(http_get(worker.base_url + "/readyz")[1])["held_entries"] == {}
