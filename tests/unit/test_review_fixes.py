"""Regressions found by an outside read: the lag timer never raises, a fetch that runs out of
time between attempts reports its real cause, an unhashable content kind is an invalid event,
and PIPELINE_ON_ERROR reads in any case."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import generate_latest

from pipeline.adapters.fetch import Fetcher
from pipeline.agents import report_upload_lag
from pipeline.config import Settings, load_settings
from pipeline.core.matching import Matcher
from pipeline.core.types import Action
from pipeline.errors import ConfigError
from pipeline.hashpool import HashPool
from pipeline.metrics import PipelineMetrics
from pipeline.models import SourceRef
from pipeline.screening import Screener

SOURCE = SourceRef(topic="uploads", partition=0, offset=1)


class TP:
    def __init__(self, partition: int) -> None:
        self.topic, self.partition = "uploads", partition

    def __hash__(self) -> int:
        return hash((self.topic, self.partition))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TP) and other.partition == self.partition


class RevokedMidway:
    """Faust's consumer as a rebalance leaves it between position() and highwater(): aiokafka
    asserts that the partition is still assigned."""

    def assignment(self) -> set[TP]:
        return {TP(0), TP(1)}

    async def position(self, tp: TP) -> int:
        return 10

    def highwater(self, tp: TP) -> int:
        if tp.partition == 1:
            raise AssertionError("No partition metadata for TopicPartition(...)")
        return 15


def screener_for(settings: Settings) -> Screener:
    """A real screener: in-process hashing, a real fetcher under the settings' limits."""
    return Screener(
        settings,
        matcher=Matcher(),
        fetcher=Fetcher(settings.fetch_limits()),
        pool=HashPool(0),
        metrics=PipelineMetrics(),
        limits=settings.guard_limits(),
    )


def lag_samples(metrics: PipelineMetrics) -> dict[str, float]:
    lines = generate_latest(metrics.registry).decode().splitlines()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("screening_consumer_lag_messages{")
    }


def test_the_lag_timer_survives_a_partition_revoked_under_it_and_keeps_its_last_figure() -> None:
    metrics = PipelineMetrics()
    metrics.set_consumer_lag({("uploads", 0): 3, ("uploads", 1): 7})
    asyncio.run(report_upload_lag(RevokedMidway(), "uploads", metrics))  # must not raise
    assert lag_samples(metrics) == {
        'screening_consumer_lag_messages{partition="0",topic="uploads"}': 5.0,
        'screening_consumer_lag_messages{partition="1",topic="uploads"}': 7.0,  # still owned
    }


@pytest.fixture
def always_503() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/image.jpg"
    server.shutdown()
    thread.join(5)


def test_a_fetch_with_no_time_left_for_a_retry_reports_its_real_cause(always_503: str) -> None:
    settings = Settings(
        bootstrap_servers="unused:9092",
        worker_id="w1",
        fetch_allow_networks="127.0.0.1/32",
        fetch_attempts=3,
        fetch_backoff_seconds=5.0,
        fetch_deadline_seconds=2.0,
    )
    screener = screener_for(settings)
    event = {
        "schema_version": 1,
        "upload_id": "u-503",
        "content": {"kind": "url", "url": always_503},
    }

    async def main() -> Any:
        try:
            return await screener.screen(json.dumps(event).encode(), b"u-503", SOURCE)
        finally:
            await screener.close()

    letter = asyncio.run(main()).dead_letter
    assert (letter.stage, letter.reason, letter.attempts) == ("fetch", "http_5xx", 1)


def test_an_unhashable_content_kind_is_an_invalid_event_keyed_by_its_body() -> None:
    settings = Settings(bootstrap_servers="unused:9092", worker_id="w1")
    screener = screener_for(settings)
    raw = b'{"schema_version": 1, "upload_id": "x-1", "content": {"kind": [1]}}'
    outcome = asyncio.run(screener.screen(raw, b"some-key", SOURCE))
    letter = outcome.dead_letter
    assert letter is not None
    assert (letter.stage, letter.reason, letter.upload_id) == ("parse", "invalid_event", "x-1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("none", None), ("NONE", None), ("Review", Action.REVIEW), (" BLOCK ", Action.BLOCK)],
)
def test_on_error_reads_in_any_case(
    monkeypatch: pytest.MonkeyPatch, text: str, expected: Action | None
) -> None:
    monkeypatch.setenv("PIPELINE_ON_ERROR", text)
    assert load_settings().on_error == expected


def test_a_bad_on_error_names_the_values_it_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_ON_ERROR", "allow")
    with pytest.raises(ConfigError, match="none, review or block"):
        load_settings()
