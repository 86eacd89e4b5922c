"""PDQ list entries: parsed from 64 hex digits, held in the 256-bit index, matched at 31."""

from __future__ import annotations

import random

import pytest

from pipeline.core.hashing import View
from pipeline.core.hashlist import (
    DEFAULT_THRESHOLDS,
    PDQ_MAX_THRESHOLD,
    Category,
    HashListEntry,
    ListConfig,
    parse_csv,
)
from pipeline.core.index.mih256 import MultiIndexHash256
from pipeline.core.index.wide import BruteForceIndex256
from pipeline.core.matching import Matcher
from pipeline.core.orientation import OrientationHashes
from pipeline.core.regions import Region
from pipeline.core.types import Algorithm, HashValue
from pipeline.errors import InputRejected

PDQ_HEX = "f8f8f0cce0f4e84d0e370a22028f67f0b36e2ed596623e1d33e6339c4e9c9b22"


def pdq_view(value: int) -> View:
    """An upload whose PDQ is ``value`` in every orientation, at full quality: the matcher
    searches PDQ only with its quality, which only views carry."""
    return View(
        Region.whole(64, 64), {Algorithm.PDQ: OrientationHashes((value,) * 8)}, pdq_quality=100
    )


def flip(value: int, bits: list[int]) -> int:
    for bit in bits:
        value ^= 1 << bit
    return value


def test_list_files_take_pdq_as_64_hex_digits() -> None:
    text = (
        "list,entry_id,algorithm,hash,category,source,note\n"
        f"l,e1,pdq,{PDQ_HEX.upper()},csam,,\n"
        f"l,e2,pdq,{PDQ_HEX[:16]},csam,,\n"
    )
    result = parse_csv(text)
    assert [e.hash.hex for e in result.entries] == [PDQ_HEX]
    assert [(e.line, e.reason) for e in result.errors] == [(3, "bad_hash")]


def test_pdq_thresholds_default_to_31_and_are_capped() -> None:
    assert DEFAULT_THRESHOLDS[Algorithm.PDQ] == 31
    assert ListConfig.create("l").threshold(Algorithm.PDQ) == 31
    assert ListConfig.create("l", thresholds={"pdq": 63}).threshold(Algorithm.PDQ) == 63
    with pytest.raises(InputRejected, match=f"0, {PDQ_MAX_THRESHOLD}"):
        ListConfig.create("l", thresholds={"pdq": 64})


@pytest.mark.parametrize("kind", ["auto", "mih", "scan", "bktree"])
def test_matcher_holds_and_matches_pdq_entries(kind: str) -> None:
    rng = random.Random(3)
    values = [rng.getrandbits(256) for _ in range(300)]
    entries = [
        HashListEntry("l", f"e{i}", HashValue(Algorithm.PDQ, v), Category.CSAM)
        for i, v in enumerate(values)
    ]
    matcher = Matcher(index_kind=kind)
    matcher.set_list(ListConfig.create("l", thresholds={"pdq": 31}))
    matcher.upsert(entries)
    index = matcher.hamming_index(Algorithm.PDQ)
    assert isinstance(index, MultiIndexHash256 if kind == "mih" else BruteForceIndex256)
    assert Algorithm.PDQ in matcher.algorithms_in_use()
    # A bare PDQ value has no quality to check against PDQ's floor: it is not searched.
    assert matcher.match({Algorithm.PDQ: values[7]}) == []
    near = flip(values[7], list(range(0, 240, 8)))  # 30 bits away
    found = matcher.match({}, [pdq_view(near)])
    assert [(m.entry_id, m.distance, m.threshold) for m in found] == [("e7", 30, 31)]
    assert matcher.match({}, [pdq_view(flip(values[7], list(range(0, 256, 8))))]) == []
    matcher.retract([("l", "e7")])
    assert matcher.match({}, [pdq_view(near)]) == []


def test_pdq_index_moves_to_mih_as_the_list_grows() -> None:
    rng = random.Random(4)
    matcher = Matcher()
    matcher.set_list(ListConfig.create("l"))  # PDQ at its default, 31
    values = [rng.getrandbits(256) for _ in range(3_000)]
    matcher.upsert(
        HashListEntry("l", f"e{i}", HashValue(Algorithm.PDQ, v), Category.CSAM)
        for i, v in enumerate(values)
    )
    assert isinstance(matcher.hamming_index(Algorithm.PDQ), MultiIndexHash256)
    hits = matcher.match({}, [pdq_view(flip(values[123], [1, 100, 200]))])
    assert [(m.entry_id, m.distance) for m in hits] == [("e123", 3)]
