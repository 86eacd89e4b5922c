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
from fractions import Fraction

import av
import av.container
import av.error
import av.stream

from pipeline.core.guard import GuardReason, ImageRejected
from pipeline.core.video import (
    StreamFacts,
    VideoFacts,
    VideoLimits,
    check_container,
    check_facts,
)

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
