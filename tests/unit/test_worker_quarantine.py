"""A worker's flood quarantine as operators see it: one log line naming the entry, the metrics,
verdicts that say "quarantined", and lifts, re-arms and retractions from the hashlists topic."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from prometheus_client import generate_latest

from pipeline.adapters.hashlist_topic import encode_lift, parse_hashlist_record
from pipeline.core.decision import decide
from pipeline.core.hashlist import Category, HashListEntry, ListKind
from pipeline.core.matching import Match, Matcher
from pipeline.core.quarantine import FloodRule
from pipeline.core.types import Action, Algorithm, HashValue
from pipeline.hashlist_feed import MatcherTarget
from pipeline.metrics import PipelineMetrics
from pipeline.models import ImageFacts, QuarantineLiftRecord
from pipeline.quarantines import WorkerQuarantine
from pipeline.verdicts import block_record, screened_verdict

BLANK = ("eokm", "blank-frame")
RULE = FloodRule(window_uploads=20, min_uploads=10, share=0.2)
LIFT = QuarantineLiftRecord(
    list="eokm", entry_id="blank-frame", lifted_at=datetime(2026, 11, 22, tzinfo=UTC)
)


def blank_match() -> Match:
    return Match("eokm", "v1", ListKind.DENY, Action.BLOCK, "blank-frame", Category.CSAM,
                 Algorithm.DHASH, 2, 10)  # fmt: skip


def sample(metrics: PipelineMetrics, line_start: str) -> float | None:
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


def flood(quarantine: WorkerQuarantine, uploads: int = 20) -> list[Action]:
    """Every upload matches the blank frame; the action each one gets."""
    actions = []
    for _ in range(uploads):
        matches = [blank_match()]
        decision = decide(matches, quarantined=quarantine.screened(matches))
        quarantine.decided(decision)
        actions.append(decision.action)
    return actions


@pytest.fixture
def metrics() -> PipelineMetrics:
    metrics = PipelineMetrics()
    metrics.register_list("eokm")
    return metrics


def test_a_flood_is_logged_once_shown_in_metrics_and_demotes_later_matches(
    metrics: PipelineMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    quarantine = WorkerQuarantine(RULE, metrics, clock=lambda: 1234.0)
    with caplog.at_level(logging.WARNING, logger="pipeline.quarantines"):
        actions = flood(quarantine)
    # Judged from the 10th upload on: that one is already review.
    assert actions == [Action.BLOCK] * 9 + [Action.REVIEW] * 11
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert (
        "entry quarantined: list=eokm entry=blank-frame matched 10 different files in the last "
        "10 uploads" in lines[0]
    )
    assert "pipeline quarantine lift --list eokm --entry blank-frame" in lines[0]
    assert sample(metrics, 'screening_quarantined_entries{list="eokm"}') == 1
    named = 'screening_entry_quarantined_timestamp_seconds{entry_id="blank-frame",list="eokm"}'
    assert sample(metrics, named) == 1234.0
    assert sample(metrics, 'screening_quarantine_demoted_matches_total{list="eokm"}') == 11


def test_a_lift_from_the_topic_blocks_again_and_exempts(metrics: PipelineMetrics) -> None:
    quarantine = WorkerQuarantine(RULE, metrics)
    matcher_target = MatcherTarget(Matcher(), metrics, quarantine)
    flood(quarantine)
    record = encode_lift(LIFT)
    matcher_target.apply([parse_hashlist_record(record.key, record.value)])
    matcher_target.after_apply()  # on the event loop, where the feed calls it
    assert flood(quarantine) == [Action.BLOCK] * 20  # exempt: floods on, still blocks
    assert sample(metrics, 'screening_quarantined_entries{list="eokm"}') == 0
    assert sample(metrics, "screening_entry_quarantined_timestamp_seconds{") is None
    matcher_target.apply([parse_hashlist_record(record.key, None)])  # re-armed
    matcher_target.after_apply()
    assert flood(quarantine, 1) == [Action.REVIEW]


def test_retracting_the_entry_ends_its_quarantine(metrics: PipelineMetrics) -> None:
    quarantine = WorkerQuarantine(RULE, metrics)
    matcher = Matcher()
    entry = HashListEntry("eokm", "blank-frame", HashValue(Algorithm.DHASH, 0), Category.CSAM)
    matcher.upsert([entry])
    flood(quarantine)
    target = MatcherTarget(matcher, metrics, quarantine)
    target.apply([("entry", BLANK, None)])
    target.after_apply()
    assert len(matcher) == 0
    assert not quarantine.state.is_quarantined(BLANK)
    assert quarantine.state.exempt == frozenset()
    assert sample(metrics, 'screening_quarantined_entries{list="eokm"}') == 0


def test_disabled_quarantine_never_demotes(metrics: PipelineMetrics) -> None:
    assert flood(WorkerQuarantine(RULE, metrics, enabled=False)) == [Action.BLOCK] * 20


def test_verdict_and_block_record_say_the_entry_is_quarantined() -> None:
    other = Match("eokm", "v1", ListKind.DENY, Action.REVIEW, "real-1", Category.CSAM,
                  Algorithm.PHASH, 1, 8)  # fmt: skip
    decision = decide([blank_match(), other], quarantined={BLANK})
    verdict = screened_verdict(
        upload_id="u1",
        hashes={},
        image=ImageFacts(format="JPEG", width=8, height=8),
        decision=decision,
        worker_id="w1",
        decided_at=datetime(2026, 11, 22, tzinfo=UTC),
    )
    assert verdict.action is Action.REVIEW
    flags = {m.entry_id: (m.list_action, m.quarantined) for m in verdict.matches}
    assert flags == {"blank-frame": (Action.BLOCK, True), "real-1": (Action.REVIEW, False)}
    assert block_record(verdict) is None  # review: nothing goes to enforcement
