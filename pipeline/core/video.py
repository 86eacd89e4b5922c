"""The video guard's rules and the facts they judge: which uploads are videos, and which videos
are fit to sample.

Owns the container facts a header yields (:class:`VideoFacts`, read by the hashing processes
with PyAV, :mod:`pipeline.videodecode`) and the refusals under
:class:`~pipeline.core.videolimits.VideoLimits`, cheapest first: byte cap and container format
from the leading bytes; a file cut short and the number of tracks it declares, from its own
boxes or elements before any library parses it (a 10,000-track file never reaches FFmpeg);
then, from the header FFmpeg reads, the stream count, the video stream's duration, size, frame
rate and codec. Every refusal is an :class:`~pipeline.core.guard.ImageRejected` with a bounded
:class:`~pipeline.core.guard.GuardReason`, like an image's.

Must not: decode frames, read settings or the clock, or keep the bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, ImageSequence

from pipeline.core.containers import (
    iso_cut_short,
    iso_track_count,
    matroska_cut_short,
    matroska_track_count,
)
from pipeline.core.guard import GuardReason, ImageRejected, sniff_format
from pipeline.core.hashing import View
from pipeline.core.types import Algorithm
from pipeline.core.videolimits import VIDEO_FORMATS, VideoLimits

_ISO_FORMATS = frozenset({"MP4", "MOV", "M4V", "3GP"})


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
    included, or cut at a box boundary before the ``moov`` box), or declaring more tracks than
    ``max_streams`` (counted from the ``moov`` box or the Matroska Tracks element, so FFmpeg
    never sets up thousands of streams).
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
    if iso and tracks is None:  # every playable ISO movie has one; muxers write it last
        raise _reject(GuardReason.TRUNCATED, f"{fmt} data has no movie box (cut before it)")
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


@dataclass(frozen=True, slots=True)
class PacketInfo:
    """One video packet in decode order: its presentation time (seconds from the stream's
    start; None when the container gives none), whether it starts a keyframe, its size."""

    seconds: float | None
    keyframe: bool
    size: int = 0


@dataclass(frozen=True, slots=True)
class SampleTarget:
    """A frame to hash: the first frame shown at or after ``seconds``, decoded from the
    keyframe packet at ``start`` (an index into the packets in decode order). ``cut`` marks a
    frame sampled because its size says a scene cut (not a keyframe, not on the interval)."""

    seconds: float
    start: int
    keyframe: bool
    cut: bool = False


#: Most keyframes and cuts sampled in one sampling interval: all-intra or badly encoded videos
#: have a keyframe every frame, and sampling those all would defeat the interval.
MAX_CHANGES_PER_INTERVAL = 2
#: A frame coded in this many times the bytes of the frames before it (the upper quartile of
#: the last :data:`_CUT_WINDOW`, so that tiny B-frames do not set the scale) is taken for a
#: scene cut: after a cut an encoder that places no keyframe there codes the new picture
#: mostly intra, many times a predicted frame's size.
CUT_SIZE_RATIO = 4.0
_CUT_WINDOW = 24
_CUT_MIN_BYTES = 256


def _cuts(packets: tuple[PacketInfo, ...]) -> set[int]:
    """Indexes of the non-key packets that look like a scene cut by their size."""
    cuts: set[int] = set()
    recent: list[int] = []
    for index, info in enumerate(packets):
        if info.keyframe:
            recent = []
            continue
        if len(recent) >= 4:
            typical = sorted(recent)[3 * len(recent) // 4]
            if info.size >= max(_CUT_MIN_BYTES, CUT_SIZE_RATIO * typical):
                cuts.add(index)
        recent = [*recent[-(_CUT_WINDOW - 1) :], info.size]
    return cuts


def sample_plan(
    packets: tuple[PacketInfo, ...], duration_seconds: float, interval_seconds: float
) -> tuple[SampleTarget, ...]:
    """Which frames of a video to hash, in time order: about one per ``interval_seconds``
    plus scene changes, decoding as little as possible.

    A scene change is a keyframe (encoders place one at cuts they detect, and one decodes on
    its own) or a frame coded in far more bytes than the frames before it (:data:`CUT_SIZE_RATIO`,
    a cut the encoder coded without a keyframe). Each interval takes its first
    :data:`MAX_CHANGES_PER_INTERVAL` scene changes; an interval with none takes the frame
    shown at its start. Every target decodes from the keyframe before it. Packets without a
    time (or before the first keyframe) are never sampled.
    """
    if interval_seconds <= 0:
        return ()
    cuts = _cuts(packets)
    last_keyframe: int | None = None
    changes: list[tuple[float, int, bool]] = []  # (seconds, GOP start, is a keyframe)
    gop_starts: list[tuple[float, int]] = []
    for index, info in enumerate(packets):
        if info.keyframe and info.seconds is not None:
            last_keyframe = index
            gop_starts.append((info.seconds, index))
        if info.seconds is None or last_keyframe is None:
            continue
        if info.keyframe or index in cuts:
            changes.append((info.seconds, last_keyframe, info.keyframe))
    if not gop_starts:
        return ()
    changes.sort()
    gop_starts.sort()
    end = max(duration_seconds, changes[-1][0])
    targets: list[SampleTarget] = []
    position = 0
    slot = 0
    while slot == 0 or slot * interval_seconds < end:  # the last frame is shown before the end
        start, stop = slot * interval_seconds, (slot + 1) * interval_seconds
        while position < len(changes) and changes[position][0] < start:
            position += 1
        in_slot = []
        while position < len(changes) and changes[position][0] < stop:
            in_slot.append(changes[position])
            position += 1
        if in_slot:
            targets += [
                SampleTarget(seconds, gop, keyframe, cut=not keyframe)
                for seconds, gop, keyframe in in_slot[:MAX_CHANGES_PER_INTERVAL]
            ]
        else:
            before = [index for seconds, index in gop_starts if seconds <= start]
            if before:
                targets.append(SampleTarget(start, before[-1], keyframe=False))
        slot += 1
    return tuple(targets)


@dataclass(frozen=True, slots=True)
class VpdqFeature:
    """One frame of a vPDQ video hash (ThreatExchange's format): the frame's number in decode
    order, when it is shown (frame number / frame rate, as vPDQ computes it), its PDQ hash and
    PDQ quality."""

    frame_number: int
    seconds: float
    pdq: int
    quality: int

    def line(self) -> str:
        """The feature as vPDQ's hash files write it: ``frame,quality,hex,seconds``."""
        return f"{self.frame_number},{self.quality},{self.pdq:064x},{self.seconds:.3f}"


def vpdq_frame_step(frame_rate: float, seconds_per_hash: float) -> int:
    """Every how many frames vPDQ hashes one: ``int(seconds_per_hash * frame_rate)``, at least
    1 (its reference implementation's rule, truncation included)."""
    return max(1, int(seconds_per_hash * frame_rate))


@dataclass(frozen=True, slots=True)
class FrameHashes:
    """The still-image hashes of one sampled frame: when it is shown (seconds from the start),
    whether it is a keyframe, and its views (the whole frame, then content regions such as the
    picture inside letterbox bars, each in every orientation; :func:`pipeline.core.hashing.
    upload_views`). ``cut``: sampled for a scene cut seen by its size (see
    :class:`SampleTarget`). Nothing else of the frame is kept."""

    seconds: float
    keyframe: bool
    views: tuple[View, ...]
    cut: bool = False


@dataclass(frozen=True, slots=True)
class VideoHashes:
    """Everything computed for one video upload: the header's facts, exact digests of the file,
    the sampled frames' hashes in time order, and (when asked for) its vPDQ hash.
    ``decoded_frames`` counts the packets the decoder was fed for sampling."""

    format: str
    width: int
    height: int
    duration_seconds: float
    frame_rate: float
    hashes: dict[Algorithm, int]
    frames: tuple[FrameHashes, ...]
    vpdq: tuple[VpdqFeature, ...] = ()
    decoded_frames: int = 0


#: A GIF frame without a duration is shown for this long (browsers' usual floor for 0 and 1).
_GIF_DEFAULT_FRAME_SECONDS = 0.1


def animation_samples(data: bytes, interval_seconds: float) -> Iterator[tuple[float, Image.Image]]:
    """The frames of an animated GIF to hash beyond its first, as a video's are sampled: each
    frame on screen at an ``interval_seconds`` boundary (by the frames' own durations), with the
    time it appears, as grayscale, full size. The caller has guarded the file (pixels, frames,
    bytes: the guard's caps bound the decode); frames are composited by Pillow, so each is the
    picture shown."""
    with Image.open(io.BytesIO(data), formats=["GIF"]) as animation:
        start = 0.0
        for index, frame in enumerate(ImageSequence.Iterator(animation)):
            duration = frame.info.get("duration") or 0
            end = start + (duration / 1000 if duration > 10 else _GIF_DEFAULT_FRAME_SECONDS)
            boundary = math.ceil(start / interval_seconds) * interval_seconds
            if index > 0 and boundary < end:
                yield start, frame.convert("L")
            start = end
