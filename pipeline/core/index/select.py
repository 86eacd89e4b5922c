"""Which Hamming index serves a list of a given size at a given radius: the documented rule.

Rule (from ``pipeline bench index`` on this machine kind, see README "Index selection"):
multi-index hashing for every list of 10,000 entries or more; below that the brute-force scan,
whose whole array fits in cache and answers in microseconds without any build or compile cost.
The BK-tree is never the automatic choice: at radius 8-12 on 64-bit pHashes it must visit a
third or more of its nodes (distances between unrelated images bunch around 28-32 bits), and
even at radius 4 it only draws level with MIH. It stays available by name for comparison.
"""

from __future__ import annotations

from pipeline.core.index.base import BruteForceIndex, HammingIndex
from pipeline.core.index.bktree import BKTree
from pipeline.core.index.mih import MultiIndexHash

INDEX_KINDS: tuple[str, ...] = ("auto", "bktree", "mih", "scan")

#: Below this many entries a linear scan is as fast as any index and needs no build.
SCAN_BELOW = 10_000


def choose_index_kind(expected_size: int, radius: int) -> str:
    """The kind ``auto`` resolves to for this list size and search radius."""
    del radius  # MIH adapts its chunk count to the radius itself (mih.choose_chunks).
    return "scan" if expected_size < SCAN_BELOW else "mih"


def build_hamming_index(kind: str, expected_size: int, radius: int) -> HammingIndex:
    """A new, empty index of ``kind`` ("auto", "bktree", "mih" or "scan").

    Raises ValueError for an unknown kind.
    """
    if kind == "auto":
        kind = choose_index_kind(expected_size, radius)
    if kind == "mih":
        return MultiIndexHash(expected_size=expected_size, radius=radius)
    if kind == "bktree":
        return BKTree(capacity=max(1024, expected_size))
    if kind == "scan":
        return BruteForceIndex()
    raise ValueError(f"unknown index kind {kind!r}; choose one of {INDEX_KINDS}")
