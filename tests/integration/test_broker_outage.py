"""Broker outages against a live worker, each on a broker of its own (the test stops, freezes or
withholds it): the outage shows on /readyz, in a metric and in one log line each way, the
clients' reconnect noise stays bounded, a pending output batch fails within the producer
timeout (not Faust's 20 minutes), and a worker started before its broker answers /livez.

Before: /livez and /readyz stayed 200 through 20 s and 90 s outages, the clients wrote ~100
lines a second and the pipeline none, and a worker without a broker at start had no web server.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.adapters.broker import EmbeddedBroker, free_port
from tests.integration.harness import (
    KafkaIO,
    Topics,
    WorkerProcess,
    http_get,
    running,
    wait_until,
)
from tests.trickle import trickling_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UNREACHABLE_AFTER = 2.0
PRODUCER_TIMEOUT = 3.0
SETTINGS = {
    "broker_unreachable_after_seconds": str(UNREACHABLE_AFTER),
    "producer_request_timeout_seconds": str(PRODUCER_TIMEOUT),
}
CLIENT_LINE = re.compile(r"^\S+ (?:WARNING|ERROR|CRITICAL)\s+(?:kafka|aiokafka|faust|mode)[.:]")
LAST_FETCH = re.compile(r"^screening_broker_last_fetch_timestamp_seconds (\S+)$", re.MULTILINE)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker only this test stops and starts (the session's broker serves other tests)."""
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    yield broker
    broker.stop()


def readyz(worker: WorkerProcess) -> tuple[int | None, dict[str, object]]:
    try:
        status, body = http_get(worker.base_url + "/readyz", timeout=1)
    except OSError:
        return None, {}
    return status, json.loads(body)


def last_fetch(worker: WorkerProcess) -> float:
    match = LAST_FETCH.search(worker.metrics())
    assert match, "no screening_broker_last_fetch_timestamp_seconds"
    return float(match.group(1))


def broker_lines(log: str) -> tuple[list[str], list[str]]:
    lines = log.splitlines()
    return [line for line in lines if "is unreachable:" in line], [
        line for line in lines if "is reachable again" in line
    ]


def test_a_stopped_broker_shows_on_readyz_in_the_metric_and_one_log_line(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topics = Topics(own_broker.bootstrap_servers)
    topics.create()
    worker = WorkerProcess(topics, tmp_path, **SETTINGS).start()
    with running(worker):
        # Quiet but connected: nothing is uploaded, yet fetch responses keep the gauge moving.
        before = last_fetch(worker)
        time.sleep(1.5)
        assert last_fetch(worker) > before

        lines_before = len(worker.log().splitlines())
        own_broker.stop()
        stopped = time.monotonic()

        def not_ready() -> dict[str, object] | None:
            status, body = readyz(worker)
            return body if status == 503 else None

        body = wait_until(not_ready, 15, what="/readyz 503")
        broker = body["broker"]
        assert isinstance(broker, dict)
        assert broker["reachable"] is False
        assert "Kafka broker" in str(broker["reason"])
        assert http_get(worker.base_url + "/livez")[0] == 200  # an outage is no reason to restart
        frozen = last_fetch(worker)
        time.sleep(2)
        assert last_fetch(worker) == frozen, "the fetch gauge advanced with no broker"
        wait_until(lambda: broker_lines(worker.log())[0], 5, what="the 'unreachable' line")
        time.sleep(max(0.0, 8 - (time.monotonic() - stopped)))  # an 8 s outage

        own_broker.start()
        topics.create()  # the test broker keeps topics in memory only
        wait_until(lambda: readyz(worker)[0] == 200, 30, what="/readyz 200 again")
        wait_until(lambda: broker_lines(worker.log())[1], 5, what="the 'reachable again' line")
        assert last_fetch(worker) > frozen

        outage = worker.log().splitlines()[lines_before:]
        unreachable, reachable = broker_lines("\n".join(outage))
        assert len(unreachable) == 1, unreachable
        assert len(reachable) == 1, reachable
        noise = [line for line in outage if CLIENT_LINE.match(line)]
        # Unfiltered, the clients wrote ~100 lines a second here (2,207 in 21 s).
        assert len(noise) <= 30, "\n".join(noise)


def test_a_frozen_broker_fails_a_pending_output_within_the_producer_timeout(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topics = Topics(own_broker.bootstrap_servers)
    topics.create()
    kafka = KafkaIO(topics)
    worker = WorkerProcess(
        topics,
        tmp_path,
        **SETTINGS,
        fetch_allow_networks="127.0.0.1/32",
        fetch_deadline_seconds="2",
    ).start()
    assert own_broker._process is not None
    pid = own_broker._process.pid
    with running(worker), trickling_server(0.5) as url:
        kafka.upload_event(
            {"schema_version": 1, "upload_id": "slow", "content": {"kind": "url", "url": url}}
        )
        # Freeze the broker while the upload is being fetched: its error verdict (the fetch
        # deadline ends it) is then produced to a broker that takes the connection and never
        # answers.
        wait_until(
            lambda: re.search(r"^screening_events_in_flight 1\.0$", worker.metrics(), re.M),
            30,
            interval=0.05,
            what="the upload in flight",
        )
        os.kill(pid, signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            retry = wait_until(
                lambda: re.search(r"output record\(s\) not written \((\w+)\)", worker.log()),
                30,
                what="the output retry",
            )
            failed_after = time.monotonic() - frozen
            assert readyz(worker)[0] == 503
        finally:
            os.kill(pid, signal.SIGCONT)
        # The fetch deadline (2 s), then at most three producer timeouts: the wait for the
        # topic's metadata, for buffer space and for the batch (measured: 11 s). At Faust's
        # default the batch would have waited 1,200 s.
        assert failed_after < 2 + 3 * PRODUCER_TIMEOUT + 3, (failed_after, retry.group(0))
        (verdict,) = kafka.verdicts_for({"slow"}, timeout=60).values()
        assert verdict["action"] == "error"
        wait_until(lambda: readyz(worker)[0] == 200, 30, what="/readyz 200 again")
        wait_until(lambda: broker_lines(worker.log())[1], 5, what="the 'reachable again' line")
        unreachable, reachable = broker_lines(worker.log())
        assert (len(unreachable), len(reachable)) == (1, 1), (unreachable, reachable)
    kafka.close()


def test_a_worker_started_before_its_broker_serves_livez_and_waits(tmp_path: Path) -> None:
    broker = EmbeddedBroker(free_port(), log_path=tmp_path / "tansu.log")  # not started yet
    topics = Topics(broker.bootstrap_servers)
    worker = WorkerProcess(topics, tmp_path, **SETTINGS).start(wait_ready=False)
    try:
        with running(worker):  # stopped before the broker: a worker without one stops slowly

            def livez() -> bool:
                try:
                    return http_get(worker.base_url + "/livez", timeout=1)[0] == 200
                except OSError:
                    return False

            wait_until(livez, 30, what="/livez while the broker is missing")
            wait_until(
                lambda: "Kafka broker" in str(readyz(worker)[1].get("broker", {})),
                15,
                what="/readyz naming the broker",
            )
            assert readyz(worker)[0] == 503
            wait_until(lambda: "waiting for the Kafka broker" in worker.log(), 15, what="its line")

            broker.start()
            worker.wait_ready(60)  # the worker created its topics itself
            assert worker.alive()
    finally:
        broker.stop()
