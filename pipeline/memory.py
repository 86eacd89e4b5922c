"""Handing the memory of a burst back to the system once the worker is idle again.

Python frees an upload's bytes as soon as it is screened, but glibc's allocator keeps what is
freed for reuse: each thread's arena and the main heap stay as large as they ever were (and
glibc raises its mmap threshold to the size of freed blocks, so blocks of a few hundred KB stop
being unmapped on free). After a backlog of inline uploads drained, a worker stayed at ~1 GB.
``malloc_trim(0)`` gives every arena's free pages back (also those in the middle of a heap).

:class:`IdleTrim` decides when: once after each burst, when no upload has been in flight
(taken and not yet screened) and none taken for ``idle_seconds``; never while an upload is
being screened, however long it takes (a slow URL, a large image), nor while one waits for a
screening slot. :func:`glibc_malloc_trim` is the call, or
None where the C library is not glibc (musl, macOS), where there is nothing to do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
from collections.abc import Callable

log = logging.getLogger(__name__)

#: How long the worker must have had no upload in flight and taken none before it trims.
IDLE_SECONDS = 2.0


def glibc_malloc_trim() -> Callable[[], bool] | None:
    """``malloc_trim(0)`` of the process's glibc (True if it released memory), or None when
    the C library is not glibc or has no malloc_trim."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def malloc_trim() -> bool:
        return bool(trim(0))

    return malloc_trim


class IdleTrim:
    """Trims once a burst is over: call :meth:`due` every second or so with the number of
    uploads taken so far, the number in flight and the monotonic time; it says when to trim.
    Pure bookkeeping."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self._idle_seconds = idle_seconds
        self._last_seen = (0, 0)
        self._last_change = 0.0
        self._trimmed_at_taken = 0

    def due(self, taken: int, in_flight: int, now: float) -> bool:
        """True once per burst: uploads were taken since the last trim, and for
        ``idle_seconds`` since a call first saw none in flight, none was taken or in flight."""
        if (taken, in_flight) != self._last_seen or in_flight > 0:
            self._last_seen, self._last_change = (taken, in_flight), now
            return False
        if taken == self._trimmed_at_taken or now - self._last_change < self._idle_seconds:
            return False
        self._trimmed_at_taken = taken
        return True
