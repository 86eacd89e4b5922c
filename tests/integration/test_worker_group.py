"""``pipeline worker --workers 2`` on a real broker: two worker processes in one consumer group
split the uploads (JSON and binary inline forms mixed), none is lost, each serves its own
/readyz and /metrics on PORT and PORT+1, and SIGTERM to the parent stops both cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.application.uploads import binary_record, inline_event
from pipeline.core.hashlist import ListConfig
from tests.imagegen import encode, synthetic_image
from tests.integration.harness import REPO, KafkaIO, Topics, http_get, wait_until
from tests.integration.lists import entries_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UPLOADS = 24


def consecutive_free_ports(count: int) -> int:
    """A port P such that P .. P+count-1 are free now (the group's port scheme)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        free = True
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    free = False
        if free:
            return base
    raise AssertionError("no run of free ports")


@pytest.fixture
def group(topics: Topics, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = consecutive_free_ports(2)
    log_path = tmp_path / "group.log"
    env = {
        **os.environ,
        **topics.env,
        "PIPELINE_WORKER_ID": "grp",
        "PIPELINE_WEB_PORT": str(port),
        "PIPELINE_SESSION_TIMEOUT_SECONDS": "6",
        "PIPELINE_BROKER_FETCH_MAX_WAIT_MS": "50",
        "PIPELINE_HASH_PROCESSES": "1",
    }
    with log_path.open("ab") as log:
        parent = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "worker", "--workers", "2"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
        )  # fmt: skip
    yield parent, port, log_path
    if parent.poll() is None:
        parent.send_signal(signal.SIGTERM)
        try:
            parent.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(parent.pid, signal.SIGKILL)


def ready(port: int) -> bool:
    try:
        return http_get(f"http://127.0.0.1:{port}/readyz", timeout=1)[0] == 200
    except OSError:
        return False


def test_two_workers_split_the_uploads_and_lose_none(
    kafka: KafkaIO, group: tuple[subprocess.Popen[bytes], int, Path]
) -> None:
    parent, port, log_path = group
    listed = ListConfig.create("known", kind="deny", action="block")
    kafka.publish(listed, entries_for("known", seed=1))

    def both_ready() -> bool:
        assert parent.poll() is None, log_path.read_text(errors="replace")[-4000:]
        return ready(port) and ready(port + 1)

    wait_until(both_ready, 150, what="both workers' /readyz")
    topic = kafka.topics.name("uploads")
    ids = set()
    for i in range(UPLOADS):
        data = encode(synthetic_image(1 if i % 6 == 0 else 100 + i))
        event = inline_event(f"g{i}", f"g{i}.jpg", data)
        ids.add(event.upload_id)
        if i % 2:  # half in the binary inline form
            value, headers = binary_record(event)
            kafka._producer.send(topic, key=event.upload_id.encode(), value=value, headers=headers)
        else:
            kafka.send("uploads", event.upload_id, event.model_dump_json().encode())
    kafka._producer.flush(timeout=30)

    verdicts = kafka.verdicts_for(ids, timeout=180)
    assert set(verdicts) == ids, "every upload screened"
    assert not [v for v in verdicts.values() if v["error"]], "binary and JSON forms both screen"
    blocked = {u for u, v in verdicts.items() if v["action"] == "block"}
    assert blocked == {f"g{i}" for i in range(0, UPLOADS, 6)}
    screened_by = {v["worker_id"] for v in verdicts.values()}
    assert screened_by == {"grp-0", "grp-1"}, f"both workers took uploads: {screened_by}"
    for child_port in (port, port + 1):  # each child's own metrics
        metrics = http_get(f"http://127.0.0.1:{child_port}/metrics")[1].decode()
        assert "screening_verdicts_total" in metrics

    parent.send_signal(signal.SIGTERM)
    assert parent.wait(120) == 0, log_path.read_text(errors="replace")[-4000:]
    assert not ready(port)
    assert not ready(port + 1)
