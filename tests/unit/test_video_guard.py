"""The video guard: videos recognised by their bytes, and every unfit one refused from its
container header with a named reason, fast, before a frame is decoded."""

from __future__ import annotations

import io
import time

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.guard import GuardLimits, GuardReason, ImageRejected, decode
from pipeline.core.video import video_format
from pipeline.core.videolimits import VideoLimits
from pipeline.videodecode import open_video
from tests.videogen import encode_clip, iso_box, matroska_header, moving_pattern

LIMITS = VideoLimits()
#: Refusals from the header must be this fast (the issue's bound), with room for a busy machine.
HEADER_SECONDS = 0.1
VPX_FAST = {"deadline": "realtime", "cpu-used": "8"}

#: (container, codec, frame size) of each kind of upload the guard accepts.
KINDS = [
    ("MP4", "libx264", (160, 120)),
    ("MOV", "mpeg4", (160, 120)),
    ("M4V", "libx264", (160, 120)),
    ("3GP", "h263", (176, 144)),
    ("WEBM", "libvpx-vp9", (160, 120)),
    ("MKV", "libvpx", (160, 120)),
]
DECODER = {"libx264": "h264", "libvpx-vp9": "vp9", "libvpx": "vp8"}


def clip(
    container: str = "MP4", codec: str = "libx264", size: tuple[int, int] = (160, 120)
) -> bytes:
    options = VPX_FAST if codec.startswith("libvpx") else None
    return encode_clip(
        moving_pattern(1, 2, size=size), codec=codec, container=container, options=options
    )


MP4 = clip()
WEBM = clip("WEBM", "libvpx-vp9")


def refusal(data: bytes, limits: VideoLimits = LIMITS) -> tuple[GuardReason, str, float]:
    """The reason, message and seconds it took to refuse ``data``."""
    start = time.perf_counter()
    with pytest.raises(ImageRejected) as caught:
        open_video(data, limits)[0].close()
    return caught.value.guard_reason, str(caught.value), time.perf_counter() - start


def outcome(data: bytes, limits: VideoLimits = LIMITS) -> GuardReason | None:
    try:
        container, _, _ = open_video(data, limits)
    except ImageRejected as exc:
        return exc.guard_reason
    container.close()
    return None


@pytest.mark.parametrize(("container", "codec", "size"), KINDS, ids=[k[0] for k in KINDS])
def test_each_container_is_recognised_and_its_header_read(
    container: str, codec: str, size: tuple[int, int]
) -> None:
    data = clip(container, codec, size)
    assert video_format(data) == container
    opened, facts, video = open_video(data, LIMITS)
    opened.close()
    assert facts.format == container
    assert (video.kind, video.codec) == ("video", DECODER.get(codec, codec))
    assert (video.width, video.height) == size
    assert video.frame_rate == pytest.approx(25)
    assert max(facts.duration_seconds, video.duration_seconds) == pytest.approx(2, abs=0.1)


def test_still_pictures_are_not_videos() -> None:
    for data in (b"\xff\xd8\xff\xe0", b"\x00\x00\x00\x18ftypheic" + bytes(8)):
        assert video_format(data) is None
        assert refusal(data)[0] is GuardReason.FORMAT_NOT_ALLOWED


def test_the_image_guard_does_not_take_videos_for_pictures() -> None:
    for data in (MP4, WEBM):
        with pytest.raises(ImageRejected) as caught:
            decode(data, GuardLimits())
        assert caught.value.guard_reason is GuardReason.FORMAT_NOT_ALLOWED


def test_format_allowlist() -> None:
    only_mp4 = VideoLimits(allowed_formats=frozenset({"MP4"}))
    assert outcome(MP4, only_mp4) is None
    reason, message, _ = refusal(WEBM, only_mp4)
    assert reason is GuardReason.FORMAT_NOT_ALLOWED
    assert "WEBM" in message


def test_byte_cap_and_empty() -> None:
    assert refusal(MP4, VideoLimits(max_bytes=1000))[0] is GuardReason.TOO_LARGE_BYTES
    assert refusal(b"")[0] is GuardReason.EMPTY


def lasting(seconds: int) -> bytes:
    """An MP4 of three frames spread over ``seconds``: the header says that long (a still
    picture for hours is a real video, and costs nothing to make)."""
    frames = list(moving_pattern(5, 3 / 25))
    return encode_clip(frames, timestamps=[0, seconds * 25 // 2, seconds * 25])


def with_tracks(data: bytes, count: int) -> bytes:
    """``data`` (an MP4) with its one track box repeated to ``count`` tracks in the moov."""
    moov = iso_box(data, (b"moov",)) - 8
    moov_end = moov + int.from_bytes(data[moov : moov + 4], "big")
    trak = iso_box(data, (b"moov", b"trak")) - 8
    trak_end = trak + int.from_bytes(data[trak : trak + 4], "big")
    body = data[moov + 8 : trak] + data[trak:trak_end] * count + data[trak_end:moov_end]
    return data[:moov] + (8 + len(body)).to_bytes(4, "big") + b"moov" + body + data[moov_end:]


HOSTILE = [
    pytest.param(lasting(4 * 3600), GuardReason.TOO_LONG, "14400 s", id="4-hour-mp4"),
    pytest.param(
        matroska_header(duration_seconds=4 * 3600), GuardReason.TOO_LONG, "14400", id="4-hour-webm"
    ),
    pytest.param(
        matroska_header(width=7680, height=4320),
        GuardReason.TOO_MANY_PIXELS,
        "7680x4320",
        id="8k-webm",
    ),
    pytest.param(
        with_tracks(MP4, 10_000), GuardReason.TOO_MANY_STREAMS, "16 tracks", id="10000-track-mp4"
    ),
    pytest.param(
        matroska_header(tracks=10_000), GuardReason.TOO_MANY_STREAMS, "16", id="10000-track-webm"
    ),
    pytest.param(
        matroska_header(fps=1000), GuardReason.FRAME_RATE_TOO_HIGH, "1000", id="1000-fps-webm"
    ),
]


@pytest.mark.parametrize(("data", "reason", "words"), HOSTILE)
def test_hostile_headers_are_refused_fast(data: bytes, reason: GuardReason, words: str) -> None:
    got, message, seconds = refusal(data)
    assert got is reason, message
    assert words in message
    assert seconds < HEADER_SECONDS, f"{seconds * 1000:.1f} ms"


def test_the_same_headers_within_limits_are_accepted() -> None:
    """The hostile cases above fail for what they declare, not for how they were made."""
    assert outcome(lasting(60)) is None
    assert outcome(with_tracks(MP4, 2)) is None
    assert outcome(matroska_header(width=1280, height=720, duration_seconds=600, tracks=3)) is None


def test_limits_are_the_callers() -> None:
    assert refusal(MP4, VideoLimits(max_duration_seconds=1))[0] is GuardReason.TOO_LONG
    assert refusal(MP4, VideoLimits(max_pixels=100 * 100))[0] is GuardReason.TOO_MANY_PIXELS
    assert refusal(MP4, VideoLimits(max_frame_rate=24))[0] is GuardReason.FRAME_RATE_TOO_HIGH
    reason, message, _ = refusal(MP4, VideoLimits(codecs=frozenset({"vp9"})))
    assert reason is GuardReason.CODEC_NOT_ALLOWED
    assert "'h264'" in message


def test_codecs_off_the_default_allowlist() -> None:
    mjpeg = encode_clip(moving_pattern(3, 1), codec="mjpeg", container="MOV")
    reason, message, _ = refusal(mjpeg)
    assert reason is GuardReason.CODEC_NOT_ALLOWED
    assert "mjpeg" in message


def test_audio_only_file_has_no_video_stream() -> None:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as output:
        stream = output.add_stream("aac", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 8000
        for index in range(8):
            frame.pts = index * 1024
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    reason, message, _ = refusal(buffer.getvalue())
    assert reason is GuardReason.NO_VIDEO_STREAM
    assert "audio" in message


def test_truncated_movie_box() -> None:
    """The muxer writes the moov box last: every cut inside it (or before it) is truncated."""
    moov = iso_box(MP4, (b"moov",)) - 8
    for cut in (moov + 20, (moov + len(MP4)) // 2, len(MP4) - 1, moov // 2):
        assert refusal(MP4[:cut])[0] is GuardReason.TRUNCATED


@settings(max_examples=60, deadline=None)
@given(container=st.sampled_from(["MP4", "WEBM"]), data=st.data())
def test_every_cut_is_refused_as_truncated(container: str, data: st.DataObject) -> None:
    whole = MP4 if container == "MP4" else WEBM
    cut = data.draw(st.integers(12, len(whole) - 1))
    assert outcome(whole[:cut]) is GuardReason.TRUNCATED


@settings(max_examples=150, deadline=None)
@given(container=st.sampled_from(["MP4", "WEBM"]), data=st.data())
def test_damaged_headers_end_in_a_reason(container: str, data: st.DataObject) -> None:
    """Bytes changed anywhere: accepted, or refused with a reason; never a crash or a hang."""
    damaged = bytearray(MP4 if container == "MP4" else WEBM)
    for _ in range(data.draw(st.integers(1, 16))):
        damaged[data.draw(st.integers(0, min(len(damaged) - 1, 4096)))] = data.draw(
            st.integers(0, 255)
        )
    start = time.perf_counter()
    outcome(bytes(damaged))
    assert time.perf_counter() - start < 2
