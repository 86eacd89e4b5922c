"""`pipeline bench pipeline` reads the CPU time of a whole process tree from /proc: children
and grandchildren while they run, and those that ended through their parent's cutime/cstime."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from pipeline.bench.pipeline import tree_cpu_seconds

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

#: A parent that burns ~0.3 s of CPU in a child it waits for (reaped: only its cutime holds
#: it), then starts another that burns ~0.3 s and stays alive, then waits on stdin.
TREE = """
import subprocess, sys, time
burn = "import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass"
subprocess.run([sys.executable, "-c", burn], check=True)
alive = subprocess.Popen([sys.executable, "-c", burn + "\\nimport sys; sys.stdin.read()"],
                         stdin=subprocess.PIPE)
print("started", flush=True)
sys.stdin.read()
alive.kill()
"""


def test_tree_cpu_counts_live_and_reaped_descendants() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", TREE], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline() == b"started\n"
        deadline = time.monotonic() + 30
        seconds = tree_cpu_seconds(parent.pid)
        while seconds < 0.6 and time.monotonic() < deadline:  # the live child is still burning
            time.sleep(0.1)
            seconds = tree_cpu_seconds(parent.pid)
        assert seconds >= 0.6, "both burning children counted"
        assert seconds < 5
    finally:
        parent.kill()
        parent.wait()
    assert tree_cpu_seconds(parent.pid) == 0.0, "a process that is gone counts nothing"
