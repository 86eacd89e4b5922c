"""Real Prometheus scraping a real worker that screens real traffic on the test broker.

Every PromQL expression in the dashboard and the alert rules is evaluated through Prometheus's
HTTP API: each must parse; each dashboard expression must return data, and every metric a rule
selects must have series. Then a fault: the webhook sink is down, the delivery-failure metric
rises and the ScreeningAlertDeliveryFailing rule fires in Prometheus (the rules are loaded with
their `for:` holds removed so the test need not wait minutes; the expressions are unchanged).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from pipeline.core.hashlist import ListConfig
from tests.imagegen import encode, synthetic_image
from tests.integration.harness import (
    KafkaIO,
    Prometheus,
    WebhookReceiver,
    WorkerProcess,
    wait_until,
)
from tests.integration.lists import entries_for
from tests.opsfiles import RULES, dashboard_expressions, metric_names, rule_expressions

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def traffic(kafka: KafkaIO) -> Iterator[None]:
    """Matching, clean and broken uploads, a few per second, until the test ends."""
    stop = threading.Event()
    # The listed picture comes re-encoded at varying quality: different files, as the flood
    # quarantine counts them (repeats of one file count once).
    listed = [encode(synthetic_image(5), quality=quality) for quality in range(60, 96)]
    clean = [encode(synthetic_image(60)), encode(synthetic_image(61))]

    def produce() -> None:
        producer = KafkaIO(kafka.topics)
        i = 0
        try:
            while not stop.wait(0.1):
                content = listed[(i // 3) % len(listed)] if i % 3 == 0 else clean[i % 3 - 1]
                producer.upload(f"traffic-{i}", content)
                if i % 10 == 0:
                    producer.upload(f"broken-{i}", b"not an image at all")
                i += 1
        finally:
            producer.close()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(10)


def rules_without_holds(directory: Path) -> Path:
    data = yaml.safe_load(RULES.read_text())
    for group in data["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule.pop("for", None)
    path = directory / "rules-no-holds.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_dashboard_and_rule_queries_return_data_and_sink_outage_fires(
    kafka: KafkaIO,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
    traffic: None,
) -> None:
    kafka.publish(ListConfig.create("observed", action="block"), entries_for("observed", seed=5))
    dead_sink = WebhookReceiver()  # never started: every delivery is refused
    # A third of the traffic is the listed picture: with a small flood-quarantine rule its
    # entries are quarantined within seconds, so the quarantine metrics have series and
    # ScreeningEntryQuarantined fires naming them.
    worker = start_worker(
        webhook_url=dead_sink.url,
        webhook_secret="s",
        quarantine_window_uploads="30",
        quarantine_min_uploads="10",
        quarantine_share="0.2",
    )
    prometheus = Prometheus(
        [f"127.0.0.1:{worker.web_port}"], rule_files=[rules_without_holds(tmp_path)]
    ).start()
    try:
        # Enough scrapes for rate() over 1m windows, with traffic flowing throughout.
        wait_until(
            lambda: (
                prometheus.query("count_over_time(up[1m])")["data"]["result"]
                and float(
                    prometheus.query("count_over_time(up[1m])")["data"]["result"][0]["value"][1]
                )
                >= 15
            ),
            60,
            what="15 scrapes",
        )
        kafka.verdicts_for({"traffic-0", "traffic-1", "broken-0"})

        empty: list[str] = []
        for where, expr in dashboard_expressions().items():
            answer = prometheus.query(expr)
            assert answer["status"] == "success", f"{where}: {answer.get('error')} in {expr}"
            if not answer["data"]["result"]:
                empty.append(f"{where}: {expr}")
        assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

        for name, expr in rule_expressions().items():
            answer = prometheus.query(expr)
            assert answer["status"] == "success", f"{name}: {answer.get('error')}"
            for metric in metric_names(expr):
                series = prometheus.query(f"count({metric})")["data"]["result"]
                assert series, f"rule {name} selects {metric}, which has no series"

        # The fault is visible: retries climb, nothing is delivered, the rule fires.
        def failing() -> bool:
            metrics = worker.metrics()
            retries = re.search(
                r'^screening_alert_deliveries_total\{outcome="retry",sink="webhook"\} (\S+)$',
                metrics,
                re.MULTILINE,
            )
            return retries is not None and float(retries.group(1)) >= 3

        wait_until(failing, 60, what="delivery retries")
        wait_until(
            lambda: any(
                a["labels"]["alertname"] == "ScreeningAlertDeliveryFailing"
                and a["labels"].get("sink") == "webhook"
                and a["state"] == "firing"
                for a in prometheus.alerts()
            ),
            60,
            what="ScreeningAlertDeliveryFailing firing",
        )
        wait_until(
            lambda: (
                {
                    a["labels"].get("entry_id")
                    for a in prometheus.alerts()
                    if a["labels"]["alertname"] == "ScreeningEntryQuarantined"
                    and a["labels"].get("list") == "observed"
                    and a["state"] == "firing"
                }
                == {"5-phash", "5-dhash"}
            ),
            60,
            what="ScreeningEntryQuarantined firing for both entries of the flooding picture",
        )
        firing = {a["labels"]["alertname"] for a in prometheus.alerts() if a["state"] == "firing"}
        # A healthy, busy worker must not page for being down, stalled or not ready.
        assert not firing & {
            "ScreeningWorkerDown",
            "ScreeningNoWorkerUp",
            "ScreeningWorkerNotReady",
            "ScreeningStalled",
        }
    except BaseException:
        print(prometheus.log()[-3000:])
        raise
    finally:
        prometheus.stop()
