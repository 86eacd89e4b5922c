"""The worker trims its heap once after each burst of uploads, never while busy.

glibc keeps what Python frees: after a backlog drained, a worker stayed at ~1 GB.
tests/integration/test_worker_memory.py sees the resident size come back end to end.
"""

from __future__ import annotations

import platform

import pytest

from pipeline.memory import IdleTrim, glibc_malloc_trim


def test_nothing_is_trimmed_before_the_first_upload() -> None:
    idle = IdleTrim(idle_seconds=2)
    assert not any(idle.due(0, now) for now in range(100))


def test_one_trim_per_burst_once_idle_long_enough() -> None:
    idle = IdleTrim(idle_seconds=2)
    assert not idle.due(5, 10.0)  # uploads are being taken
    assert not idle.due(9, 11.0)
    assert not idle.due(9, 12.5)  # idle for 1.5 s only
    assert idle.due(9, 13.0)  # idle for 2 s: trim
    assert not idle.due(9, 14.0)  # once
    assert not idle.due(9, 60.0)
    assert not idle.due(10, 61.0)  # the next burst
    assert idle.due(10, 63.5)


def test_never_while_uploads_keep_coming() -> None:
    idle = IdleTrim(idle_seconds=2)
    assert not any(idle.due(taken, taken * 1.0) for taken in range(1, 100))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_malloc_trim_is_callable_on_glibc() -> None:
    trim = glibc_malloc_trim()
    assert trim is not None
    assert trim() in (True, False)
