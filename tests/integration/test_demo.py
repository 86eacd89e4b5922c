"""The README's first line ends in `pipeline demo`: run it for real (embedded broker, worker
process, demo list, demo uploads) and check the verdicts it prints and the metrics it serves.

Its stdout is a pipe here, as in `pipeline demo | tee log`, and without PYTHONUNBUFFERED (which
this environment sets, and which hid that verdict lines sat in the buffer until exit).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pipeline.adapters.broker import free_port
from pipeline.demo.hashlist import demo_uploads
from tests.integration.harness import KafkaIO, http_get, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def environment(**settings: str) -> dict[str, str]:
    """This process's environment with ``settings``, minus PYTHONUNBUFFERED: a new user's
    shell does not set it, so output must be flushed by the code, not by the environment."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return {**env, **settings}


@pytest.fixture
def demo() -> Iterator[tuple[subprocess.Popen[str], int, list[str]]]:
    port = free_port()
    env = environment(PIPELINE_WEB_PORT=str(port), PIPELINE_HASH_PROCESSES="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        lines.extend(process.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield process, port, lines
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(30)
        reader.join(5)


def ctrl_c(process: subprocess.Popen[str]) -> None:
    """What Ctrl-C in a terminal does: SIGINT to every process of the foreground group."""
    os.killpg(process.pid, signal.SIGINT)


@pytest.mark.parametrize("stop", [subprocess.Popen.terminate, ctrl_c], ids=["sigterm", "ctrl-c"])
def test_demo_prints_verdicts_serves_metrics_and_keeps_running(
    demo: tuple[subprocess.Popen[str], int, list[str]],
    stop: Callable[[subprocess.Popen[str]], None],
) -> None:
    process, port, lines = demo
    names = [name for name, _ in demo_uploads()]
    # Read from the pipe while the demo runs: lines flushed one by one, not at exit.
    wait_until(
        lambda: "worker keeps running" in "".join(lines) or process.poll() is not None,
        120,
        what="the demo's verdicts",
    )
    output = "".join(lines)
    assert process.poll() is None, f"the demo exited early:\n{output}"
    verdict_lines = {
        line.split()[1]: line
        for line in output.splitlines()
        if line.startswith("  ") and len(line.split()) >= 2 and line.split()[1] in names
    }
    verdicts = {name: line.split()[0] for name, line in verdict_lines.items()}
    expected = {name: "block" if name.startswith("known-") else "allow" for name in names}
    assert verdicts == expected, output
    # Each line explains itself: the list's action and distance of threshold per algorithm.
    assert re.search(
        r"known-1-resized\.jpg +demo-known \(block\): .*known-1-phash phash \d+/8",
        verdict_lines["known-1-resized.jpg"],
    ), output
    assert "known-0-md5 md5 identical" in verdict_lines["known-0-identical.jpg"], output
    assert verdict_lines["unrelated-100.jpg"].rstrip().endswith("no match"), output
    assert "pipeline submit FILE --wait 10 --json" in output  # where the whole verdicts are
    assert "\x1b[" not in output, "terminal escapes in the demo's output (Faust's spinner)"

    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    assert 'screening_verdicts_total{action="block"} 4.0' in body.decode()
    assert http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200

    # Stopping the demo (SIGTERM from a process manager, or Ctrl-C) stops its worker and its
    # broker too; before, they outlived a SIGTERM. Ctrl-C also reaches the hashing processes,
    # which must leave the shutdown to the worker instead of printing a traceback each.
    broker = re.search(r"broker: 127\.0\.0\.1:(\d+)", output)
    assert broker is not None, output
    stop(process)
    assert process.wait(40) == 130
    for leftover in (port, int(broker.group(1))):
        wait_until(lambda p=leftover: not listening(p), 15, what=f"port {leftover} released")
    time.sleep(0.5)  # the reader thread drains what shutdown printed
    assert "Traceback" not in "".join(lines), "".join(lines)


def test_a_second_demo_on_a_taken_web_port_stops_at_once_in_one_line() -> None:
    """A running demo answers /readyz on the port; a second demo must not take that answer for
    its own worker's and then wait a minute for verdicts."""

    class RunningDemosReadiness(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    first = ThreadingHTTPServer(("127.0.0.1", free_port()), RunningDemosReadiness)
    threading.Thread(target=first.serve_forever, daemon=True).start()
    port = first.server_address[1]
    try:
        second = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "demo", "--exit-after-verdicts"],
            env=environment(PIPELINE_WEB_PORT=str(port), PIPELINE_HASH_PROCESSES="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = second.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(second.pid, signal.SIGTERM)  # the demo stops its worker and broker
            second.communicate(timeout=30)
            raise AssertionError("a second demo on a taken port did not stop at once") from None
    finally:
        first.shutdown()
        first.server_close()
    assert second.returncode == 2, stdout + stderr
    assert stdout == ""
    assert stderr.splitlines() == [
        f"pipeline: 127.0.0.1:{port} is in use (another pipeline demo or worker?): stop it, or "
        "set PIPELINE_WEB_PORT to a free port"
    ]


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_demo_traffic_publishes_the_list_and_produces_steady_uploads(kafka: KafkaIO) -> None:
    """docker-compose's demo producer: the demo list, then uploads at a rate, then it stops."""
    env = {**os.environ, **kafka.topics.env}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "demo-traffic", "--rate", "50", "--count", "12"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    uploads = kafka.read_all("uploads")
    assert len(uploads) == 12
    assert {u["metadata"]["file"] for u in uploads} == {name for name, _ in demo_uploads()}
    configs = [r for r in kafka.read_all("hashlists") if "name" in r]
    assert [c["name"] for c in configs] == ["demo-known"]
