"""Flood quarantine: an entry matching over 2% of at least 500 of the last 1000 uploads
(counting different files: repeats of one file count once) is quarantined, stays so until
lifted, and a lifted entry is exempt until re-armed; its matches ask for review, never block
and never allow."""

from __future__ import annotations

import pytest

from pipeline.core.decision import decide
from pipeline.core.hashlist import Category, ListKind
from pipeline.core.matching import Match
from pipeline.core.quarantine import (
    MAX_ENTRIES_PER_UPLOAD,
    FloodQuarantine,
    FloodRule,
    Quarantine,
    counted_entries,
)
from pipeline.core.types import Action, Algorithm

BLANK = ("eokm", "blank-frame")
OTHER = ("eokm", "real-1")


def match(
    key: tuple[str, str] = BLANK,
    *,
    kind: ListKind = ListKind.DENY,
    action: Action = Action.BLOCK,
    algorithm: Algorithm = Algorithm.DHASH,
) -> Match:
    return Match(key[0], "v1", kind, action, key[1], Category.CSAM, algorithm, 3, 10)


def feed(quarantine: FloodQuarantine, uploads: int, every: int = 0) -> list[Quarantine]:
    """``uploads`` uploads, every ``every``-th matching BLANK (0: none); what got quarantined."""
    started: list[Quarantine] = []
    for i in range(uploads):
        matches = [match()] if every and i % every == 0 else []
        started += quarantine.observe(matches)
    return started


def test_defaults_are_the_documented_rule() -> None:
    assert FloodRule() == FloodRule(window_uploads=1000, min_uploads=500, share=0.02)


def test_an_entry_over_the_share_of_enough_uploads_is_quarantined_once() -> None:
    quarantine = FloodQuarantine()
    started = feed(quarantine, 1000, every=10)  # 10% of uploads match the blank frame
    assert [q.key for q in started] == [BLANK]
    # Judged when it matches, from the 500th upload on: the 501st, its 51st match.
    assert started[0] == Quarantine(BLANK, matched=51, uploads=501)
    assert started[0].share == pytest.approx(51 / 501)
    assert quarantine.is_quarantined(BLANK)


def test_nothing_is_judged_before_min_uploads() -> None:
    quarantine = FloodQuarantine()
    assert feed(quarantine, 499, every=2) == []  # half of 499 uploads, still too few uploads
    assert quarantine.observe([match()]) != ()  # the 500th upload decides


def test_a_share_at_the_threshold_is_not_a_flood() -> None:
    quarantine = FloodQuarantine()
    feed(quarantine, 1000)
    assert feed(quarantine, 1000, every=50) == []  # exactly 2% of 1000
    assert quarantine.matched(BLANK) == 20
    assert quarantine.observe([match()]) == ()  # replaces the first match: 20 again
    assert quarantine.observe([match()]) != ()  # replaces an upload without: 21 of 1000


def test_matches_that_leave_the_window_stop_counting() -> None:
    quarantine = FloodQuarantine(FloodRule(window_uploads=100, min_uploads=100, share=0.05))
    feed(quarantine, 5, every=1)  # 5 matches...
    feed(quarantine, 95)  # ...of 100 uploads: 5%, not over it
    assert quarantine.matched(BLANK) == 5
    feed(quarantine, 5)  # they slide out
    assert quarantine.matched(BLANK) == 0
    assert quarantine.entries_counted == 0
    assert quarantine.uploads == 100
    assert not quarantine.is_quarantined(BLANK)


def test_quarantine_is_sticky_until_lifted() -> None:
    quarantine = FloodQuarantine()
    feed(quarantine, 1000, every=10)
    feed(quarantine, 2000)  # the entry stops matching: its share falls to 0
    assert quarantine.is_quarantined(BLANK)
    lifted = quarantine.lift(BLANK)
    assert lifted is not None
    assert lifted.key == BLANK
    assert not quarantine.is_quarantined(BLANK)


def test_a_lifted_entry_is_exempt_until_rearmed() -> None:
    quarantine = FloodQuarantine()
    feed(quarantine, 1000, every=10)
    quarantine.lift(BLANK)
    assert feed(quarantine, 1000, every=2) == []  # floods again: exempt, not quarantined
    assert quarantine.exempt == {BLANK}
    quarantine.rearm(BLANK)
    assert quarantine.exempt == frozenset()
    # Its matches in the window count again: the next one quarantines it.
    assert [q.key for q in quarantine.observe([match()])] == [BLANK]


def test_a_retracted_entry_is_released_without_an_exemption() -> None:
    quarantine = FloodQuarantine()
    feed(quarantine, 1000, every=10)
    assert quarantine.release(BLANK) is not None
    assert not quarantine.is_quarantined(BLANK)
    assert quarantine.exempt == frozenset()
    assert [q.key for q in quarantine.observe([match()])] == [BLANK]  # re-published, floods


def test_lifting_an_entry_not_quarantined_here_still_exempts_it() -> None:
    quarantine = FloodQuarantine()
    assert quarantine.lift(BLANK) is None
    assert feed(quarantine, 1000, every=2) == []


def test_each_entry_is_judged_on_its_own() -> None:
    quarantine = FloodQuarantine()
    started = []
    for i in range(1000):
        matches = [match(BLANK)] if i % 5 == 0 else []
        if i % 200 == 0:
            matches.append(match(OTHER))  # 5 of 1000: a genuine entry's rate
        started += quarantine.observe(matches)
    assert [q.key for q in started] == [BLANK]
    assert quarantine.matched(OTHER) == 5


def test_an_upload_counts_once_per_entry_and_allow_matches_do_not_count() -> None:
    upload = [
        match(BLANK, algorithm=Algorithm.DHASH),
        match(BLANK, algorithm=Algorithm.PHASH),
        match(("fp", "meme"), kind=ListKind.ALLOW),
        match(OTHER),
    ]
    assert counted_entries(upload) == (BLANK, OTHER)
    many = [match(("l", str(i))) for i in range(MAX_ENTRIES_PER_UPLOAD + 50)]
    assert len(counted_entries(many)) == MAX_ENTRIES_PER_UPLOAD


def test_one_file_uploaded_again_and_again_counts_once() -> None:
    # A raid re-posting one known picture: the genuine entry keeps blocking.
    quarantine = FloodQuarantine(FloodRule(window_uploads=100, min_uploads=50, share=0.2))
    started = [q for _ in range(100) for q in quarantine.observe([match()], b"known-file")]
    assert started == []
    assert quarantine.matched(BLANK) == 1
    assert not quarantine.is_quarantined(BLANK)


def test_different_files_matching_one_entry_flood_it() -> None:
    quarantine = FloodQuarantine(FloodRule(window_uploads=100, min_uploads=50, share=0.2))
    started = [
        q for i in range(50) for q in quarantine.observe([match()], f"file-{i % 11}".encode())
    ]
    # 11 different files of 50 uploads is 22% > 20%: quarantined at the 50th upload.
    assert started == [Quarantine(BLANK, matched=11, uploads=50)]


def test_a_repeated_file_counts_until_its_last_copy_leaves_the_window() -> None:
    quarantine = FloodQuarantine(FloodRule(window_uploads=4, min_uploads=4, share=0.9))
    quarantine.observe([match()], b"a")
    quarantine.observe([match()], b"a")
    quarantine.observe([match()], b"b")
    assert quarantine.matched(BLANK) == 2
    quarantine.observe([], b"c")
    quarantine.observe([], b"c")  # the first "a" leaves; the second still counts
    assert quarantine.matched(BLANK) == 2
    quarantine.observe([], b"c")  # the second "a" leaves
    assert quarantine.matched(BLANK) == 1
    quarantine.observe([], b"c")  # "b" leaves
    assert quarantine.matched(BLANK) == 0
    assert quarantine.entries_counted == 0


def test_an_upload_of_unknown_content_counts_as_a_file_of_its_own() -> None:
    quarantine = FloodQuarantine(FloodRule(window_uploads=10, min_uploads=10, share=0.5))
    started = [q for _ in range(10) for q in quarantine.observe([match()])]
    assert started == [Quarantine(BLANK, matched=10, uploads=10)]


def test_memory_is_bounded_by_the_window() -> None:
    quarantine = FloodQuarantine(FloodRule(window_uploads=50, min_uploads=50, share=0.5))
    for i in range(10_000):  # every upload matches a different entry, of two files
        quarantine.observe([match(("l", str(i)))], i % 2)
    assert quarantine.uploads == 50
    assert quarantine.entries_counted == 50
    assert len(quarantine._copies) == 50
    assert quarantine.quarantined == {}


@pytest.mark.parametrize(
    "rule",
    [
        {"window_uploads": 0},
        {"min_uploads": 0},
        {"window_uploads": 100, "min_uploads": 101},
        {"share": 0},
        {"share": 1},
    ],
)
def test_a_rule_that_cannot_work_is_refused(rule: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        FloodRule(**rule)  # type: ignore[arg-type]


# -- what quarantine does to a decision ------------------------------------------------------


def test_a_quarantined_entry_asks_for_review_instead_of_block() -> None:
    decision = decide([match(BLANK)], quarantined={BLANK})
    assert decision.action is Action.REVIEW
    assert decision.matches == (match(BLANK),)  # still there, still explained
    assert decision.quarantined == (match(BLANK),)


def test_another_entry_still_blocks_next_to_a_quarantined_one() -> None:
    decision = decide([match(BLANK), match(OTHER)], quarantined={BLANK})
    assert decision.action is Action.BLOCK
    assert decision.quarantined == (match(BLANK),)


def test_quarantine_never_raises_a_review_list_or_allows() -> None:
    review = match(BLANK, action=Action.REVIEW)
    assert decide([review], quarantined={BLANK}).action is Action.REVIEW
    assert decide([], quarantined={BLANK}).action is Action.ALLOW


def test_without_quarantine_nothing_changes() -> None:
    decision = decide([match(BLANK)])
    assert decision.action is Action.BLOCK
    assert decision.quarantined == ()
