"""Benign test videos made in memory with PyAV: moving synthetic patterns and slideshows of
scikit-image's bundled photos, a few seconds at small sizes; and hostile headers made from
them by patching a few fields. Nothing here is written to disk.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Iterator

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

from tests.imagegen import sample_photo

Frame = npt.NDArray[np.uint8]

#: Container format name for PyAV (FFmpeg's muxer) by the pipeline's format name.
MUXERS = {"MP4": "mp4", "MOV": "mov", "M4V": "ipod", "3GP": "3gp", "WEBM": "webm"}
MUXERS["MKV"] = "matroska"


def encode_clip(
    frames: Iterable[Frame],
    *,
    fps: int = 25,
    codec: str = "libx264",
    container: str = "MP4",
    gop: int | None = None,
    options: dict[str, str] | None = None,
    audio: bool = False,
    timestamps: Iterable[int] | None = None,
) -> bytes:
    """The RGB ``frames`` (height x width x 3, even sides) encoded as a clip in memory; frame
    ``i`` shows at ``timestamps[i]`` frame periods (``i`` by default)."""
    times = iter(timestamps) if timestamps is not None else None
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=MUXERS[container]) as output:
        stream = None
        for index, pixels in enumerate(frames):
            if stream is None:
                stream = output.add_stream(codec, rate=fps)
                stream.height, stream.width = pixels.shape[:2]
                stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
                stream.codec_context.gop_size = gop if gop is not None else 2 * fps
                stream.options = {"preset": "ultrafast"} if codec == "libx264" else {}
                stream.options.update(options or {})
                if audio:
                    sound = output.add_stream("aac", rate=8000)
                    sound.layout = "mono"
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index if times is None else next(times)
            output.mux(stream.encode(frame))
        assert stream is not None, "no frames"
        output.mux(stream.encode(None))
    return buffer.getvalue()


def moving_pattern(
    seed: int, seconds: float, fps: int = 25, size: tuple[int, int] = (160, 120)
) -> Iterator[Frame]:
    """A textured pattern drifting across the frame, the texture seeded: a clip of its own."""
    rng = np.random.default_rng(seed)
    width, height = size
    texture = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(texture).resize((width * 2, height * 2), Image.BILINEAR))
    for index in range(round(seconds * fps)):
        shift = index * 2
        yield np.ascontiguousarray(big[shift % height : shift % height + height, :width])


def slideshow(
    photos: Iterable[str],
    seconds_each: float = 2.0,
    fps: int = 25,
    size: tuple[int, int] = (320, 240),
) -> Iterator[Frame]:
    """scikit-image photos one after another, each slowly zooming in (a video, not stills)."""
    for name in photos:
        photo = sample_photo(name)
        count = round(seconds_each * fps)
        for index in range(count):
            margin = index / count * 0.1
            box = (
                photo.width * margin / 2,
                photo.height * margin / 2,
                photo.width * (1 - margin / 2),
                photo.height * (1 - margin / 2),
            )
            yield np.asarray(photo.resize(size, Image.BILINEAR, box=box))


def iso_box(data: bytes, path: tuple[bytes, ...]) -> int:
    """Offset of the payload of the box at ``path`` (e.g. moov, mvhd) in an ISO media file."""
    position, end = 0, len(data)
    for kind in path:
        while position + 8 <= end:
            size = int.from_bytes(data[position : position + 4], "big")
            if data[position + 4 : position + 8] == kind:
                position, end = position + 8, position + size
                break
            position += size
        else:
            raise KeyError(kind)
    return position


def _ebml_id(element: int) -> bytes:
    return element.to_bytes((element.bit_length() + 7) // 8, "big")


def ebml(element: int, payload: bytes) -> bytes:
    """One EBML element: its ID, an 8-byte size, the payload."""
    return _ebml_id(element) + (0x01 << 56 | len(payload)).to_bytes(8, "big") + payload


def ebml_uint(element: int, value: int) -> bytes:
    return ebml(element, value.to_bytes(8, "big"))


def matroska_header(
    *,
    width: int = 160,
    height: int = 120,
    tracks: int = 1,
    duration_seconds: float = 2.0,
    codec: str = "V_VP9",
    doctype: bytes = b"webm",
    fps: int = 25,
) -> bytes:
    """A Matroska/WebM file that is all header: EBML header, segment info with its duration,
    ``tracks`` video tracks of the given size and codec, and one block of no real content.
    What a hostile upload declares, made in microseconds (the guard must refuse it before
    decoding anything)."""
    header = ebml(0x1A45DFA3, ebml(0x4282, doctype) + ebml_uint(0x4287, 4) + ebml_uint(0x4285, 2))
    info = ebml(
        0x1549A966,
        ebml_uint(0x2AD7B1, 1_000_000)  # TimestampScale: milliseconds
        + ebml(0x4489, struct.pack(">d", duration_seconds * 1000)),
    )
    entries = b"".join(
        ebml(
            0xAE,
            ebml_uint(0xD7, number)  # TrackNumber
            + ebml_uint(0x73C5, number)  # TrackUID
            + ebml_uint(0x83, 1)  # TrackType: video
            + ebml(0x86, codec.encode())  # CodecID
            + ebml_uint(0x23E383, 1_000_000_000 // fps)  # DefaultDuration (ns a frame)
            + ebml(0xE0, ebml_uint(0xB0, width) + ebml_uint(0xBA, height)),  # Video
        )
        for number in range(1, tracks + 1)
    )
    # One cluster with one frame's block (track 1, time 0, a keyframe) of no real content.
    block = ebml(0xA3, b"\x81\x00\x00\x80" + bytes(64))
    cluster = ebml(0x1F43B675, ebml_uint(0xE7, 0) + block)
    segment = ebml(0x18538067, info + ebml(0x1654AE6B, entries) + cluster)
    return header + segment
