"""The matcher equals a brute-force reference over the same entries, through every update."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.detail import DHASH_MIN_TRANSITIONS
from pipeline.core.hashlist import MAX_THRESHOLD_64, Category, HashListEntry, ListConfig, ListKind
from pipeline.core.index.mih import MultiIndexHash, choose_chunks
from pipeline.core.index.select import build_hamming_index, choose_index_kind
from pipeline.core.matching import CORROBORATION, DHASH_ALONE, Match, Matcher
from pipeline.core.types import Action, Algorithm, HashValue, hamming_distance

LISTS = {
    "eokm": ListConfig.create("eokm", action="block", thresholds={"phash": 8, "dhash": 10}),
    "iwf": ListConfig.create("iwf", action="review", thresholds={"phash": 4}),
    "off": ListConfig.create("off", enabled=False),
}


def entry(list_name: str, entry_id: str, algorithm: Algorithm, value: int) -> HashListEntry:
    return HashListEntry(list_name, entry_id, HashValue(algorithm, value), Category.CSAM)


def reference(
    entries: dict[tuple[str, str], HashListEntry],
    hashes: dict[Algorithm, int],
    lists: dict[str, ListConfig] = LISTS,
) -> list[Match]:
    out = []
    for e in entries.values():
        config = lists.get(e.list_name)
        if config is None:
            continue  # held: a list without a config matches nothing until its config arrives
        algorithm = e.hash.algorithm
        # The rule itself, not ListConfig.threshold: digests match at 0 on every list.
        threshold = config.thresholds.get(algorithm) if algorithm.is_perceptual else 0
        if algorithm not in hashes or threshold is None or not config.enabled:
            continue
        distance = hamming_distance(hashes[algorithm], e.hash.value)
        if distance <= threshold:
            out.append(Match(e.list_name, config.version, config.kind, config.action, e.entry_id,
                             e.category, algorithm, distance, threshold))  # fmt: skip
    return sorted(
        corroborated(out, entries, hashes, lists),
        key=lambda m: (m.distance, m.list_name, m.entry_id, m.algorithm),
    )


def transitions(value: int) -> int:
    """Neighbouring bits that differ in the 8x8 grid, counted one pair at a time."""
    bit = [[(value >> (63 - 8 * row - col)) & 1 for col in range(8)] for row in range(8)]
    across = sum(bit[r][c] != bit[r][c + 1] for r in range(8) for c in range(7))
    down = sum(bit[r][c] != bit[r + 1][c] for r in range(7) for c in range(8))
    return across + down


def corroborated(
    found: list[Match],
    entries: dict[tuple[str, str], HashListEntry],
    hashes: dict[Algorithm, int],
    lists: dict[str, ListConfig],
) -> list[Match]:
    """The dHash rule written out: a dHash match counts on its own within DHASH_ALONE when
    neither the upload's dHash nor the entry's has fewer than DHASH_MIN_TRANSITIONS; otherwise
    it stays only when the upload's pHash nearly matches a pHash entry of its list: farther than
    that list's pHash threshold, within CORROBORATION[phash]."""

    def alone(m: Match) -> bool:
        entry_value = entries[(m.list_name, m.entry_id)].hash.value
        smooth = min(transitions(hashes[Algorithm.DHASH]), transitions(entry_value))
        return m.distance <= DHASH_ALONE and smooth >= DHASH_MIN_TRANSITIONS

    def near_miss(list_name: str) -> bool:
        config = lists[list_name]
        threshold = config.thresholds.get(Algorithm.PHASH) if config.enabled else None
        return Algorithm.PHASH in hashes and any(
            e.list_name == list_name and e.hash.algorithm is Algorithm.PHASH
            and (threshold is None or distance > threshold)
            and distance <= CORROBORATION[Algorithm.PHASH]
            for e in entries.values()
            for distance in [hamming_distance(hashes[Algorithm.PHASH], e.hash.value)]
        )  # fmt: skip

    return [
        m for m in found
        if m.algorithm is not Algorithm.DHASH or alone(m) or near_miss(m.list_name)
    ]  # fmt: skip


values = st.integers(0, (1 << 64) - 1)
#: Hashes drawn around: any value, or the dHash of a smooth picture (uniform, gradient,
#: vignette), so the dHash rule's smooth side is exercised too.
centres = values | st.sampled_from([0, (1 << 64) - 1, 0xF0F0F0F0F0F0F0F0])
near = st.tuples(values, st.lists(st.integers(0, 63), max_size=12))


@pytest.mark.parametrize("index_kind", ["auto", "mih", "bktree", "scan"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_matches_equal_reference_through_updates(index_kind: str, data: st.DataObject) -> None:
    lists = dict(LISTS)
    matcher = Matcher(index_kind)
    for config in lists.values():
        matcher.set_list(config)
    live: dict[tuple[str, str], HashListEntry] = {}
    centre = data.draw(centres)
    for step in range(data.draw(st.integers(1, 30))):
        list_name = data.draw(st.sampled_from(["eokm", "iwf", "off", "unconfigured"]))
        algorithm = data.draw(st.sampled_from([Algorithm.PHASH, Algorithm.DHASH, Algorithm.MD5]))
        flips = data.draw(st.lists(st.integers(0, 63), max_size=12))
        value = centre
        for bit in flips:
            value ^= 1 << bit
        entry_id = f"e{data.draw(st.integers(0, 8))}"
        choice = data.draw(st.integers(0, 5))
        if choice == 0 and live:
            key = data.draw(st.sampled_from(sorted(live)))
            matcher.retract([key])
            del live[key]
        elif choice == 1:
            # A policy change moves the search radius: the index is re-planned under it.
            name = data.draw(st.sampled_from(["eokm", "iwf", "off"]))
            thresholds = {
                "phash": data.draw(st.integers(0, MAX_THRESHOLD_64)),
                "dhash": data.draw(st.integers(0, MAX_THRESHOLD_64)),
            }
            lists[name] = ListConfig.create(
                name, action="block", thresholds=thresholds, enabled=data.draw(st.booleans())
            )
            matcher.set_list(lists[name])
        else:
            new = entry(list_name, entry_id, algorithm, value)
            matcher.upsert([new])  # re-publishing a key replaces the old entry
            live[new.key] = new
        query = {Algorithm.PHASH: centre, Algorithm.DHASH: centre ^ step, Algorithm.MD5: centre}
        assert matcher.match(query) == reference(live, query, lists)
    assert len(matcher) == len(live)


def test_entries_of_an_unconfigured_list_are_held_until_its_config_arrives() -> None:
    matcher = Matcher()
    matcher.upsert([entry("late", "1", Algorithm.PHASH, 0), entry("late", "2", Algorithm.MD5, 7)])
    # Held, not matched under a guessed policy: not even at distance 0, not even a digest.
    assert matcher.match({Algorithm.PHASH: 0, Algorithm.MD5: 7}) == []
    assert matcher.held_counts() == {"late": 2}
    assert matcher.config("late") is None
    matcher.set_list(ListConfig.create("late", action="block", thresholds={"phash": 2}))
    assert matcher.held_counts() == {}
    assert matcher.match({Algorithm.PHASH: 0b1111}) == []
    hits = matcher.match({Algorithm.PHASH: 0b11, Algorithm.MD5: 7})
    assert [(m.entry_id, m.list_action) for m in hits] == [("2", Action.BLOCK), ("1", Action.BLOCK)]
    # A config retracted: held again until a new one arrives.
    matcher.remove_list("late")
    assert matcher.match({Algorithm.PHASH: 0, Algorithm.MD5: 7}) == []
    assert matcher.held_counts() == {"late": 2}
    matcher.retract([("late", "1")])
    assert matcher.held_counts() == {"late": 1}


def test_an_allow_list_whose_config_is_late_never_acts_as_a_deny_list() -> None:
    # Under the old default (deny, review) these entries produced deny matches while the allow
    # list's config was on its way: known false positives sent to review.
    matcher = Matcher()
    matcher.upsert([entry("fp", "1", Algorithm.PHASH, 0)])
    assert matcher.match({Algorithm.PHASH: 0}) == []
    matcher.set_list(ListConfig.create("fp", kind="allow"))
    assert [m.list_kind for m in matcher.match({Algorithm.PHASH: 0})] == [ListKind.ALLOW]


def test_held_entries_do_not_widen_the_search() -> None:
    matcher = Matcher("mih")
    matcher.set_list(ListConfig.create("narrow", thresholds={"phash": 2}))
    matcher.upsert(
        [entry("narrow", "1", Algorithm.PHASH, 0), entry("held", "1", Algorithm.PHASH, 0)]
    )
    index = matcher.hamming_index(Algorithm.PHASH)
    assert isinstance(index, MultiIndexHash)
    assert index.radius == 2
    matcher.set_list(ListConfig.create("held", thresholds={"phash": 12}))
    assert index.radius == 12


EXACT_DIGESTS = [(Algorithm.MD5, 1 << 100), (Algorithm.SHA1, 1 << 150), (Algorithm.SHA256, 7)]


@pytest.mark.parametrize(
    "config",
    [
        ListConfig(name="l"),  # the bare-file default: perceptual thresholds only
        ListConfig(name="l", thresholds={}),
        ListConfig(name="l", thresholds={Algorithm.MD5: 5, Algorithm.SHA256: 3}),
        ListConfig.create("l", action="block", thresholds={"phash": 0, "dhash": 0}),
    ],
    ids=["bare-default", "no-thresholds", "loosened-digests", "created"],
)
def test_exact_digests_match_at_distance_zero_whatever_the_list_config(
    config: ListConfig,
) -> None:
    matcher = Matcher()
    matcher.set_list(config)
    matcher.upsert([entry("l", str(alg), alg, value) for alg, value in EXACT_DIGESTS])
    for algorithm, value in EXACT_DIGESTS:
        (hit,) = matcher.match({algorithm: value})
        assert (hit.entry_id, hit.distance, hit.threshold) == (str(algorithm), 0, 0)
        assert matcher.match({algorithm: value ^ 1}) == []  # one bit off is another file


def test_apply_preserves_order_of_mixed_operations() -> None:
    matcher = Matcher()
    first = entry("l", "1", Algorithm.PHASH, (1 << 64) - 1)
    moved = entry("l", "1", Algorithm.PHASH, 0)
    matcher.apply([
        ("list", "l", ListConfig.create("l", kind="allow")),
        ("entry", ("l", "1"), first),
        ("entry", ("l", "1"), None),
        ("entry", ("l", "1"), moved),
        ("entry", ("l", "2"), entry("l", "2", Algorithm.MD5, 7)),
        ("list", "gone", None),
    ])  # fmt: skip
    assert matcher.match({Algorithm.PHASH: (1 << 64) - 1}) == []
    hits = matcher.match({Algorithm.PHASH: 0b11, Algorithm.MD5: 7})
    assert [(m.entry_id, m.distance) for m in hits] == [("2", 0), ("1", 2)]
    assert {m.list_kind for m in hits} == {ListKind.ALLOW}
    assert matcher.entry_counts() == {("l", Algorithm.PHASH): 1, ("l", Algorithm.MD5): 1}
    assert matcher.algorithms_in_use() == (Algorithm.MD5, Algorithm.PHASH)


def big_list(count: int, seed: int = 5) -> list[HashListEntry]:
    import random

    rng = random.Random(seed)
    return [entry("big", str(i), Algorithm.PHASH, rng.getrandbits(64)) for i in range(count)]


def test_auto_index_upgrades_past_the_scan_threshold() -> None:
    matcher = Matcher("auto")
    matcher.set_list(ListConfig.create("big"))
    entries = big_list(12_000)
    matcher.upsert(entries[:5000])
    assert matcher.hamming_index(Algorithm.PHASH).name == "scan"
    matcher.upsert(entries[5000:])
    target = entries[7777]
    hits = matcher.match({Algorithm.PHASH: target.hash.value ^ 0b101})
    assert [(m.entry_id, m.distance) for m in hits] == [("7777", 2)]
    assert matcher.hamming_index(Algorithm.PHASH).name == "mih"
    # Retractions below the threshold do not send it back to the scan.
    matcher.retract([e.key for e in entries[:6000]])
    assert matcher.hamming_index(Algorithm.PHASH).name == "mih"
    assert [m.entry_id for m in matcher.match({Algorithm.PHASH: target.hash.value})] == ["7777"]


def test_index_is_planned_for_the_largest_enabled_threshold() -> None:
    entries = big_list(12_000)
    matcher = Matcher("auto")
    matcher.set_list(ListConfig.create("big", thresholds={"phash": 8}))
    matcher.upsert(entries)
    index = matcher.hamming_index(Algorithm.PHASH)
    assert isinstance(index, MultiIndexHash)
    assert (index.radius, index.chunks) == (8, choose_chunks(1 << 16, 8))

    # A second list with a larger threshold on the same algorithm raises the radius: rebuilt.
    matcher.set_list(ListConfig.create("wide", thresholds={"phash": 12}))
    matcher.upsert([entry("wide", "w", Algorithm.PHASH, 0)])
    assert (index.radius, index.chunks) == (12, choose_chunks(1 << 16, 12))
    # Disabled, it no longer counts.
    matcher.set_list(ListConfig.create("wide", thresholds={"phash": 12}, enabled=False))
    assert (index.radius, index.chunks) == (8, choose_chunks(1 << 16, 8))

    # At the cap a list this size would start as a scan, but MIH serves that radius too, so the
    # index stays MIH (no flapping) re-planned for it; back at 8, the same results.
    near = entries[42].hash.value ^ 0b111
    matcher.set_list(ListConfig.create("big", thresholds={"phash": MAX_THRESHOLD_64}))
    assert choose_index_kind(len(entries), MAX_THRESHOLD_64) == "scan"
    assert matcher.hamming_index(Algorithm.PHASH) is index
    assert index.radius == MAX_THRESHOLD_64
    wide_hits = matcher.match({Algorithm.PHASH: near})
    matcher.set_list(ListConfig.create("big", thresholds={"phash": 8}))
    assert matcher.hamming_index(Algorithm.PHASH) is index
    narrow_hits = matcher.match({Algorithm.PHASH: near})
    assert [(m.entry_id, m.distance) for m in narrow_hits] == [("42", 3)]
    assert [(m.entry_id, m.distance) for m in wide_hits if m.distance <= 8] == [("42", 3)]


@pytest.mark.parametrize(("kind", "threshold"), [("auto", 8), ("auto", 10), ("mih", 12)])
def test_the_matcher_builds_what_the_benchmark_measures(kind: str, threshold: int) -> None:
    entries = big_list(40_000, seed=9)
    matcher = Matcher(kind)
    matcher.set_list(ListConfig.create("big", thresholds={"phash": threshold}))
    matcher.upsert(entries)
    served = matcher.hamming_index(Algorithm.PHASH)
    # pipeline bench index: build_hamming_index(kind, size, radius), then one bulk add.
    benched = build_hamming_index(kind, len(entries), threshold)
    benched.add(list(range(len(entries))), [e.hash.value for e in entries])
    assert isinstance(served, MultiIndexHash)
    assert isinstance(benched, MultiIndexHash)
    assert (served.chunks, served.radius, served.indexed, served.pending) == (
        benched.chunks,
        benched.radius,
        benched.indexed,
        benched.pending,
    )
    assert served.nbytes == benched.nbytes


def test_a_matcher_adopts_a_rebuilt_one_whole_for_every_holder() -> None:
    """Build-then-swap (a reset hashlists topic): the live matcher keeps serving its old lists
    until it adopts the replacement, then serves only the replacement's."""
    far = 2**64 - 1  # 64 bits from 0: no threshold reaches it
    live = Matcher("scan")
    live.set_list(ListConfig.create("old", action="block"))
    live.upsert([entry("old", "1", Algorithm.PHASH, 0)])
    holder = live  # the screener holds this very object
    rebuilt = live.empty_like()
    rebuilt.set_list(ListConfig.create("new", action="block"))
    rebuilt.upsert([entry("new", "1", Algorithm.PHASH, far)])
    assert [m.list_name for m in holder.match({Algorithm.PHASH: 0})] == ["old"]  # still serving
    live.adopt(rebuilt)
    assert holder.match({Algorithm.PHASH: 0}) == []
    assert [m.list_name for m in holder.match({Algorithm.PHASH: far})] == ["new"]
    assert holder.lists == ("new",)
