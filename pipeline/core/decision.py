"""From matches to a decision, by a policy table rather than branching code.

Owns the rules, expressed as data in :class:`DecisionPolicy`:
- each deny match asks for its list's action (block or review), mapped through
  ``action_by_list_action``;
- allow-list matches suppress deny matches (known false positives), but only of the algorithm
  families named in ``suppresses`` for the allow match's family: by default an allow match on
  an exact digest suppresses everything, while a perceptual allow match suppresses perceptual
  deny matches only, so a near-duplicate on an allow list can never cancel a byte-identical
  hit on a deny list;
- the most severe remaining action wins (``severity``, least to most);
- a deny match of a quarantined entry (:mod:`pipeline.core.quarantine`: one that flooded) asks
  for no more than ``quarantined_action`` (review): held for a person, never blocked, never let
  through;
- an upload that cannot be screened gets ``error`` plus the configured fail-closed action.
Must not do I/O.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from pipeline.core.hashlist import ListKind
from pipeline.core.matching import Match
from pipeline.core.types import Action


def _family(match: Match) -> str:
    return "perceptual" if match.algorithm.is_perceptual else "exact"


@dataclass(frozen=True, slots=True)
class DecisionPolicy:
    """The decision table. Replace fields to change policy; no code changes needed."""

    action_by_list_action: Mapping[Action, Action] = field(
        default_factory=lambda: MappingProxyType(
            {Action.BLOCK: Action.BLOCK, Action.REVIEW: Action.REVIEW}
        )
    )
    severity: tuple[Action, ...] = (Action.ALLOW, Action.REVIEW, Action.BLOCK)
    #: The most a deny match of a quarantined entry asks for.
    quarantined_action: Action = Action.REVIEW
    suppresses: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: MappingProxyType(
            {
                "exact": frozenset({"exact", "perceptual"}),
                "perceptual": frozenset({"perceptual"}),
            }
        )
    )


DEFAULT_POLICY = DecisionPolicy()


@dataclass(frozen=True, slots=True)
class Decision:
    """The action, the deny matches behind it, and those an allow list suppressed;
    ``quarantined``: the deny matches (effective or suppressed) of quarantined entries."""

    action: Action
    matches: tuple[Match, ...]
    suppressed: tuple[Match, ...]
    allowed_by: tuple[Match, ...]
    quarantined: tuple[Match, ...] = ()


def decide(
    matches: Sequence[Match],
    policy: DecisionPolicy = DEFAULT_POLICY,
    quarantined: Container[tuple[str, str]] = frozenset(),
) -> Decision:
    """Apply ``policy`` to the matches of one upload; ``quarantined`` holds the (list, entry id)
    of every quarantined entry."""
    allow = tuple(m for m in matches if m.list_kind is ListKind.ALLOW)
    deny = [m for m in matches if m.list_kind is ListKind.DENY]
    suppressed_families = frozenset().union(*(policy.suppresses[_family(m)] for m in allow))
    effective = tuple(m for m in deny if _family(m) not in suppressed_families)
    suppressed = tuple(m for m in deny if _family(m) in suppressed_families)
    held = tuple(m for m in deny if (m.list_name, m.entry_id) in quarantined)

    def asks(match: Match) -> Action:
        action = policy.action_by_list_action[match.list_action]
        if (match.list_name, match.entry_id) in quarantined:
            return min(action, policy.quarantined_action, key=policy.severity.index)
        return action

    asked = [asks(m) for m in effective]
    action = max(asked, key=policy.severity.index, default=Action.ALLOW)
    return Decision(
        action=action,
        matches=effective,
        suppressed=suppressed,
        allowed_by=allow,
        quarantined=held,
    )
