"""Outputs the broker refuses, on a real broker: the agent survives and every upload still gets
a verdict.

The worker's producer is given a small max request size (PIPELINE_PRODUCER_MAX_REQUEST_BYTES),
so a verdict carrying a few KiB of metadata is refused by the real client, exactly as a record
over a broker's limit would be. Before the fix the refusal escaped the agent and no later upload
was screened. Metadata over the 16 KiB cap is refused earlier, at validation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest

from tests.imagegen import encode, synthetic_image
from tests.integration.harness import KafkaIO, WorkerProcess, http_get

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IMAGE = encode(synthetic_image(11, 160, 120))


def test_a_refused_output_is_replaced_and_screening_goes_on(
    kafka: KafkaIO, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker(producer_max_request_bytes="4000")
    kafka.upload("fat", IMAGE, metadata={"note": "x" * 6000})  # valid, but the verdict is 6 KB
    kafka.upload("over-cap", IMAGE, metadata={"note": "x" * 20_000})  # over the metadata cap
    kafka.upload("after-1", IMAGE, metadata={"app": "chat"})
    kafka.upload("after-2", IMAGE)

    verdicts = kafka.verdicts_for({"fat", "over-cap", "after-1", "after-2"}, timeout=60)
    assert verdicts["fat"]["action"] == "allow"  # the same decision, in a slim copy
    assert verdicts["fat"]["metadata"] == {}
    assert verdicts["fat"]["hashes"]
    assert verdicts["over-cap"]["error"]["reason"] == "invalid_event"
    assert verdicts["after-1"]["action"] == "allow"
    assert verdicts["after-1"]["metadata"] == {"app": "chat"}
    assert verdicts["after-2"]["action"] == "allow"

    letters = kafka.wait_for("dead-letters", lambda rs: len(rs) >= 2)
    by_id = {letter["upload_id"]: letter for letter in letters}
    assert (by_id["fat"]["stage"], by_id["fat"]["reason"]) == ("emit", "emit_failed")
    assert (by_id["over-cap"]["stage"], by_id["over-cap"]["reason"]) == ("parse", "invalid_event")
    assert "metadata" not in by_id["over-cap"]["original_event"]
    assert by_id["over-cap"]["original_event"]["omitted_fields"] == ["metadata"]

    metrics = worker.metrics()
    replaced = re.search(
        r'^screening_output_failures_total\{handling="replaced",output="verdicts"\} (\S+)$',
        metrics,
        re.MULTILINE,
    )
    assert replaced is not None
    assert float(replaced.group(1)) == 1.0
    assert 'screening_dead_letters_total{reason="emit_failed",stage="emit"} 1.0' in metrics
    assert 'screening_service_restarts_total{service="hashlist_feed"} 0.0' in metrics
    status, body = http_get(worker.base_url + "/livez")
    assert status == 200
    services = json.loads(body)["services"]
    assert services["hashlist_feed"]["state"] == "running"
    assert not [name for name in services if name.startswith("alert_delivery")]  # no sinks
    assert worker.alive()
