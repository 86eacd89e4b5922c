"""numba-compiled inner loops shared by the Hamming indexes.

Owns only arithmetic over numpy arrays; no Python objects, no allocation policy. Every function
is ``nopython`` and, where numba can keep one, cached on disk (:func:`njit_cached`) so a worker's
second start does not pay the compile time again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


def njit_cached(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(**options)`` with numba's on-disk cache where numba finds a place for it.

    numba keeps a module's cache in the first writable one of ``NUMBA_CACHE_DIR``, the
    ``__pycache__`` beside the source, and the user's cache directory under ``$HOME``. A
    root-owned install run by a user without a writable home (the Docker image: ``HOME`` is
    ``/nonexistent``) has none, and ``njit(cache=True)`` then raises at import ("no locator
    available"), so no command could start. There the function is compiled in memory instead:
    the same code, a few seconds of compiling when a process first builds a large index (~5 s
    for MIH, ~3.5 s for the BK-tree, measured) rather than a failed start. Set
    ``NUMBA_CACHE_DIR`` to a writable directory to keep the cache (the image does). Any other
    numba error is raised.
    """

    def decorate(function: Callable[..., Any]) -> Any:
        try:
            return numba.njit(cache=True, **options)(function)
        except RuntimeError as exc:
            if "no locator available" not in str(exc):
                raise
            return numba.njit(**options)(function)

    return decorate


@njit_cached(inline="always")
def popcount64(x: np.uint64) -> int:
    """Set bits of a uint64 (SWAR; LLVM lowers it to POPCNT where the CPU has one)."""
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return int((x * _H01) >> np.uint64(56))


@njit_cached()
def scan_within(
    hashes: np.ndarray,
    ids: np.ndarray,
    count: int,
    query: np.uint64,
    radius: int,
    out_ids: np.ndarray,
    out_dist: np.ndarray,
    found: int,
) -> int:
    """Append every (id, distance) within ``radius`` among the first ``count`` slots.

    Writes at ``out_*[found:]`` while there is room and returns the new total, which may exceed
    the buffers' length: the caller then grows them and asks again.
    """
    cap = out_ids.shape[0]
    for i in range(count):
        d = popcount64(hashes[i] ^ query)
        if d <= radius:
            if found < cap:
                out_ids[found] = ids[i]
                out_dist[found] = d
            found += 1
    return found
