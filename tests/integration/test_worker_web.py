"""What a worker's web endpoint and its state gauges say, checked on real workers.

The web server listens where PIPELINE_WEB_HOST says (the kernel's table of listening sockets
is the witness), and after a rebalance a worker reports lag only for partitions it owns, so
``sum(screening_consumer_lag_messages)`` over workers is no phantom backlog.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import KafkaIO, WorkerProcess, http_get, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a socket listening on ``port``, from /proc/net/tcp."""
    addresses: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, local_port = local.split(":")
        if state == "0A" and int(local_port, 16) == port:  # 0A: LISTEN
            addresses.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return addresses


def test_the_web_server_binds_the_configured_host_only(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = start_worker(wait_ready=False, web_host="127.0.0.2")
    url = f"http://127.0.0.2:{worker.web_port}/readyz"

    def ready() -> bool:
        try:
            return http_get(url, timeout=1)[0] == 200
        except OSError:
            return False

    wait_until(ready, 90, what="/readyz on 127.0.0.2")
    assert listening_addresses(worker.web_port) == {"127.0.0.2"}


def lag_partitions(worker: WorkerProcess) -> set[str]:
    return set(re.findall(r'^screening_consumer_lag_messages\{partition="(\d+)"', worker.metrics(),
                          re.MULTILINE))  # fmt: skip


def test_after_a_rebalance_each_worker_reports_lag_only_for_its_own_partitions(
    kafka: KafkaIO, start_worker: Callable[..., WorkerProcess]
) -> None:
    first = start_worker(worker_id="lag-a")
    for i in range(8):  # something on every partition, so every high watermark is known
        kafka.upload(f"warm-{i}", b"not an image")
    wait_until(lambda: len(lag_partitions(first)) == 4, 30, what="lag series of all 4 partitions")
    second = start_worker(worker_id="lag-b")

    def split() -> bool:
        mine, theirs = lag_partitions(first), lag_partitions(second)
        return bool(mine) and bool(theirs) and not (mine & theirs)

    wait_until(split, 60, interval=1, what="disjoint lag series after the rebalance")
