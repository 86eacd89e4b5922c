"""Alert sinks failing for real next to a live worker: Debian's Alertmanager frozen, restarted or
down for longer than an alert lives, a real webhook receiver beside it.

Each sink has its own position on the ``alerts`` topic, so a hung Alertmanager delays only its
own alerts; Alertmanager keeps alerts in memory only, so the worker re-asserts the active ones
until they end; and an alert that ended while Alertmanager was away is not sent, but counted
and logged.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from pipeline.core.hashlist import ListConfig
from tests.imagegen import encode, synthetic_image
from tests.integration.harness import (
    Alertmanager,
    KafkaIO,
    WebhookReceiver,
    WorkerProcess,
    wait_until,
)
from tests.integration.lists import entries_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 4


def metric_value(metrics: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} ([0-9.e+-]+)$", metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def upload_matches(kafka: KafkaIO, upload_ids: list[str]) -> set[str]:
    """Upload copies of the listed picture; returns the alert ids their verdicts announce."""
    for upload_id in upload_ids:
        kafka.upload(upload_id, encode(synthetic_image(SEED), quality=75))
    verdicts = kafka.verdicts_for(set(upload_ids))
    assert all(v["action"] == "block" for v in verdicts.values())
    return {
        f"{v['upload_id']}:{m['list']}:{m['entry_id']}"
        for v in verdicts.values()
        for m in v["matches"]
    }


def at_webhook(receiver: WebhookReceiver) -> set[str]:
    return {body["alert_id"] for body in receiver.bodies()}


def in_alertmanager(manager: Alertmanager) -> set[str]:
    """Alert ids of the KnownContentMatch alerts Alertmanager holds now (active ones)."""
    return {
        f"{a['labels']['upload_id']}:{a['labels']['list']}:{a['labels']['entry_id']}"
        for a in manager.alerts()
        if a["labels"].get("alertname") == "KnownContentMatch"
    }


@pytest.fixture
def matching_list(kafka: KafkaIO) -> None:
    kafka.publish(ListConfig.create("sinks", action="block"), entries_for("sinks", seed=SEED))


@pytest.mark.usefixtures("matching_list")
def test_a_hung_alertmanager_delays_only_its_own_alerts(
    kafka: KafkaIO,
    start_worker: Callable[..., WorkerProcess],
    webhook: WebhookReceiver,
    alertmanager: Alertmanager,
) -> None:
    start_worker(
        webhook_url=webhook.url, webhook_secret="s3cret", alertmanager_url=alertmanager.url,
        alert_timeout_seconds="1", alert_backoff_max_seconds="1",
    )  # fmt: skip
    before = upload_matches(kafka, ["before-0"])
    wait_until(lambda: before <= at_webhook(webhook), 30, what="first alerts at the webhook")
    wait_until(lambda: before <= in_alertmanager(alertmanager), 30, what="first in Alertmanager")

    alertmanager.freeze()  # accepts connections, answers nothing: every post times out
    try:
        sent_at = time.monotonic()
        during = upload_matches(kafka, [f"during-{i}" for i in range(4)])
        # The webhook is not held back by the hung Alertmanager: every alert arrives promptly.
        wait_until(lambda: during <= at_webhook(webhook), 10, what="webhook alerts in the outage")
        late = time.monotonic() - sent_at
    finally:
        alertmanager.thaw()
    assert late < 10
    # Alertmanager's own alerts waited in Kafka and arrive once it answers again: none lost.
    wait_until(
        lambda: before | during <= in_alertmanager(alertmanager), 30, what="alerts after the thaw"
    )
    assert at_webhook(webhook) == before | during


@pytest.mark.usefixtures("matching_list")
def test_alertmanager_gets_active_match_alerts_back_after_a_restart(
    kafka: KafkaIO, start_worker: Callable[..., WorkerProcess], alertmanager: Alertmanager
) -> None:
    start_worker(
        alertmanager_url=alertmanager.url, alert_backoff_max_seconds="1",
        alertmanager_reassert_seconds="1",
    )  # fmt: skip
    expected = upload_matches(kafka, [f"restart-{i}" for i in range(3)])
    wait_until(lambda: expected <= in_alertmanager(alertmanager), 30, what="alerts delivered")

    alertmanager.restart()
    assert in_alertmanager(alertmanager) == set()  # it kept them in memory only
    wait_until(lambda: expected <= in_alertmanager(alertmanager), 10, what="alerts re-asserted")


@pytest.mark.usefixtures("matching_list")
def test_alerts_that_ended_during_an_alertmanager_outage_are_counted_not_sent(
    kafka: KafkaIO,
    start_worker: Callable[..., WorkerProcess],
    webhook: WebhookReceiver,
    alertmanager: Alertmanager,
) -> None:
    worker = start_worker(
        webhook_url=webhook.url, webhook_secret="s3cret", alertmanager_url=alertmanager.url,
        alert_timeout_seconds="1", alert_backoff_max_seconds="1",
        alertmanager_resolve_after_seconds="4",
    )  # fmt: skip
    alertmanager.freeze()
    try:
        expected = upload_matches(kafka, ["stale-0", "stale-1"])
        wait_until(lambda: expected <= at_webhook(webhook), 10, what="webhook alerts")
        time.sleep(5)  # longer than the alerts live
    finally:
        alertmanager.thaw()

    def counted() -> float:
        return metric_value(
            worker.metrics(),
            "screening_alert_deliveries_total",
            '{outcome="expired",sink="alertmanager"}',
        )

    wait_until(lambda: counted() >= len(expected), 20, what="expired alerts counted")
    assert in_alertmanager(alertmanager) == set()
    assert "already past their end" in worker.log()
    wait_until(
        lambda: metric_value(
            worker.metrics(), "screening_alerts_waiting", '{sink="alertmanager"}'
        ) == 0,
        10,
        what="nothing left waiting",
    )  # fmt: skip
