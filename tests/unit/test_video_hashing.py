"""Video hashes: the frames sampled (about one a second plus scene changes, decoding only what
they need), each hashed with the still-image algorithms, exact digests of the file, and the
vPDQ hash computed as ThreatExchange's vpdq does."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools

import imagehash
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.core.guard import GuardReason, ImageRejected
from pipeline.core.hashing import bits_to_int
from pipeline.core.pdq import full_frame_pdq
from pipeline.core.types import Algorithm
from pipeline.core.video import (
    MAX_CHANGES_PER_INTERVAL,
    PacketInfo,
    VideoLimits,
    sample_plan,
    vpdq_frame_step,
)
from pipeline.videodecode import SamplingWork, hash_video, open_video, sample_frames, vpdq_features
from tests.videogen import encode_clip, moving_pattern, slideshow

LIMITS = VideoLimits()
PHOTOS = ("astronaut", "coffee", "chelsea")
ALGORITHMS = (Algorithm.MD5, Algorithm.SHA1, Algorithm.SHA256, Algorithm.PHASH, Algorithm.PDQ)
#: A slideshow of three photos, two seconds each, a keyframe every second (as phones encode).
FRAMES = list(slideshow(PHOTOS, seconds_each=2.0))
SHOW = encode_clip(FRAMES, gop=25)


def gop_packets(seconds: float, fps: int, gop: int, sizes: dict[int, int] | None = None):
    """Packet infos of a clip with a keyframe every ``gop`` frames (decode order = time order)."""
    count = round(seconds * fps)
    return tuple(
        PacketInfo(index / fps, index % gop == 0, (sizes or {}).get(index, 1000))
        for index in range(count)
    )


def test_plan_takes_the_keyframes_when_there_is_one_a_second() -> None:
    packets = gop_packets(10, 25, 25)
    plan = sample_plan(packets, 10.0, 1.0)
    assert [(t.seconds, t.start, t.keyframe) for t in plan] == [
        (float(s), s * 25, True) for s in range(10)
    ]


def test_plan_fills_seconds_without_keyframes_from_the_keyframe_before() -> None:
    plan = sample_plan(gop_packets(10, 25, 125), 10.0, 1.0)  # a keyframe every 5 s
    assert [t.seconds for t in plan] == [float(s) for s in range(10)]
    assert all(packet_index % 125 == 0 for packet_index in (t.start for t in plan))
    assert all(t.start / 25 <= t.seconds for t in plan)


def test_plan_bounds_keyframes_per_interval() -> None:
    plan = sample_plan(gop_packets(4, 25, 1), 4.0, 1.0)  # every frame a keyframe
    assert len(plan) == 4 * MAX_CHANGES_PER_INTERVAL


def test_plan_takes_a_cut_the_encoder_coded_without_a_keyframe() -> None:
    packets = gop_packets(4, 25, 100, sizes={62: 9000})  # frame 62 (2.48 s): 9x its neighbours
    seconds = [t.seconds for t in sample_plan(packets, 4.0, 1.0)]
    assert 62 / 25 in seconds
    assert seconds == sorted(seconds)


def test_plan_of_a_stream_without_keyframes_is_empty() -> None:
    assert sample_plan(tuple(PacketInfo(i / 25, False) for i in range(50)), 2.0, 1.0) == ()


@settings(max_examples=200, deadline=None)
@given(
    keyframes=st.lists(st.booleans(), min_size=1, max_size=300),
    interval=st.sampled_from([0.5, 1.0, 2.0]),
)
def test_every_target_decodes_from_a_keyframe_before_it(
    keyframes: list[bool], interval: float
) -> None:
    packets = tuple(PacketInfo(i / 25, key, 1000) for i, key in enumerate(keyframes))
    plan = sample_plan(packets, len(keyframes) / 25, interval)
    for target in plan:
        assert packets[target.start].keyframe
        assert packets[target.start].seconds <= target.seconds
    times = [t.seconds for t in plan]
    assert times == sorted(times)
    # About one per interval, never more than the bound allows.
    assert len(plan) <= (len(keyframes) / 25 / interval + 1) * MAX_CHANGES_PER_INTERVAL


def test_sampled_frames_are_the_frames_shown_then_and_cost_one_decode_each() -> None:
    container, facts, video = open_video(SHOW, LIMITS)
    work = SamplingWork()
    with container:
        samples = list(sample_frames(container, facts, video, LIMITS, 128, work=work))
    assert [s.seconds for s in samples] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert all(s.keyframe for s in samples)
    assert work.decoded_frames == len(samples) < work.packets == len(FRAMES)
    for sample in samples:
        source = Image.fromarray(FRAMES[round(sample.seconds * 25)]).convert("L")
        assert sample.gray.size == (320, 240)
        distance = (
            bits_to_int(imagehash.phash(sample.gray).hash)
            ^ bits_to_int(imagehash.phash(source).hash)
        ).bit_count()
        assert distance <= 6


def test_long_groups_of_pictures_are_sampled_every_second_all_the_same() -> None:
    clip = encode_clip(moving_pattern(4, 6), gop=150)  # one keyframe in 6 s
    container, facts, video = open_video(clip, LIMITS)
    work = SamplingWork()
    with container:
        samples = list(sample_frames(container, facts, video, LIMITS, 128, work=work))
    times = [s.seconds for s in samples]
    assert times[:2] == [0.0, 1.0]
    assert len(times) >= 6
    assert max(b - a for a, b in itertools.pairwise(times)) < 2.0
    # One pass through the group, not one per sample.
    assert work.decoded_frames <= work.packets


def test_decoding_past_the_frame_budget_is_refused() -> None:
    clip = encode_clip(moving_pattern(4, 6), gop=150)
    with pytest.raises(ImageRejected) as caught:
        hash_video(clip, VideoLimits(max_decoded_frames=40), ALGORITHMS)
    assert caught.value.guard_reason is GuardReason.DECOMPRESSION_BOMB


def test_hash_video_gives_file_digests_and_frame_hashes() -> None:
    result = hash_video(SHOW, LIMITS, ALGORITHMS)
    assert result.hashes[Algorithm.SHA256] == int(hashlib.sha256(SHOW).hexdigest(), 16)
    assert result.hashes[Algorithm.MD5] == int(hashlib.md5(SHOW).hexdigest(), 16)
    assert (result.format, result.width, result.height) == ("MP4", 320, 240)
    assert result.duration_seconds == pytest.approx(6.0)
    assert [f.seconds for f in result.frames] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    for frame in result.frames:
        whole = frame.views[0]
        assert set(whole.hashes) == {Algorithm.PHASH, Algorithm.PDQ}
        assert whole.pdq_quality is not None


def test_frames_of_different_photos_hash_apart() -> None:
    frames = hash_video(SHOW, LIMITS, (Algorithm.PDQ,)).frames
    first, third = frames[0].views[0], frames[4].views[0]  # astronaut vs chelsea
    distance = first.hashes[Algorithm.PDQ].identity ^ third.hashes[Algorithm.PDQ].identity
    assert distance.bit_count() > 80


def test_vpdq_follows_the_reference_rule() -> None:
    """vPDQ hashes frames 0, step, 2*step, ... (step = int(seconds_per_hash x fps)) of the
    full decode, at full size, time = frame number / fps; ThreatExchange's own sample videos
    agree with its published hashes within 6 bits a frame (22 for near-blank frames of quality
    ~50), same frame numbers and times (checked outside the suite: their videos are not ours
    to commit)."""
    container, _, video = open_video(SHOW, LIMITS)
    with container:
        features = vpdq_features(container, video, LIMITS)
    step = vpdq_frame_step(25.0, 1.0)
    assert step == 25
    assert [f.frame_number for f in features] == list(range(0, len(FRAMES), step))
    assert [f.seconds for f in features] == [n / 25 for n in range(0, len(FRAMES), step)]
    for feature in features:
        source, quality = full_frame_pdq(np.asarray(FRAMES[feature.frame_number]))
        assert (feature.pdq ^ source).bit_count() <= 16
        assert abs(feature.quality - quality) <= 10
    line = features[1].line().split(",")
    assert (line[0], len(line[2]), line[3]) == ("25", 64, "1.000")


def test_vpdq_of_a_header_without_a_frame_rate_is_a_refusal_not_a_crash() -> None:
    """vPDQ's frame times are frame numbers over the frame rate: a header declaring none used
    to raise ZeroDivisionError out of the hasher, whose promise is a refusal with a reason."""
    container, _, video = open_video(SHOW, LIMITS)
    with container, pytest.raises(ImageRejected, match="no frame rate"):
        vpdq_features(container, dataclasses.replace(video, frame_rate=0.0), LIMITS)


def test_vpdq_step_truncates_like_the_reference() -> None:
    assert vpdq_frame_step(29.97, 1.0) == 29
    assert vpdq_frame_step(0.5, 1.0) == 1


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_damaged_media_data_ends_in_hashes_or_a_reason(data: st.DataObject) -> None:
    damaged = bytearray(SHOW)
    for _ in range(data.draw(st.integers(1, 32))):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    reason = None
    try:
        hash_video(bytes(damaged), LIMITS, ALGORITHMS)
    except ImageRejected as exc:
        reason = exc.guard_reason
    assert reason is not GuardReason.EMPTY


def test_the_hashing_job_takes_videos_only_when_given_video_limits() -> None:
    from pipeline.config import Settings
    from pipeline.core.guard import GuardLimits
    from pipeline.hashprocess import hash_job

    result = hash_job(SHOW, GuardLimits(video=LIMITS), ALGORITHMS)
    assert (result.media, result.format, result.views) == ("video", "MP4", ())
    assert [f.seconds for f in result.frames] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert result.duration_seconds == pytest.approx(6.0)
    with pytest.raises(ImageRejected) as caught:
        hash_job(SHOW, GuardLimits(), ALGORITHMS)
    assert caught.value.guard_reason is GuardReason.FORMAT_NOT_ALLOWED
    settings = Settings(video_codecs="H264, vp9", video_max_duration_seconds=5)
    limits = settings.guard_limits(videos=True)
    assert limits.video is not None
    assert limits.video.codecs == frozenset({"h264", "vp9"})
    assert settings.guard_limits().video is None
    with pytest.raises(ImageRejected) as caught:
        hash_job(SHOW, limits, ALGORITHMS)
    assert caught.value.guard_reason is GuardReason.TOO_LONG
