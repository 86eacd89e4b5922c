"""The video guard's rules and the facts they judge: which uploads are videos, and which videos
are fit to sample.

Owns :class:`VideoLimits` (the ``PIPELINE_VIDEO_*`` settings as the guard sees them), the
container facts a header yields (:class:`VideoFacts`, read by the hashing processes with PyAV,
:mod:`pipeline.videodecode`) and the refusals, cheapest first: byte cap and container format
from the leading bytes; a file cut short and the number of tracks it declares, from its own
boxes or elements before any library parses it (a 10,000-track file never reaches FFmpeg);
then, from the header FFmpeg reads, the stream count, the video stream's duration, size, frame
rate and codec. Every refusal is an :class:`~pipeline.core.guard.ImageRejected` with a bounded
:class:`~pipeline.core.guard.GuardReason`, like an image's.

Must not: decode frames, read settings or the clock, or keep the bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.core.containers import (
    iso_cut_short,
    iso_track_count,
    matroska_cut_short,
    matroska_track_count,
)
from pipeline.core.guard import GuardReason, ImageRejected, sniff_format
from pipeline.errors import InputRejected

#: Container formats screened as videos, by the names :func:`sniff_format` gives them.
VIDEO_FORMATS: frozenset[str] = frozenset({"MP4", "MOV", "M4V", "3GP", "WEBM", "MKV"})
_ISO_FORMATS = frozenset({"MP4", "MOV", "M4V", "3GP"})

#: Video codecs (FFmpeg decoder names) whose decoders the pipeline runs on uploads: what phones,
#: messengers and browsers write. Others (ProRes, raw video, exotic or fuzz-prone decoders) are
#: refused by default; the setting can widen it.
DEFAULT_VIDEO_CODECS: frozenset[str] = frozenset(
    {"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "h263"}
)


@dataclass(frozen=True, slots=True)
class VideoLimits:
    """Limits for one video upload. Seconds, pixels (width x height of the video stream),
    frames per second, streams of any kind; ``codecs`` are FFmpeg decoder names.

    ``max_decoded_frames`` bounds the decoder's work whatever the header says: sampling decodes
    from a keyframe to each sample, so a file with keyframes far apart (or a header that lies
    about its duration) costs at most this many decoded frames before it is refused.
    """

    max_bytes: int = 50 * 1024 * 1024
    allowed_formats: frozenset[str] = VIDEO_FORMATS
    max_duration_seconds: float = 1800.0
    max_pixels: int = 3840 * 2160
    max_frame_rate: float = 240.0
    max_streams: int = 16
    codecs: frozenset[str] = DEFAULT_VIDEO_CODECS
    sample_interval_seconds: float = 1.0
    max_decoded_frames: int = 20_000

    def __post_init__(self) -> None:
        unknown = set(self.allowed_formats) - VIDEO_FORMATS
        if unknown:
            raise InputRejected(
                f"unsupported video formats in allowlist: {sorted(unknown)}; "
                f"supported: {sorted(VIDEO_FORMATS)}",
                reason="config",
            )


@dataclass(frozen=True, slots=True)
class StreamFacts:
    """One stream as the container header declares it. ``kind`` is FFmpeg's media type
    (video, audio, subtitle, data, attachment); sizes and rates are 0 where not declared."""

    index: int
    kind: str
    codec: str
    width: int = 0
    height: int = 0
    frame_rate: float = 0.0
    duration_seconds: float = 0.0
    frames: int = 0


@dataclass(frozen=True, slots=True)
class VideoFacts:
    """What a video's header declares: its container format and duration (0 when unknown)
    and its streams."""

    format: str
    duration_seconds: float
    streams: tuple[StreamFacts, ...]


def _reject(reason: GuardReason, message: str) -> ImageRejected:
    return ImageRejected(reason, message)


def video_format(data: bytes) -> str | None:
    """The video container ``data`` claims by its leading bytes, or None when it is not one."""
    fmt = sniff_format(data)
    return fmt if fmt in VIDEO_FORMATS else None


def check_container(data: bytes, limits: VideoLimits) -> str:
    """The checks that need nothing but the bytes; return the container format.

    Refuses: empty, over the byte cap, not a video container on the allowlist, cut short (an
    MP4's top-level boxes or a Matroska segment running past the end: a truncated ``moov``
    included), or declaring more tracks than ``max_streams`` (counted from the ``moov`` box or
    the Matroska Tracks element, so FFmpeg never sets up thousands of streams).
    """
    if not data:
        raise _reject(GuardReason.EMPTY, "upload is empty")
    if len(data) > limits.max_bytes:
        raise _reject(GuardReason.TOO_LARGE_BYTES, f"{len(data)} bytes exceed {limits.max_bytes}")
    fmt = video_format(data)
    if fmt is None or fmt not in limits.allowed_formats:
        raise _reject(
            GuardReason.FORMAT_NOT_ALLOWED,
            f"{fmt or sniff_format(data) or 'unknown'} is not on the video allowlist "
            f"{sorted(limits.allowed_formats)}",
        )
    iso = fmt in _ISO_FORMATS
    if iso_cut_short(data) if iso else matroska_cut_short(data):
        raise _reject(GuardReason.TRUNCATED, f"{fmt} data is truncated")
    most = limits.max_streams + 1  # enough to know the cap is passed
    tracks = iso_track_count(data, most) if iso else matroska_track_count(data, most)
    if tracks is not None and tracks > limits.max_streams:
        raise _reject(
            GuardReason.TOO_MANY_STREAMS,
            f"{fmt} declares more than {limits.max_streams} tracks",
        )
    return fmt


def check_facts(facts: VideoFacts, limits: VideoLimits) -> StreamFacts:
    """Judge the header FFmpeg read; return the video stream to sample (the first one).

    Refuses, in this order: more streams than ``max_streams``, no video stream, a codec off the
    allowlist (its decoder is never opened), a duration over ``max_duration_seconds`` (the
    longest of the container's, the stream's, and its frame count at its frame rate: a header
    cannot hide length in one of them), no or absurd dimensions, more pixels than
    ``max_pixels``, a frame rate over ``max_frame_rate``. Audio, subtitle and data streams
    count against ``max_streams`` but are never decoded, so their codecs are not judged.
    """
    if len(facts.streams) > limits.max_streams:
        raise _reject(
            GuardReason.TOO_MANY_STREAMS,
            f"{len(facts.streams)} streams, over the cap of {limits.max_streams}",
        )
    video = next((stream for stream in facts.streams if stream.kind == "video"), None)
    if video is None:
        kinds = ", ".join(stream.kind for stream in facts.streams) or "none"
        raise _reject(GuardReason.NO_VIDEO_STREAM, f"{facts.format} has no video stream ({kinds})")
    if video.codec not in limits.codecs:
        raise _reject(
            GuardReason.CODEC_NOT_ALLOWED,
            f"video codec {video.codec!r} is not on the allowlist {sorted(limits.codecs)}",
        )
    duration = declared_duration(facts, video)
    if duration > limits.max_duration_seconds:
        raise _reject(
            GuardReason.TOO_LONG,
            f"{duration:.0f} s of video, over the cap of {limits.max_duration_seconds:.0f} s",
        )
    if video.width <= 0 or video.height <= 0:
        raise _reject(
            GuardReason.UNDECODABLE, f"invalid video dimensions {video.width}x{video.height}"
        )
    if video.width * video.height > limits.max_pixels:
        raise _reject(
            GuardReason.TOO_MANY_PIXELS,
            f"{video.width}x{video.height} video exceeds {limits.max_pixels} pixels a frame",
        )
    if not math.isfinite(video.frame_rate) or video.frame_rate > limits.max_frame_rate:
        raise _reject(
            GuardReason.FRAME_RATE_TOO_HIGH,
            f"{video.frame_rate:.1f} frames/s, over the cap of {limits.max_frame_rate:.0f}",
        )
    return video


def declared_duration(facts: VideoFacts, video: StreamFacts) -> float:
    """The longest duration the header declares for ``video`` (seconds): the container's, the
    stream's, or its frame count at its frame rate."""
    by_frames = video.frames / video.frame_rate if video.frame_rate > 0 else 0.0
    return max(facts.duration_seconds, video.duration_seconds, by_frames)
