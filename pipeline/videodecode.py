"""Videos inside the hashing processes: the container header read with PyAV (FFmpeg in the
wheel), judged by the video guard (:mod:`pipeline.core.video`), and the frames to hash decoded.

Owns every call into PyAV. The bytes are read from memory (a BytesIO) and never written
anywhere; the demuxer is the one the leading bytes name (FFmpeg's own format probing is not
run, so an upload cannot pick an exotic demuxer), with bounded probing, and the decoder runs
on one thread (the pool gives each core a process). FFmpeg's failures end as guard reasons.

Must not: log or write content, or be imported by the core.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import av.container
import av.error
import av.packet
import av.stream
import av.video.frame
import av.video.stream
import numpy as np
from PIL import Image

from pipeline.core.guard import DecodedImage, GuardReason, ImageRejected
from pipeline.core.hashing import exact_hashes, upload_views
from pipeline.core.pdq import full_frame_pdq
from pipeline.core.types import Algorithm
from pipeline.core.video import (
    FrameHashes,
    PacketInfo,
    SampleTarget,
    StreamFacts,
    VideoFacts,
    VideoHashes,
    VpdqFeature,
    check_container,
    check_facts,
    declared_duration,
    sample_plan,
    vpdq_frame_step,
)
from pipeline.core.videolimits import VideoLimits

#: FFmpeg demuxer by container format: one for the ISO family, one for Matroska and WebM.
_DEMUXERS = {"MP4": "mov", "MOV": "mov", "M4V": "mov", "3GP": "mov", "WEBM": "matroska"}
_DEMUXERS["MKV"] = "matroska"

#: How much FFmpeg may read and decode to fill in stream parameters the header leaves out
#: (bytes; microseconds of media): enough for any real header, a bound for hostile ones.
_PROBE_BYTES = 2 * 1024 * 1024
_ANALYZE_MICROSECONDS = 2_000_000


def _seconds(value: int | None, time_base: Fraction | None) -> float:
    if value is None or time_base is None or value <= 0:
        return 0.0
    return float(value * time_base)


def _rate(stream: av.stream.Stream) -> float:
    rate = getattr(stream, "average_rate", None) or getattr(stream, "guessed_rate", None)
    return float(rate) if rate else 0.0


def stream_facts(stream: av.stream.Stream) -> StreamFacts:
    """What the header says of one stream (sizes and rates 0 where it says nothing)."""
    context = stream.codec_context
    return StreamFacts(
        index=stream.index,
        kind=str(stream.type),
        codec=str(context.name) if context is not None else "unknown",
        width=int(getattr(context, "width", 0) or 0),
        height=int(getattr(context, "height", 0) or 0),
        frame_rate=_rate(stream) if stream.type == "video" else 0.0,
        duration_seconds=_seconds(stream.duration, stream.time_base),
        frames=int(stream.frames or 0),
    )


def container_facts(fmt: str, container: av.container.InputContainer) -> VideoFacts:
    """The facts of an opened container (duration 0 when the header does not say)."""
    duration = container.duration / 1_000_000 if container.duration else 0.0
    return VideoFacts(
        format=fmt,
        duration_seconds=max(duration, 0.0),
        streams=tuple(stream_facts(stream) for stream in container.streams),
    )


def open_video(
    data: bytes, limits: VideoLimits
) -> tuple[av.container.InputContainer, VideoFacts, StreamFacts]:
    """Guard ``data`` and open it: the container (the caller closes it), its header facts and
    the video stream to sample. Raises :class:`ImageRejected` with the guard's reason; nothing
    else. Only the header is read (and what FFmpeg needs of the first packets to complete it)."""
    fmt = check_container(data, limits)
    try:
        container = av.open(
            io.BytesIO(data),
            mode="r",
            format=_DEMUXERS[fmt],
            container_options={
                "probesize": str(_PROBE_BYTES),
                "analyzeduration": str(_ANALYZE_MICROSECONDS),
                "max_streams": str(limits.max_streams + 1),
            },
        )
    except av.error.MemoryError:
        raise ImageRejected(GuardReason.MEMORY_LIMIT, f"{fmt} header exceeded memory") from None
    except (av.error.FFmpegError, ValueError) as exc:
        raise ImageRejected(GuardReason.UNDECODABLE, f"corrupt {fmt}: {exc}") from None
    try:
        facts = container_facts(fmt, container)
        video = check_facts(facts, limits)
    except BaseException:
        container.close()
        raise
    return container, facts, video


@dataclass(slots=True)
class SamplingWork:
    """What sampling one video cost: packets fed to the decoder, out of all video packets."""

    decoded_frames: int = 0
    packets: int = 0


@dataclass(frozen=True, slots=True)
class DecodedSample:
    """One sampled frame: when it is shown (seconds from the start), whether it is a keyframe,
    and its pixels: ``gray`` reduced for the still-image hashes (the way a JPEG's draft
    decode is), ``rgb`` at full size for vPDQ when asked for (else None)."""

    seconds: float
    keyframe: bool
    gray: Image.Image
    rgb: Image.Image | None
    cut: bool = False
    width: int = 0
    height: int = 0
    """The frame's own size, upright (a stream may change size mid-way)."""


#: Frames with a side shorter than this are not hashed: only a damaged stream decodes such
#: slivers, and a hash of a few pixels describes nothing.
MIN_FRAME_SIDE = 16


def reduced_size(width: int, height: int, draft_size: int) -> tuple[int, int]:
    """The frame size hashed: the smallest of 1/1, 1/2, 1/4, 1/8 keeping both sides >=
    ``draft_size`` (the JPEG draft rule, so a frame hashes like a still of its size)."""
    scale = 1
    while scale < 8 and min(width, height) // (scale * 2) >= draft_size:
        scale *= 2
    return max(1, width // scale), max(1, height // scale)


_TURNS = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180}
_TURNS[270] = Image.Transpose.ROTATE_270
_TURNS[-90] = Image.Transpose.ROTATE_270


def _upright(image: Image.Image, rotation: int) -> Image.Image:
    """The frame as displayed: phones record portrait video as landscape frames with a
    display rotation (degrees counter-clockwise) in the container, as photos carry EXIF."""
    turn = _TURNS.get(rotation % 360 if rotation != -90 else -90)
    return image if turn is None else image.transpose(turn)


def _packets(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, limits: VideoLimits
) -> list[av.packet.Packet[av.video.stream.VideoStream]]:
    """The video stream's packets in decode order, demuxed (not decoded). The count is
    bounded by the longest video the limits admit at the highest frame rate they admit."""
    most = int(limits.max_duration_seconds * limits.max_frame_rate) + 1
    packets: list[av.packet.Packet[av.video.stream.VideoStream]] = []
    for packet in container.demux(stream):
        if packet.size == 0:
            continue  # the demuxer's end-of-stream marker
        packets.append(packet)
        if len(packets) > most:
            raise ImageRejected(
                GuardReason.TOO_LONG,
                f"more than {most} frames: longer than {limits.max_duration_seconds:.0f} s at "
                f"{limits.max_frame_rate:.0f} frames/s",
            )
    return packets


def _packet_info(packet: av.packet.Packet[av.video.stream.VideoStream], start: float) -> PacketInfo:
    time_base = packet.time_base
    if packet.pts is None or time_base is None:
        return PacketInfo(None, bool(packet.is_keyframe), packet.size)
    return PacketInfo(float(packet.pts * time_base) - start, bool(packet.is_keyframe), packet.size)


class _FrameSampler:
    """Decodes the frames a sample plan asks for and nothing else: from the keyframe before
    each target up to the first frame shown at or after it, skipping frames no other frame
    refers to where the codec allows; a target in the GOP the decoder is already in continues
    from where it is. Counts every packet fed, against ``limits.max_decoded_frames``."""

    def __init__(
        self,
        stream: av.video.stream.VideoStream,
        packets: list[av.packet.Packet[av.video.stream.VideoStream]],
        start: float,
        limits: VideoLimits,
    ) -> None:
        self._stream = stream
        self._context = stream.codec_context
        self._time_base = stream.time_base
        self._context.thread_count = 1
        self._context.skip_frame = "NONREF"
        self._packets = packets
        self._start = start
        self._limits = limits
        self._run_start: int | None = None  # keyframe packet the decoder started from
        self._cursor = 0  # next packet to feed
        self._ready: list[av.video.frame.VideoFrame] = []  # decoded, not yet passed
        self._drained = False  # the decoder was drained and must be reset before more input
        self.fed = 0

    def seconds_of(self, frame: av.video.frame.VideoFrame) -> float:
        # Decoded frames carry their packet's pts, in the stream's time base.
        if frame.pts is None or self._time_base is None:
            return -1.0
        return float(frame.pts * self._time_base) - self._start

    def _feed(self, packet: av.packet.Packet[av.video.stream.VideoStream] | None) -> None:
        if packet is not None:
            self.fed += 1
            if self.fed > self._limits.max_decoded_frames:
                raise ImageRejected(
                    GuardReason.DECOMPRESSION_BOMB,
                    f"sampling would decode more than {self._limits.max_decoded_frames} frames",
                )
        self._ready += self._context.decode(packet)

    def frame_at(self, target: SampleTarget) -> av.video.frame.VideoFrame | None:
        """The first frame shown at or after ``target.seconds`` (with its keyframe), or None
        when the stream ends first."""
        if self._run_start != target.start or self._cursor <= target.start or self._drained:
            self._context.flush_buffers()
            self._ready = []
            self._run_start, self._cursor, self._drained = target.start, target.start, False
        if target.keyframe and self._cursor == target.start:
            # A keyframe decodes alone: drain it out at once instead of feeding the frames
            # after it until the decoder's reordering delay lets it go.
            self._feed(self._packets[self._cursor])
            self._cursor += 1
            self._feed(None)
            self._drained = True
        slack = 0.5 * float(self._stream.time_base or 0)  # rounding of the planned time
        while True:
            self._ready.sort(key=self.seconds_of)
            while self._ready:
                frame = self._ready.pop(0)
                if self.seconds_of(frame) >= target.seconds - slack:
                    return frame
            if self._drained:
                return None
            if self._cursor >= len(self._packets):
                self._feed(None)  # drain what the decoder holds back for reordering
                self._drained = True
                continue
            self._feed(self._packets[self._cursor])
            self._cursor += 1


def sample_frames(
    container: av.container.InputContainer,
    facts: VideoFacts,
    video: StreamFacts,
    limits: VideoLimits,
    draft_size: int,
    full_size_rgb: bool = False,
    work: SamplingWork | None = None,
) -> Iterator[DecodedSample]:
    """The sampled frames of an opened, guarded video (:func:`open_video`), in time order:
    about one per ``limits.sample_interval_seconds`` plus keyframes (scene changes; see
    :func:`pipeline.core.video.sample_plan`), upright, reduced for hashing. Raises
    :class:`ImageRejected` when the stream is longer or costlier than the limits admit, or
    undecodable. ``work``, when given, is updated with what the decoder was fed."""
    stream = container.streams.video[0]
    start = (
        float(stream.start_time * stream.time_base)
        if stream.start_time and stream.time_base
        else 0.0
    )
    packets = _packets(container, stream, limits)
    plan = sample_plan(
        tuple(_packet_info(packet, start) for packet in packets),
        declared_duration(facts, video),
        limits.sample_interval_seconds,
    )
    sampler = _FrameSampler(stream, packets, start, limits)
    work = work if work is not None else SamplingWork()
    work.packets = len(packets)
    last = -1.0
    for target in plan:
        frame = sampler.frame_at(target)
        work.decoded_frames = sampler.fed
        if frame is None:
            continue
        seconds = sampler.seconds_of(frame)
        if seconds <= last:
            continue  # two targets landed on one frame
        last = seconds
        if frame.width * frame.height > limits.max_pixels:
            raise ImageRejected(
                GuardReason.TOO_MANY_PIXELS,
                f"a {frame.width}x{frame.height} frame exceeds {limits.max_pixels} pixels",
            )
        if min(frame.width, frame.height) < MIN_FRAME_SIDE:
            continue  # a damaged stream's sliver: nothing a hash could describe
        rotation = int(getattr(frame, "rotation", 0) or 0)
        turned = rotation % 180 != 0
        full = (frame.height, frame.width) if turned else (frame.width, frame.height)
        width, height = reduced_size(frame.width, frame.height, draft_size)
        gray = frame.reformat(width=width, height=height, format="gray", interpolation="AREA")
        rgb = Image.fromarray(frame.to_ndarray(format="rgb24")) if full_size_rgb else None
        yield DecodedSample(
            seconds=seconds,
            keyframe=bool(frame.key_frame),
            gray=_upright(Image.fromarray(gray.to_ndarray()), rotation),
            rgb=None if rgb is None else _upright(rgb, rotation),
            cut=target.cut,
            width=full[0],
            height=full[1],
        )


def vpdq_features(
    container: av.container.InputContainer,
    video: StreamFacts,
    limits: VideoLimits,
    seconds_per_hash: float = 1.0,
) -> tuple[VpdqFeature, ...]:
    """The vPDQ hash of an opened, guarded video, computed as ThreatExchange's ``vpdq`` does:
    every frame decoded in order, every :func:`vpdq_frame_step`-th one (counting from 0)
    converted to full-size RGB (FFmpeg's area scaler, as vpdq's) and hashed with PDQ. Decodes
    the whole stream, so it is for making list entries and checking compatibility; screening
    samples frames instead (:func:`sample_frames`). Raises :class:`ImageRejected` past
    ``limits.max_decoded_frames``, and when the header gives no frame rate (vPDQ's frame
    times are frame numbers over it)."""
    if not video.frame_rate > 0:
        raise ImageRejected(GuardReason.UNDECODABLE, "no frame rate in the header for vPDQ")
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    step = vpdq_frame_step(video.frame_rate, seconds_per_hash)
    features: list[VpdqFeature] = []
    for number, frame in enumerate(container.decode(stream)):
        if number >= limits.max_decoded_frames:
            raise ImageRejected(
                GuardReason.DECOMPRESSION_BOMB,
                f"vPDQ would decode more than {limits.max_decoded_frames} frames",
            )
        if number % step:
            continue
        rgb = np.asarray(
            frame.reformat(format="rgb24", interpolation="AREA").to_ndarray(), np.uint8
        )
        pdq, quality = full_frame_pdq(rgb)
        features.append(VpdqFeature(number, number / video.frame_rate, pdq, quality))
    return tuple(features)


def hash_video(
    data: bytes,
    limits: VideoLimits,
    algorithms: tuple[Algorithm, ...],
    draft_size: int = 128,
    with_vpdq: bool = False,
) -> VideoHashes:
    """Guard, sample and hash one video upload: exact digests of ``data`` (those of
    ``algorithms``), the perceptual ``algorithms`` of each sampled frame (every view:
    whole frame and content regions, every orientation), and the vPDQ hash when
    ``with_vpdq`` (a second, full decode). Raises :class:`ImageRejected`; nothing else escapes
    from FFmpeg."""
    container, facts, video = open_video(data, limits)
    try:
        frames = []
        work = SamplingWork()
        for sample in sample_frames(container, facts, video, limits, draft_size, work=work):
            decoded = DecodedImage(
                image=sample.gray,
                format=facts.format,
                width=sample.width,
                height=sample.height,
                frames=1,
            )
            views = upload_views(decoded, algorithms)
            frames.append(FrameHashes(sample.seconds, sample.keyframe, views, cut=sample.cut))
        features: tuple[VpdqFeature, ...] = ()
        if with_vpdq:
            container.seek(0)
            features = vpdq_features(container, video, limits)
    except ImageRejected:
        raise
    except MemoryError:
        raise ImageRejected(
            GuardReason.MEMORY_LIMIT, "decoding exceeded the memory limit"
        ) from None
    except (av.error.FFmpegError, ValueError) as exc:
        raise ImageRejected(GuardReason.UNDECODABLE, f"corrupt {facts.format}: {exc}") from None
    finally:
        container.close()
    return VideoHashes(
        format=facts.format,
        width=video.width,
        height=video.height,
        duration_seconds=declared_duration(facts, video),
        frame_rate=video.frame_rate,
        hashes=exact_hashes(data, algorithms),
        frames=tuple(frames),
        vpdq=features,
        decoded_frames=work.decoded_frames,
    )
