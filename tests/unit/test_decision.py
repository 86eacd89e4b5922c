"""The decision table: severity, allow-list suppression by algorithm family, defaults."""

from __future__ import annotations

from pipeline.core.decision import DecisionPolicy, decide
from pipeline.core.hashlist import Category, ListKind
from pipeline.core.matching import Match
from pipeline.core.types import Action, Algorithm


def m(kind: ListKind, action: Action, algorithm: Algorithm = Algorithm.PHASH) -> Match:
    return Match("l", "1", kind, action, f"{kind}-{action}-{algorithm}", Category.CSAM,
                 algorithm, 0, 8)  # fmt: skip


DENY_BLOCK = m(ListKind.DENY, Action.BLOCK)
DENY_REVIEW = m(ListKind.DENY, Action.REVIEW)
DENY_BLOCK_MD5 = m(ListKind.DENY, Action.BLOCK, Algorithm.MD5)
ALLOW_PHASH = m(ListKind.ALLOW, Action.REVIEW)
ALLOW_MD5 = m(ListKind.ALLOW, Action.REVIEW, Algorithm.MD5)


def test_no_matches_allow() -> None:
    assert decide([]).action is Action.ALLOW


def test_most_severe_list_action_wins() -> None:
    assert decide([DENY_REVIEW]).action is Action.REVIEW
    assert decide([DENY_REVIEW, DENY_BLOCK]).action is Action.BLOCK


def test_perceptual_allow_match_suppresses_perceptual_deny_matches_only() -> None:
    decision = decide([DENY_BLOCK, ALLOW_PHASH])
    assert decision.action is Action.ALLOW
    assert decision.suppressed == (DENY_BLOCK,)
    assert decision.allowed_by == (ALLOW_PHASH,)
    # A byte-identical deny hit is never cancelled by a near-duplicate allow entry.
    assert decide([DENY_BLOCK_MD5, ALLOW_PHASH]).action is Action.BLOCK


def test_exact_allow_match_suppresses_everything() -> None:
    decision = decide([DENY_BLOCK_MD5, DENY_REVIEW, ALLOW_MD5])
    assert decision.action is Action.ALLOW
    assert set(decision.suppressed) == {DENY_BLOCK_MD5, DENY_REVIEW}


def test_policy_is_data() -> None:
    cautious = DecisionPolicy(
        action_by_list_action={Action.BLOCK: Action.REVIEW, Action.REVIEW: Action.REVIEW}
    )
    assert decide([DENY_BLOCK], cautious).action is Action.REVIEW
