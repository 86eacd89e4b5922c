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
    assert not any(idle.due(0, 0, now) for now in range(100))


def test_one_trim_per_burst_once_idle_long_enough() -> None:
    idle = IdleTrim(idle_seconds=2)
    assert not idle.due(5, 0, 10.0)  # uploads are being taken
    assert not idle.due(9, 0, 11.0)
    assert not idle.due(9, 0, 12.5)  # idle for 1.5 s only
    assert idle.due(9, 0, 13.0)  # idle for 2 s: trim
    assert not idle.due(9, 0, 14.0)  # once
    assert not idle.due(9, 0, 60.0)
    assert not idle.due(10, 0, 61.0)  # the next burst
    assert idle.due(10, 0, 63.5)


def test_never_while_uploads_keep_coming() -> None:
    idle = IdleTrim(idle_seconds=2)
    assert not any(idle.due(taken, 0, taken * 1.0) for taken in range(1, 100))


def test_never_while_an_upload_is_in_flight_however_long_it_takes() -> None:
    """Idle means nothing in flight, not only nothing new taken: the last upload of a burst
    may be a slow URL or a large image, screened long after it was taken."""
    idle = IdleTrim(idle_seconds=2)
    assert not idle.due(7, 1, 10.0)
    assert not any(idle.due(7, 1, now) for now in range(11, 300))  # screened for minutes
    assert not idle.due(7, 0, 300.0)  # done: idle from here
    assert not idle.due(7, 0, 301.0)
    assert idle.due(7, 0, 302.0)
    assert not idle.due(7, 0, 303.0)  # once


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_malloc_trim_is_callable_on_glibc() -> None:
    trim = glibc_malloc_trim()
    assert trim is not None
    assert trim() in (True, False)
