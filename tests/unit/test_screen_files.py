"""Files screened offline get the verdicts the worker gives the same bytes: one screening path
(hashing, matching, verdict building), with the upload id, the time and the stage timings the
only differences. A file that cannot be read fails where the worker fetches."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.adapters.fetch import Fetcher
from pipeline.application.matchers import build_matcher
from pipeline.application.screen_files import screen_files
from pipeline.config import Settings
from pipeline.core.hashing import hash_image
from pipeline.core.matching import Matcher
from pipeline.hashpool import HashPool
from pipeline.metrics import PipelineMetrics
from pipeline.models import SourceRef, Verdict
from pipeline.screening import Screener
from tests.imagegen import encode, synthetic_image

SETTINGS = Settings(bootstrap_servers="unused:9092", worker_id="w1", hash_processes=0)
KNOWN = encode(synthetic_image(1))


@pytest.fixture(scope="module")
def matcher(tmp_path_factory: pytest.TempPathFactory) -> Matcher:
    root = tmp_path_factory.mktemp("lists")
    hashes = hash_image(KNOWN, SETTINGS.guard_limits()).hex()
    (root / "entries.csv").write_text(
        "list,entry_id,algorithm,hash,category,source,note\n"
        f"demo,p1,phash,{hashes['phash']},other,test,\n"
        f"demo,s1,sha256,{hashes['sha256']},other,test,\n"
    )
    return build_matcher([root / "entries.csv"], SETTINGS).matcher


def offline(paths: list[Path], matcher: Matcher) -> list[Verdict]:
    verdicts: list[Verdict] = []
    screen_files(paths, matcher, SETTINGS, lambda _, verdict: verdicts.append(verdict))
    return verdicts


def in_the_worker(data: bytes, matcher: Matcher) -> Verdict:
    screener = Screener(
        SETTINGS,
        matcher=matcher,
        fetcher=Fetcher(SETTINGS.fetch_limits()),
        pool=HashPool(0),
        metrics=PipelineMetrics(),
        limits=SETTINGS.guard_limits(),
    )
    content = {"kind": "inline", "data_base64": base64.b64encode(data).decode()}
    event = {"upload_id": "u1", "content": content}
    source = SourceRef(topic="uploads", partition=0, offset=0)
    return asyncio.run(screener.screen(json.dumps(event).encode(), None, source)).verdict


def comparable(verdict: Verdict) -> dict[str, Any]:
    return verdict.model_dump(mode="json", exclude={"upload_id", "decided_at", "stage_seconds"})


@pytest.mark.parametrize(
    "data",
    [KNOWN, encode(synthetic_image(1).resize((400, 300))), encode(synthetic_image(2), "PNG"),
     KNOWN[:500]],
    ids=["identical", "near-copy", "stranger", "truncated"],
)  # fmt: skip
def test_a_file_gets_the_verdict_the_worker_gives_its_bytes(
    data: bytes, matcher: Matcher, tmp_path: Path
) -> None:
    path = tmp_path / "upload"
    path.write_bytes(data)
    (verdict,) = offline([path], matcher)
    assert verdict.upload_id == str(path)
    assert comparable(verdict) == comparable(in_the_worker(data, matcher))


def test_a_file_that_cannot_be_read_fails_at_fetch(matcher: Matcher, tmp_path: Path) -> None:
    (verdict,) = offline([tmp_path / "missing.jpg"], matcher)
    assert verdict.error is not None
    assert (verdict.error.stage, verdict.error.reason) == ("fetch", "unreadable")
