"""The compose stack's alert path, for real: Debian's Alertmanager with the shipped
deploy/alertmanager/alertmanager.yml (only the receiver's address rewritten to loopback) delivers
an operational alert and a KnownContentMatch to the shipped logging receiver
(deploy/alertmanager/alert_log.py), which logs each with its receiver and runbook link.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from pipeline.adapters.alerts import AlertmanagerSink
from pipeline.adapters.broker import free_port
from pipeline.models import AlertRecord
from tests.integration.harness import Alertmanager, http_get, wait_until
from tests.opsfiles import ALERT_LOG, ALERTMANAGER_CONFIG, rules

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class AlertLog:
    """deploy/alertmanager/alert_log.py on a loopback port, its stdout in a file."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.out = directory / "alert-log.out"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> AlertLog:
        env = {**os.environ, "ALERT_LOG_HOST": "127.0.0.1", "ALERT_LOG_PORT": str(self.port)}
        with self.out.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(ALERT_LOG)], env=env, stdout=out, stderr=subprocess.STDOUT
            )

        def listening() -> bool:
            try:
                http_get(f"http://127.0.0.1:{self.port}/")  # GET: 501, but it answers
            except OSError:
                return False
            return True

        wait_until(listening, 15, what="alert_log.py listening")
        return self

    def lines(self) -> list[dict[str, Any]]:
        text = self.out.read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # its SIGTERM handler must end it promptly
            assert self.process.wait(10) == 0


@pytest.fixture
def alert_log(tmp_path: Path) -> Iterator[AlertLog]:
    receiver = AlertLog(tmp_path).start()
    yield receiver
    receiver.stop()


def shipped_config_on_loopback(port: int) -> str:
    """The shipped Alertmanager config with every webhook pointed at 127.0.0.1:``port``
    (in compose they name the alert-log service); nothing else changes."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            url = urlsplit(hook["url"])
            hook["url"] = urlunsplit(url._replace(netloc=f"127.0.0.1:{port}"))
    return yaml.safe_dump(config)


def post_operational_alert(manager: Alertmanager) -> dict[str, Any]:
    """ScreeningStalled as Prometheus sends it: the rule's labels and annotations."""
    rule = next(r for r in rules() if r["alert"] == "ScreeningStalled")
    now = datetime.now(UTC)
    alert = {
        "labels": {"alertname": rule["alert"], **rule["labels"]},
        "annotations": rule["annotations"],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=5)).isoformat(),
    }
    body = json.dumps([alert]).encode()
    request = urllib.request.Request(
        manager.url + "/api/v2/alerts", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    return alert


def post_match_alert(manager: Alertmanager) -> None:
    """A KnownContentMatch through the pipeline's own Alertmanager sink."""
    alert = AlertRecord(
        alert_id="u1:eokm:e1", upload_id="u1", list="eokm", list_version="7", entry_id="e1",
        category="csam", algorithm="phash", distance=2, action="block",
        decided_at=datetime.now(UTC), worker_id="w1",
    )  # fmt: skip

    async def deliver() -> None:
        sink = AlertmanagerSink(manager.url)
        try:
            await sink.deliver(alert)
        finally:
            await sink.close()

    asyncio.run(deliver())


def test_shipped_alertmanager_config_delivers_alerts_to_the_log_receiver(
    alert_log: AlertLog,
) -> None:
    manager = Alertmanager()
    manager.CONFIG = shipped_config_on_loopback(alert_log.port)
    manager.start()
    try:
        operational = post_operational_alert(manager)
        post_match_alert(manager)
        # The shipped route waits group_wait (10 s) before the first notification of a group.
        lines = wait_until(
            lambda: len(alert_log.lines()) >= 2 and alert_log.lines(), 40, what="2 alert lines"
        )
    finally:
        manager.stop()
    by_name = {line["alertname"]: line for line in lines}
    assert set(by_name) == {"ScreeningStalled", "KnownContentMatch"}
    stalled = by_name["ScreeningStalled"]
    assert stalled["receiver"] == "on-call"
    assert stalled["status"] == "firing"
    assert stalled["severity"] == "page"
    assert stalled["runbook_url"] == operational["annotations"]["runbook_url"]
    assert stalled["runbook_url"].startswith("https://")
    match = by_name["KnownContentMatch"]
    assert match["receiver"] == "trust-and-safety"
    assert match["labels"]["list"] == "eokm"
    assert match["labels"]["upload_id"] == "u1"
    assert match["summary"].startswith("Upload u1 matched eokm/e1")


def test_notifications_arriving_together_never_share_a_line(alert_log: AlertLog) -> None:
    """The receiver serves requests on threads; each alert must stay one JSON line (print()
    wrote the newline apart, and two notifications at once once produced one line of two)."""

    def post(i: int) -> None:
        body = json.dumps(
            {"alerts": [{"status": "firing", "labels": {"alertname": f"A{i}"}, "annotations": {}}]}
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{alert_log.port}/on-call", data=body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # within the listen backlog (5)
        list(pool.map(post, range(200)))
    lines = wait_until(lambda: len(alert_log.lines()) >= 200 and alert_log.lines(), 20)
    assert sorted(line["alertname"] for line in lines) == sorted(f"A{i}" for i in range(200))
