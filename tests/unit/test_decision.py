"""The decision table: severity, allow-list suppression by algorithm family, defaults."""

from __future__ import annotations

from pipeline.core.decision import DecisionPolicy, Outcome, decide
from pipeline.core.hashlist import Category, ListAction, ListKind
from pipeline.core.matching import Match
from pipeline.core.types import Algorithm


def m(kind: ListKind, action: ListAction, algorithm: Algorithm = Algorithm.PHASH) -> Match:
    return Match("l", "1", kind, action, f"{kind}-{action}-{algorithm}", Category.CSAM,
                 algorithm, 0, 8)  # fmt: skip


DENY_BLOCK = m(ListKind.DENY, ListAction.BLOCK)
DENY_REVIEW = m(ListKind.DENY, ListAction.REVIEW)
DENY_BLOCK_MD5 = m(ListKind.DENY, ListAction.BLOCK, Algorithm.MD5)
ALLOW_PHASH = m(ListKind.ALLOW, ListAction.REVIEW)
ALLOW_MD5 = m(ListKind.ALLOW, ListAction.REVIEW, Algorithm.MD5)


def test_no_matches_allow() -> None:
    assert decide([]).outcome is Outcome.ALLOW


def test_most_severe_list_action_wins() -> None:
    assert decide([DENY_REVIEW]).outcome is Outcome.REVIEW
    assert decide([DENY_REVIEW, DENY_BLOCK]).outcome is Outcome.BLOCK


def test_perceptual_allow_match_suppresses_perceptual_deny_matches_only() -> None:
    decision = decide([DENY_BLOCK, ALLOW_PHASH])
    assert decision.outcome is Outcome.ALLOW
    assert decision.suppressed == (DENY_BLOCK,)
    assert decision.allowed_by == (ALLOW_PHASH,)
    # A byte-identical deny hit is never cancelled by a near-duplicate allow entry.
    assert decide([DENY_BLOCK_MD5, ALLOW_PHASH]).outcome is Outcome.BLOCK


def test_exact_allow_match_suppresses_everything() -> None:
    decision = decide([DENY_BLOCK_MD5, DENY_REVIEW, ALLOW_MD5])
    assert decision.outcome is Outcome.ALLOW
    assert set(decision.suppressed) == {DENY_BLOCK_MD5, DENY_REVIEW}


def test_policy_is_data() -> None:
    cautious = DecisionPolicy(
        outcome_by_list_action={ListAction.BLOCK: Outcome.REVIEW, ListAction.REVIEW: Outcome.REVIEW}
    )
    assert decide([DENY_BLOCK], cautious).outcome is Outcome.REVIEW
