"""Which Hamming index serves a list of a given size at a given radius: the documented rule.

``auto`` picks multi-index hashing (MIH) from 10,000 entries when the radius is at most 12,
from 30,000 entries at radius 13-16, and the linear scan otherwise, including every radius
above 16. The radius is the one the index is searched at: the largest enabled threshold of the
lists using that algorithm (:class:`pipeline.core.matching.Matcher` plans and re-plans it).

Measured on the 2-vCPU development machine, one pinned core, clustered pHash-like hashes,
queries/s of MIH over the scan (``scan`` is :class:`BruteForceIndex`, as the matcher uses it)::

    pipeline bench index --sizes 3000,10000,30000,100000 --indexes scan,mih,bktree --seconds 0.5
    pipeline bench index --sizes 2000,5000,10000 --indexes scan,mih --seconds 0.5
    pipeline bench index --sizes 30000,1000000 --radii 12,16,24 --indexes scan,mih \\
        --seconds 0.3 --no-pybktree
    pipeline bench index --sizes 10000,100000 --radii 16,24,32 --indexes scan,mih --seconds 0.3

    entries      r=4    r=8    r=12   r=16   r=24   r=32
    2,000        1.0    1.0    0.93
    5,000        1.4    1.3    1.0
    10,000       1.6    1.6    1.2    0.95   1.1    1.1
    30,000       3.8    3.1    2.1    1.5    1.1
    100,000      10     7.8    4.5    2.2    0.98   0.99
    1,000,000                  6.7    2.7    0.97

Below 10,000 entries both answer in under 10 us (scan >= 80k queries/s), far below the cost of
hashing an upload, while MIH holds 10-35x the bytes per hash (fixed-size chunk directories), so
the scan stays until MIH's gain is real. From radius 17 up MIH gains at most 1.4x (r = 18-20
at 1M) and none from r = 24, for 6-10x the memory: with chunks of 7-8 bits probed at 2 bits
each, MIH's candidates approach the whole list. The BK-tree is never the automatic choice: at
radius 8-12 on 64-bit pHashes it visits a third or more of its nodes (distances between
unrelated images bunch around 28-32 bits) and measured 3-20x slower than MIH at 10k-100k
entries; it stays available by name.
"""

from __future__ import annotations

from pipeline.core.index.base import BruteForceIndex, HammingIndex
from pipeline.core.index.bktree import BKTree
from pipeline.core.index.mih import MultiIndexHash

INDEX_KINDS: tuple[str, ...] = ("auto", "bktree", "mih", "scan")

#: Kinds whose build depends on the radius the index will be searched at.
RADIUS_DEPENDENT: frozenset[str] = frozenset({"auto", "mih"})

#: (largest radius, smallest list size) where ``auto`` uses MIH; any larger radius: the scan.
MIH_FROM: tuple[tuple[int, int], ...] = ((12, 10_000), (16, 30_000))


def choose_index_kind(expected_size: int, radius: int) -> str:
    """The kind ``auto`` resolves to for this list size and search radius."""
    for max_radius, min_size in MIH_FROM:
        if radius <= max_radius:
            return "mih" if expected_size >= min_size else "scan"
    return "scan"


def mih_ever(radius: int) -> bool:
    """Whether ``auto`` would use MIH at this radius for a large enough list."""
    return radius <= MIH_FROM[-1][0]


def build_hamming_index(kind: str, expected_size: int, radius: int) -> HammingIndex:
    """A new, empty index of ``kind`` ("auto", "bktree", "mih" or "scan") for a list of about
    ``expected_size`` entries searched at ``radius``: the one constructor the matcher and
    ``pipeline bench index`` both use.

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
