"""Every failure is reported against the stage that was running, with a reason from the
dead-letter vocabulary: hostile input gets its own reason, a bug gets ``internal_error``, and
nothing that happened before the outputs is ever called an emit failure."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pipeline.adapters.fetch import Fetcher
from pipeline.config import Settings
from pipeline.core.guard import GuardLimits
from pipeline.core.matching import Match, Matcher
from pipeline.core.types import Algorithm
from pipeline.errors import ErrorReason
from pipeline.fetch_policy import FetchLimits
from pipeline.hashpool import HashPool
from pipeline.metrics import DEAD_LETTER_REASONS, PipelineMetrics
from pipeline.models import InlineContent, PathContent, SourceRef, Stage, UrlContent
from pipeline.screening import Screener, ScreeningOutcome
from tests.imagegen import encode, synthetic_image

IMAGE = encode(synthetic_image(3))
SOURCE = SourceRef(topic="uploads", partition=0, offset=7)


class Broken(Exception):
    """A bug somewhere below the screener (not a PipelineError)."""


class BrokenFetcher(Fetcher):
    async def fetch(self, content: InlineContent | UrlContent | PathContent) -> bytes:
        raise Broken


class BrokenMatcher(Matcher):
    def match(self, hashes: Mapping[Algorithm, int]) -> list[Match]:
        raise Broken


def broken_job(*args: Any) -> Any:
    raise Broken


def screen(
    value: bytes,
    *,
    key: bytes = b"producer-key",
    file_root: Path | None = None,
    fetcher: type[Fetcher] = Fetcher,
    matcher: Matcher | None = None,
    pool: HashPool | None = None,
) -> ScreeningOutcome:
    screener = Screener(
        Settings(bootstrap_servers="unused:9092", worker_id="w1"),
        matcher=Matcher() if matcher is None else matcher,  # an empty one is falsy
        fetcher=fetcher(FetchLimits(max_bytes=1_000_000, file_root=file_root)),
        pool=HashPool(0) if pool is None else pool,
        metrics=PipelineMetrics(),
        limits=GuardLimits(),
    )
    return asyncio.run(screener.screen(value, key, SOURCE))


def error_of(outcome: ScreeningOutcome) -> tuple[str, str]:
    """(stage, reason) of a failed upload, checked to agree between verdict and dead letter."""
    letter, error = outcome.dead_letter, outcome.verdict.error
    assert letter is not None
    assert error is not None
    assert (letter.stage, letter.reason) == (error.stage, error.reason)
    assert letter.reason in DEAD_LETTER_REASONS, "would be counted as reason=other"
    return letter.stage, letter.reason


def inline_event(upload_id: str = "u1") -> bytes:
    content = {"kind": "inline", "data_base64": base64.b64encode(IMAGE).decode()}
    return json.dumps({"upload_id": upload_id, "content": content}).encode()


def test_json_nested_50000_deep_is_an_invalid_event() -> None:
    deep = b'{"upload_id": "u1", "content": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    outcome = screen(deep)
    assert error_of(outcome) == (Stage.PARSE, "invalid_event")
    assert outcome.verdict.error is not None
    assert "nested too deeply" in outcome.verdict.error.message


@pytest.mark.parametrize("file_root", [True, False], ids=["root-set", "root-unset"])
def test_a_nul_byte_in_a_path_is_a_bad_path(tmp_path: Path, file_root: bool) -> None:
    (tmp_path / "a.jpg").write_bytes(IMAGE)
    value = json.dumps({"upload_id": "u1", "content": {"kind": "path", "path": "a.jpg\0.png"}})
    outcome = screen(value.encode(), file_root=tmp_path if file_root else None)
    assert error_of(outcome) == (Stage.FETCH, "bad_path")
    assert outcome.dead_letter is not None
    assert outcome.dead_letter.attempts == 1  # a refusal: not retried


def test_the_inline_event_used_below_screens_cleanly() -> None:
    outcome = screen(inline_event())
    assert outcome.dead_letter is None
    assert outcome.verdict.action == "allow"


@pytest.mark.parametrize(
    ("broken", "stage"),
    [
        ({"fetcher": BrokenFetcher}, Stage.FETCH),
        ({"pool": HashPool(0, job=broken_job)}, Stage.HASH),
        ({"matcher": BrokenMatcher()}, Stage.MATCH),
    ],
    ids=["fetch", "hash", "match"],
)
def test_an_unexpected_error_names_the_stage_that_was_running(
    broken: dict[str, Any], stage: Stage
) -> None:
    outcome = screen(inline_event("body-id"), **broken)
    assert error_of(outcome) == (stage, ErrorReason.INTERNAL_ERROR)
    # Reported for the upload the body names (a producer may key records by uploader) and
    # with the event's references, as any other failure of a parsed event.
    assert outcome.verdict.upload_id == "body-id"
    assert outcome.dead_letter is not None
    assert outcome.dead_letter.upload_id == "body-id"
    assert outcome.dead_letter.original_event is not None
    assert outcome.dead_letter.original_event["content"] == {"kind": "inline"}
