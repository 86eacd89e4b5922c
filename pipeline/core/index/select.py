"""Which Hamming index serves a list of a given size at a given radius: the documented rule.

``auto`` picks multi-index hashing (MIH) from 10,000 entries when the radius is at most 12,
from 30,000 entries at radius 13-17, and the linear scan otherwise, including every radius
above 17. The radius is the one the index is searched at: the largest enabled threshold of the
lists using that algorithm (:class:`pipeline.core.matching.Matcher` plans and re-plans it).

Queries/s of MIH over the scan (``scan`` is :class:`BruteForceIndex`, as the matcher uses it;
both built by :func:`build_hamming_index`), on the 2-vCPU development machine, one pinned core,
clustered pHash-like hashes, measured with::

    pipeline bench index --sizes 3000,10000,30000,100000 --indexes scan,mih,bktree --seconds 0.5
    pipeline bench index --sizes 2000,5000 --indexes scan,mih --seconds 0.5 --no-pybktree
    pipeline bench index --sizes 10000,30000,100000,1000000 --radii 16,20,24,32 \
        --indexes scan,mih --seconds 0.3 --no-pybktree
    pipeline bench index --sizes 30000,1000000 --radii 17,18,19 --indexes scan,mih \
        --seconds 0.3 --no-pybktree

    entries      r=4    r=8    r=12   r=16   r=17   r=18   r=19   r=20   r=24   r=32
    2,000        1.1    1.1    0.89
    3,000        1.2    1.1    0.94
    5,000        1.4    1.3    1.0
    10,000       1.8    1.6    1.2    0.95                        0.74   0.61   0.77
    30,000       3.9    2.9    2.1    1.5    1.3    1.1    0.93   0.84   0.58   0.60
    100,000      10     7.7    4.1    2.4                         0.85   0.59   0.62
    1,000,000                         2.5    1.9    1.2    0.9    0.74   0.58   0.57

Below 10,000 entries both answer in under 10 us (the scan does >= 80k queries/s), far below
the cost of hashing an upload, while MIH holds 9-35x the bytes per hash there (fixed-size chunk
directories): the scan stays until MIH's gain is real. Past radius 17 MIH is slower than the
scan: with chunks of 6-9 bits probed at 2 bits each its candidates approach the whole list,
and it holds 5-7x the memory. The BK-tree is never the automatic choice: at radius 8-12 on
64-bit pHashes it visits a third or more of its nodes (distances between unrelated images
bunch around 28-32 bits) and measured 2.5-50x slower than MIH at 10k-100k entries; it stays
available by name.

256-bit hashes (PDQ, ``bits=256``) have their own pair: :class:`MultiIndexHash256` from
:data:`MIH256_FROM` entries at radius up to :data:`MIH256_MAX_RADIUS`, else
:class:`BruteForceIndex256`; there is no 256-bit BK-tree, so ``bktree`` means ``auto`` there
(:func:`kind_for_width`).
"""

from __future__ import annotations

from pipeline.core.index.base import BruteForceIndex, HammingIndex
from pipeline.core.index.bktree import BKTree
from pipeline.core.index.mih import MultiIndexHash
from pipeline.core.index.mih256 import MultiIndexHash256
from pipeline.core.index.wide import WIDE_BITS, BruteForceIndex256

INDEX_KINDS: tuple[str, ...] = ("auto", "bktree", "mih", "scan")

#: Kinds whose build depends on the radius the index will be searched at.
RADIUS_DEPENDENT: frozenset[str] = frozenset({"auto", "mih"})

#: (largest radius, smallest list size) where ``auto`` uses MIH; any larger radius: the scan.
MIH_FROM: tuple[tuple[int, int], ...] = ((12, 10_000), (17, 30_000))


#: 256-bit: the smallest list ``auto`` serves with MIH, and the largest radius it does so at.
MIH256_FROM = 20_000
MIH256_MAX_RADIUS = 47


def kind_for_width(kind: str, bits: int) -> str:
    """``kind`` as it applies to hashes of ``bits`` bits (``bktree`` exists for 64 only)."""
    return "auto" if kind == "bktree" and bits != 64 else kind


def choose_index_kind(expected_size: int, radius: int, bits: int = 64) -> str:
    """The kind ``auto`` resolves to for this list size, search radius and hash width."""
    if bits == WIDE_BITS:
        wide = expected_size >= MIH256_FROM and radius <= MIH256_MAX_RADIUS
        return "mih" if wide else "scan"
    for max_radius, min_size in MIH_FROM:
        if radius <= max_radius:
            return "mih" if expected_size >= min_size else "scan"
    return "scan"


def mih_ever(radius: int, bits: int = 64) -> bool:
    """Whether ``auto`` would use MIH at this radius for a large enough list."""
    return radius <= (MIH256_MAX_RADIUS if bits == WIDE_BITS else MIH_FROM[-1][0])


def build_hamming_index(kind: str, expected_size: int, radius: int, bits: int = 64) -> HammingIndex:
    """A new, empty index of ``kind`` ("auto", "bktree", "mih" or "scan") for a list of about
    ``expected_size`` hashes of ``bits`` bits (64, or 256 for PDQ) searched at ``radius``: the
    one constructor the matcher and ``pipeline bench index`` both use.

    Raises ValueError for an unknown kind or width.
    """
    if bits not in (64, WIDE_BITS):
        raise ValueError(f"no Hamming index for {bits}-bit hashes")
    kind = kind_for_width(kind, bits)
    if kind == "auto":
        kind = choose_index_kind(expected_size, radius, bits)
    if bits == WIDE_BITS:
        if kind == "mih":
            return MultiIndexHash256(expected_size=expected_size, radius=radius)
        if kind == "scan":
            return BruteForceIndex256()
        raise ValueError(f"unknown index kind {kind!r}; choose one of {INDEX_KINDS}")
    if kind == "mih":
        return MultiIndexHash(expected_size=expected_size, radius=radius)
    if kind == "bktree":
        return BKTree(capacity=max(1024, expected_size))
    if kind == "scan":
        return BruteForceIndex()
    raise ValueError(f"unknown index kind {kind!r}; choose one of {INDEX_KINDS}")
