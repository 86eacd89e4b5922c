"""``pipeline worker --workers N``'s parent: what each child gets, the signals it forwards and
its restart policy, with small real child processes standing in for workers (the real
workers on a real broker: tests/integration/test_worker_group.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline import worker_group
from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.worker_group import WorkerGroup, check_group, child_environment

SETTINGS = Settings(bootstrap_servers="127.0.0.1:9092", worker_id="host-a", web_port=7000)


def test_each_child_gets_its_own_port_id_and_share_of_the_cores() -> None:
    envs = [child_environment(SETTINGS, i, 2, {"KEEP": "1"}) for i in range(2)]
    assert [e["PIPELINE_WEB_PORT"] for e in envs] == ["7000", "7001"]
    assert [e["PIPELINE_WORKER_ID"] for e in envs] == ["host-a-0", "host-a-1"]
    assert all(e["KEEP"] == "1" for e in envs)
    cores = os.cpu_count() or 1
    assert envs[0]["PIPELINE_HASH_PROCESSES"] == str(max(1, cores // 2))


def test_a_hash_process_count_that_was_set_is_each_child_s() -> None:
    """Set (PIPELINE_HASH_PROCESSES, inherited by the children), it is not divided."""
    explicit = Settings(bootstrap_servers="b:1", web_port=7000, hash_processes=3)
    assert "PIPELINE_HASH_PROCESSES" not in child_environment(explicit, 1, 4, {})


@pytest.mark.parametrize(
    ("settings", "count", "said"),
    [
        (Settings(worker_id="x"), 2, "PIPELINE_BOOTSTRAP_SERVERS"),
        (SETTINGS.model_copy(update={"web_port": 0}), 2, "fixed PIPELINE_WEB_PORT"),
        (SETTINGS.model_copy(update={"web_port": 65535}), 2, "past 65535"),
        (SETTINGS, 0, "at least 1"),
    ],
)
def test_groups_that_cannot_run_are_refused_with_a_reason(
    settings: Settings, count: int, said: str
) -> None:
    with pytest.raises(ConfigError, match=said):
        check_group(settings, count)


def stand_in(script: str) -> list[str]:
    return [sys.executable, "-c", script]


#: A child that records its port, then waits for SIGTERM and exits 0 on it.
OBEDIENT = """
import os, signal, sys, time
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
open(os.environ["OUT"] + "/" + os.environ["PIPELINE_WEB_PORT"], "a").write(f"{os.getpid()}\\n")
while not stop:
    time.sleep(0.02)
"""


def run_in_thread(group: WorkerGroup) -> tuple[threading.Thread, list[int]]:
    """The group's run loop in a thread (signal handlers are the main thread's: the test
    calls request_stop, as the SIGTERM handler does)."""
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(group.run(handle_signals=False)), daemon=True
    )
    thread.start()
    return thread, codes


def wait_for(check: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def pids(out: Path, port: int) -> list[int]:
    path = out / str(port)
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_stop_reaches_every_child_and_a_killed_child_is_restarted(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path)}
    group = WorkerGroup(
        SETTINGS, 2, command=stand_in(OBEDIENT), environment=env,
        restart_backoff_base_seconds=0.01,
    )  # fmt: skip
    thread, codes = run_in_thread(group)
    wait_for(lambda: pids(tmp_path, 7000) and pids(tmp_path, 7001))
    (first,) = pids(tmp_path, 7001)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: len(pids(tmp_path, 7001)) == 2)
    restarted = pids(tmp_path, 7001)[1]
    group.request_stop(signal.SIGTERM)
    thread.join(30)
    assert codes == [0], "every child stopped cleanly on SIGTERM"
    for pid in (pids(tmp_path, 7000)[0], restarted):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert group.children[1].exit_codes == [-signal.SIGKILL]


def test_a_child_that_keeps_failing_at_start_stops_the_group_with_exit_1(tmp_path: Path) -> None:
    group = WorkerGroup(
        SETTINGS, 2, command=stand_in("import sys; sys.exit(3)"), environment=dict(os.environ),
        restart_backoff_base_seconds=0.01,
    )  # fmt: skip
    thread, codes = run_in_thread(group)
    thread.join(60)
    assert codes == [1]
    failing = max(group.children, key=lambda c: len(c.exit_codes))
    assert failing.exit_codes == [3] * worker_group.MAX_QUICK_FAILURES


def test_a_real_sigterm_to_the_parent_stops_the_children(tmp_path: Path) -> None:
    """The parent as a process of its own (signal handlers installed for real)."""
    script = (
        "import sys; from pipeline.config import Settings; from pipeline.worker_group import "
        "WorkerGroup; s = Settings(bootstrap_servers='b:1', worker_id='w', web_port=7100); "
        f"sys.exit(WorkerGroup(s, 2, command=[sys.executable, '-c', {OBEDIENT!r}]).run())"
    )
    env = {**os.environ, "OUT": str(tmp_path), "PYTHONPATH": str(Path.cwd())}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        wait_for(lambda: pids(tmp_path, 7100) and pids(tmp_path, 7101))
        children = pids(tmp_path, 7100) + pids(tmp_path, 7101)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(30) == 0
        for pid in children:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        parent.kill()
