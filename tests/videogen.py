"""Benign test videos made in memory with PyAV: moving synthetic patterns and slideshows of
scikit-image's bundled photos, a few seconds at small sizes; and hostile headers made from
them by patching a few fields. Nothing here is written to disk.
"""

from __future__ import annotations

import struct

from pipeline.bench.videoclips import MUXERS, encode_clip, moving_pattern, slideshow

__all__ = ["MUXERS", "encode_clip", "iso_box", "matroska_header", "moving_pattern", "slideshow"]


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
