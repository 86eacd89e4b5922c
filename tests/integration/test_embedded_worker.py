"""Embedded mode as the README tells a new user: `pipeline worker` with no broker address, then
`pipeline submit` from another shell. The worker's broker port is picked at start, so the worker
must print the line to paste; before, it printed nothing and `submit` had no address to use.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.adapters.broker import free_port
from tests.imagegen import encode, synthetic_image

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASTE_LINE = re.compile(r"^export (PIPELINE_BOOTSTRAP_SERVERS=127\.0\.0\.1:\d+)  # paste into ")


@pytest.fixture
def embedded_worker(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    """`pipeline worker` on its embedded broker, stdout a pipe read line by line."""
    env = {
        k: v
        for k, v in os.environ.items()
        # No broker address: embedded mode. No PYTHONUNBUFFERED: a user's shell lacks it, so
        # the line must be flushed by the worker to reach a pipe (or a terminal log) at once.
        if k not in {"PIPELINE_BOOTSTRAP_SERVERS", "PYTHONUNBUFFERED"}
    }
    env.update(PIPELINE_WEB_PORT=str(free_port()), PIPELINE_HASH_PROCESSES="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,  # wherever the user happens to be
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_embedded_worker_prints_the_address_line_to_paste_and_it_works(
    embedded_worker: tuple[subprocess.Popen[str], queue.Queue[str]], tmp_path: Path
) -> None:
    process, lines = embedded_worker
    seen: list[str] = []
    assignment = None
    while assignment is None:
        try:
            seen.append(lines.get(timeout=60))
        except queue.Empty:
            raise AssertionError(f"no address line from the worker; stdout: {seen}") from None
        match = PASTE_LINE.match(seen[-1])
        assignment = match.group(1) if match else None
    assert process.poll() is None

    # What the user does next in another shell: paste the line, submit, get a verdict.
    name, value = assignment.split("=", 1)
    image = tmp_path / "photo.jpg"
    image.write_bytes(encode(synthetic_image(5)))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "submit", str(image), "--wait", "90"],
        env={**os.environ, name: value},
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.match(r"\s*allow  photo\.jpg\s+no match", result.stdout), result.stdout
