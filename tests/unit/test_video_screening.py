"""The worker's screening path takes video uploads: hashed in the pool with the video limits,
matched by their sampled frames, the verdict naming the media and the matching frames' times."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from pipeline.adapters.fetch import Fetcher
from pipeline.config import Settings
from pipeline.core.guard import GuardLimits
from pipeline.core.hashlist import Category, HashListEntry, ListConfig
from pipeline.core.matching import Matcher
from pipeline.core.types import Algorithm, HashValue
from pipeline.core.videolimits import VideoLimits
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


def animated_gif() -> bytes:
    """Three seconds of animation: a photo for 1.5 s, then another (100 ms frames)."""
    import io

    from tests.imagegen import sample_photo

    first, second = (sample_photo(name).resize((160, 120)) for name in ("astronaut", "coffee"))
    frames = [first] * 15 + [second] * 15
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def test_an_animated_gif_is_hashed_beyond_its_first_frame() -> None:
    from pipeline.core.guard import decode
    from pipeline.core.hashing import upload_views
    from pipeline.core.videomatch import match_video
    from pipeline.hashprocess import hash_job
    from tests.imagegen import sample_photo

    gif = animated_gif()
    result = hash_job(gif, GuardLimits(video=VideoLimits()), (Algorithm.SHA256, Algorithm.PDQ))
    assert (result.media, result.format) == ("video", "GIF")
    # Pillow stores each photo as one frame of 1.5 s: the second is on screen at 2 s.
    assert [frame.seconds for frame in result.frames] == pytest.approx([0.0, 1.5])
    coffee = io_png(sample_photo("coffee").resize((160, 120)))
    listed = upload_views(decode(coffee, GuardLimits()), (Algorithm.PDQ,))[0]
    matcher = Matcher()
    matcher.set_list(ListConfig.create("l"))
    value = listed.hashes[Algorithm.PDQ].identity
    matcher.upsert([HashListEntry("l", "coffee", HashValue(Algorithm.PDQ, value), Category.CSAM)])
    (found,) = match_video(matcher, result.hashes, result.frames)
    assert found.seconds == pytest.approx((1.5,))
    # Without video limits an animated GIF is a picture: its first frame, as before.
    assert hash_job(gif, GuardLimits(), (Algorithm.PDQ,)).media == "image"


def io_png(image: object) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # type: ignore[attr-defined]
    return buffer.getvalue()


def test_animation_samples_are_the_frames_on_screen_at_each_second() -> None:
    import io

    from PIL import Image

    from pipeline.core.video import animation_samples

    frames = [Image.new("L", (8, 8), color) for color in (0, 80, 160, 240)]
    buffer = io.BytesIO()
    frames[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=[500, 700, 1800, 100],
    )
    samples = list(animation_samples(buffer.getvalue(), 1.0))
    assert [seconds for seconds, _ in samples] == pytest.approx([0.5, 1.2, 3.0])
    assert [image.getpixel((0, 0)) for _, image in samples] == [80, 160, 240]


def test_video_settings_are_validated_and_name_the_guards_formats() -> None:
    from pipeline.config import VIDEO_CONTAINERS
    from pipeline.core.videolimits import VIDEO_FORMATS

    assert VIDEO_CONTAINERS == VIDEO_FORMATS
    assert Settings(video_formats="mp4, webm").video_formats == frozenset({"MP4", "WEBM"})
    assert Settings(video_formats="").video_formats == frozenset()
    with pytest.raises(ValueError, match="unknown video formats \\['AVI'\\]"):
        Settings(video_formats="MP4,AVI")
