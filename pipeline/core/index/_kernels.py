"""numba-compiled inner loops shared by the Hamming indexes.

Owns only arithmetic over numpy arrays; no Python objects, no allocation policy. Every function
is ``nopython`` and cached on disk by numba (``cache=True``) so a worker's second start does not
pay the compile time again.
"""

from __future__ import annotations

import numba
import numpy as np

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@numba.njit(cache=True, inline="always")  # type: ignore[untyped-decorator]
def popcount64(x: np.uint64) -> int:
    """Set bits of a uint64 (SWAR; LLVM lowers it to POPCNT where the CPU has one)."""
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return int((x * _H01) >> np.uint64(56))


@numba.njit(cache=True)  # type: ignore[untyped-decorator]
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
