"""End to end on a real broker: uploads in; verdicts, blocks and alerts out; both sinks receive.

One worker process, a real webhook receiver and a real Alertmanager. Matching, near-matching
(re-encoded, resized) and clean uploads must get the right verdicts, exactly the block records
for block decisions, and one alert per match at both sinks.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from pipeline.adapters.alerts import SIGNATURE_HEADER, verify_signature
from pipeline.core.hashlist import Category, ListConfig
from pipeline.core.types import Algorithm
from pipeline.demo.images import near_copies
from tests.imagegen import encode, sample_photo, synthetic_image
from tests.integration.harness import (
    Alertmanager,
    KafkaIO,
    WebhookReceiver,
    WorkerProcess,
    wait_until,
)
from tests.integration.lists import entries_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "test-secret-of-the-webhook"


def test_uploads_get_verdicts_blocks_and_alerts_at_both_sinks(
    kafka: KafkaIO,
    start_worker: Callable[..., WorkerProcess],
    webhook: WebhookReceiver,
    alertmanager: Alertmanager,
) -> None:
    blocked = ListConfig.create("known-csam", kind="deny", action="block", version="7")
    reviewed = ListConfig.create("maybe-terror", kind="deny", action="review", version="2")
    kafka.publish(blocked, entries_for("known-csam", seed=1))
    kafka.publish(reviewed, entries_for("maybe-terror", 2, (Algorithm.PHASH,), Category.TERROR))
    start_worker(webhook_url=webhook.url, webhook_secret=SECRET, alertmanager_url=alertmanager.url)

    copies = near_copies(synthetic_image(1))
    uploads = {
        "identical": encode(synthetic_image(1)),
        "reencoded": copies["reencoded"],
        "resized": copies["resized"],
        "review-me": encode(synthetic_image(2), quality=70),
        "clean-synthetic": encode(synthetic_image(50)),
        "clean-photo": encode(sample_photo("astronaut")),
        "clean-png": encode(synthetic_image(51), "PNG"),
    }
    for upload_id, data in uploads.items():
        kafka.upload(upload_id, data, uploader_id="user-1", metadata={"source": "e2e"})

    verdicts = kafka.verdicts_for(set(uploads))
    actions = {upload_id: v["action"] for upload_id, v in verdicts.items()}
    assert actions == {
        "identical": "block",
        "reencoded": "block",
        "resized": "block",
        "review-me": "review",
        "clean-synthetic": "allow",
        "clean-photo": "allow",
        "clean-png": "allow",
    }
    # Every match explains itself; every verdict carries hashes and never the content.
    for upload_id in ("identical", "reencoded", "resized"):
        matches = verdicts[upload_id]["matches"]
        assert {m["list"] for m in matches} == {"known-csam"}
        for match in matches:
            assert match["list_version"] == "7"
            assert match["category"] == "csam"
            assert 0 <= match["distance"] <= match["threshold"]
    for verdict in verdicts.values():
        assert set(verdict["hashes"]) >= {"phash", "dhash"}
        assert verdict["metadata"] == {"source": "e2e"}
        assert "data_base64" not in str(verdict)
        assert {"fetch", "decode", "hash", "match"} <= set(verdict["stage_seconds"])

    blocks = kafka.wait_for("blocks", lambda rs: len(rs) >= 3)
    assert sorted(b["upload_id"] for b in blocks) == ["identical", "reencoded", "resized"]

    # One alert per (upload, entry) match: into the outbox topic and out to both sinks.
    expected_alerts = {
        f"{upload_id}:{m['list']}:{m['entry_id']}"
        for upload_id, v in verdicts.items()
        for m in v["matches"]
    }
    assert len(expected_alerts) >= 4
    wait_until(
        lambda: {b["alert_id"] for b in webhook.bodies()} >= expected_alerts,
        60,
        what="webhook alerts",
    )
    for request in webhook.requests:
        assert verify_signature(SECRET.encode(), request.body, request.headers[SIGNATURE_HEADER])
        assert request.headers["Idempotency-Key"] == json.loads(request.body)["alert_id"]
    assert not verify_signature(b"another-secret", webhook.requests[0].body,
                                webhook.requests[0].headers[SIGNATURE_HEADER])  # fmt: skip

    def manager_alerts() -> set[str]:
        return {
            f"{a['labels']['upload_id']}:{a['labels']['list']}:{a['labels']['entry_id']}"
            for a in alertmanager.alerts()
            if a["labels"].get("alertname") == "KnownContentMatch"
        }

    wait_until(lambda: manager_alerts() >= expected_alerts, 60, what="Alertmanager alerts")
    severities = {a["labels"]["list"]: a["labels"]["severity"] for a in alertmanager.alerts()}
    assert severities == {"known-csam": "page", "maybe-terror": "ticket"}
