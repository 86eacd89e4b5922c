"""The worker's screening path takes video uploads: hashed in the pool with the video limits,
matched by their sampled frames, the verdict naming the media and the matching frames' times."""

from __future__ import annotations

import asyncio
import base64
import json

from pipeline.adapters.fetch import Fetcher
from pipeline.config import Settings
from pipeline.core.guard import GuardLimits
from pipeline.core.hashlist import Category, HashListEntry, ListConfig
from pipeline.core.matching import Matcher
from pipeline.core.types import Algorithm, HashValue
from pipeline.core.video import VideoLimits
from pipeline.fetch_policy import FetchLimits
from pipeline.hashpool import HashPool
from pipeline.metrics import PipelineMetrics
from pipeline.models import SourceRef
from pipeline.screening import Screener, ScreeningOutcome
from pipeline.videodecode import hash_video
from tests.videogen import encode_clip, slideshow

CLIP = encode_clip(list(slideshow(["astronaut", "coffee"], seconds_each=2.0)), gop=25)


def screen(
    limits: GuardLimits, matcher: Matcher, metrics: PipelineMetrics | None = None
) -> ScreeningOutcome:
    screener = Screener(
        Settings(bootstrap_servers="unused:9092", worker_id="w1"),
        matcher=matcher,
        fetcher=Fetcher(FetchLimits(max_bytes=10_000_000)),
        pool=HashPool(0),
        metrics=metrics or PipelineMetrics(),
        limits=limits,
    )
    content = {"kind": "inline", "data_base64": base64.b64encode(CLIP).decode()}
    event = json.dumps({"upload_id": "v1", "content": content}).encode()
    return asyncio.run(
        screener.screen(event, b"k", SourceRef(topic="uploads", partition=0, offset=1))
    )


def test_a_video_upload_is_screened_by_its_frames() -> None:
    coffee = hash_video(CLIP, VideoLimits(), (Algorithm.PDQ,)).frames[2].views[0]
    matcher = Matcher()
    matcher.set_list(ListConfig.create("l", action="block"))
    matcher.upsert(
        [
            HashListEntry(
                "l", "coffee", HashValue(Algorithm.PDQ, coffee.hashes[Algorithm.PDQ].identity),
                Category.CSAM,
            )
        ]
    )  # fmt: skip
    metrics = PipelineMetrics()
    outcome = screen(GuardLimits(video=VideoLimits()), matcher, metrics)
    verdict = outcome.verdict
    assert metrics.registry.get_sample_value("screening_videos_total") == 1
    assert metrics.registry.get_sample_value("screening_video_seconds_total") == 4.0
    assert verdict.action == "block"
    assert verdict.image is not None
    assert (verdict.image.media, verdict.image.format) == ("video", "MP4")
    (record,) = verdict.matches
    assert record.entry_id == "coffee"
    assert record.frame_seconds is not None
    assert record.frame_seconds[0] == 2.0


def test_without_video_limits_a_video_is_refused_as_before() -> None:
    outcome = screen(GuardLimits(), Matcher())
    assert outcome.verdict.error is not None
    assert outcome.verdict.error.reason == "format_not_allowed"
