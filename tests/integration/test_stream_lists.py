"""Live hash lists on a real broker: readiness waits for the lists, updates apply while running.

Every worker reads the whole hash-list topic. /readyz must not answer 200 before the index holds
every entry published before start; an entry published while the worker runs must match within
seconds; a retraction must stop matches; a restarted worker comes back with the same lists.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable

import pytest

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
