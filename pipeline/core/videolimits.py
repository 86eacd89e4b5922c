"""The limits one video upload is held to (:class:`VideoLimits`: the ``PIPELINE_VIDEO_*``
settings as the guard sees them) and the containers and codecs they may name.

Apart from :mod:`pipeline.core.video` so that the image guard (:mod:`pipeline.core.guard`),
which carries these limits for the hashing job, needs nothing of the video rules.

Must not: read settings or the environment (:mod:`pipeline.config` builds these).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import InputRejected

#: Container formats screened as videos, by the names :func:`sniff_format` gives them.
VIDEO_FORMATS: frozenset[str] = frozenset({"MP4", "MOV", "M4V", "3GP", "WEBM", "MKV"})

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
