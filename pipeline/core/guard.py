"""Guarded decoding of untrusted image bytes.

Owns the refusal rules: every way an upload can be unfit to hash ends as an
:class:`ImageRejected` with a bounded :class:`GuardReason` (safe for metric labels and dead
letters), never as a crash, a hang or unbounded memory. Checks run cheapest first: byte cap,
then the container header (format allowlist, declared pixel count, frame count), then what the
decode will produce (bytes with bit depth included, whether the file holds the data its header
declares, compression ratio), and only then the decode, which for JPEG happens at a reduced DCT
scale (``draft``), so memory and time are bounded by the header checks before any pixel is
produced.

HEIF (HEIC) and AVIF, the phone formats, are recognised by their ``ftyp`` brands; their
libraries parse the whole container on open, so their declared sizes are read here first
(``ispe`` boxes) and a cut file is told by its boxes and item locations (``iloc``).

When a decoder gives up, the leading bytes name the format the upload claims to be: a format
off the allowlist is ``format_not_allowed``; an allowed one whose own header declares more
bytes than arrived is ``truncated``; anything else is ``undecodable``.

Must not: write bytes anywhere, log, or read settings (limits arrive as :class:`GuardLimits`).
"""

from __future__ import annotations

import enum
import io
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pillow_heif
from PIL import AvifImagePlugin, Image, ImageMode, UnidentifiedImageError

from pipeline.core.containers import (
    EBML_MAGIC,
    iso_boxes,
    iso_child,
    iso_cut_short,
    iso_media_format,
    matroska_format,
    u32be,
)
from pipeline.errors import InputRejected

if TYPE_CHECKING:  # the video guard imports this module
    from pipeline.core.videolimits import VideoLimits

# HEIF (HEIC from phones) opens through pillow-heif's Pillow plugin, AVIF through Pillow's own.
# Both decode on one thread: the hashing pool runs one process per core, so a decoder's own
# threads would only contend with the other processes. Thumbnails, depth and auxiliary images
# are never read (only the primary picture is hashed).
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
pillow_heif.options.DECODE_THREADS = 1
AvifImagePlugin.DEFAULT_MAX_THREADS = 1

# Pillow's own decompression-bomb limit is a process-wide default; our caller's limit is
# enforced from the header before Pillow's check can matter, and its warning is made an error
# inside decode() so nothing ever decodes silently past it.

#: The Pillow format names the pipeline knows how to guard and hash.
SUPPORTED_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "HEIF", "AVIF"})

#: Beyond this many decoded pixels per compressed byte a too-large image is called a bomb:
#: real photos compress ~3-20 bytes of pixels per byte, bombs by thousands.
_BOMB_PIXELS_PER_BYTE = 1000

#: Deflate's highest possible compression ratio: one 258-byte match coded in two bits (a
#: one-symbol length code and a one-symbol distance code). A PNG whose image data would need
#: more than this to inflate to the size its header declares cannot hold that image.
_DEFLATE_MAX_RATIO = 1032

#: PNG colour type -> samples per pixel (IHDR, PNG specification section 11.2.2).
_PNG_SAMPLES_PER_PIXEL: dict[int, int] = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}

#: JPEG frame markers whose scans are Huffman-coded (baseline, extended, progressive, lossless).
#: Every 8x8 block costs those at least one bit (its DC difference code in the first scan that
#: covers it). Arithmetic-coded frames can code a flat block in a fraction of a bit, so no
#: lower bound is applied to them.
_JPEG_HUFFMAN_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3})
#: Markers in the SOF range that are not frames: DHT, JPG (reserved), DAC.
_JPEG_NOT_FRAMES = frozenset({0xC4, 0xC8, 0xCC})

#: Bytes a pixel of libwebp's decoding canvas (RGBA or RGBX, whatever the file holds).
_WEBP_CANVAS_BYTES_PER_PIXEL = 4
#: Bytes a pixel counted for a HEIF or AVIF decode: libheif and libavif decode into YUV planes
#: (8 to 16 bits a sample) and convert those to interleaved RGB(A), so a picture costs at least
#: what a 4-byte canvas would whatever mode Pillow reports.
_HEIF_CANVAS_BYTES_PER_PIXEL = 4
#: Formats whose decoder allocates at that rate: their header sizes are checked before the
#: file is opened, since their libraries parse the whole container there.
_CANVAS_BYTES_PER_PIXEL: dict[str, int] = {
    "WEBP": _WEBP_CANVAS_BYTES_PER_PIXEL,
    "HEIF": _HEIF_CANVAS_BYTES_PER_PIXEL,
    "AVIF": _HEIF_CANVAS_BYTES_PER_PIXEL,
}

#: EXIF orientation tag value -> the transpose that makes the image upright.
_ORIENTATION_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112

#: Leading bytes -> format name, used only to name a refusal precisely (format_not_allowed vs
#: truncated vs undecodable), never to parse. Allowed formats are listed too: a corrupt or cut
#: JPEG is not a format problem when JPEG is allowed.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
)
#: Text formats, which may start after whitespace.
_TEXT_SIGNATURES: tuple[tuple[bytes, str], ...] = ((b"<?xml", "XML"), (b"<svg", "SVG"))
#: Shortest prefix of a signature taken as that format (a 3-byte cut of a PNG is a PNG).
_MIN_SIGNATURE_PREFIX = 3


class GuardReason(enum.StrEnum):
    """Why an upload was refused. Values are stable, snake_case and bounded."""

    EMPTY = "empty"
    TOO_LARGE_BYTES = "too_large_bytes"
    FORMAT_NOT_ALLOWED = "format_not_allowed"
    TOO_MANY_PIXELS = "too_many_pixels"
    DECOMPRESSION_BOMB = "decompression_bomb"
    TOO_MANY_FRAMES = "too_many_frames"
    TRUNCATED = "truncated"
    UNDECODABLE = "undecodable"
    MEMORY_LIMIT = "memory_limit"
    # Videos (pipeline/core/video.py), from the container header before any frame is decoded.
    NO_VIDEO_STREAM = "no_video_stream"
    TOO_MANY_STREAMS = "too_many_streams"
    TOO_LONG = "too_long"
    FRAME_RATE_TOO_HIGH = "frame_rate_too_high"
    CODEC_NOT_ALLOWED = "codec_not_allowed"


class ImageRejected(InputRejected):
    """An upload refused by the guard; ``reason`` is a :class:`GuardReason` value."""

    def __init__(self, reason: GuardReason, message: str) -> None:
        super().__init__(message, reason=reason.value)
        self.guard_reason = reason

    def __reduce__(self) -> tuple[type[ImageRejected], tuple[GuardReason, str]]:
        # Crosses process-pool boundaries: rebuild from (reason, message).
        return (type(self), (self.guard_reason, str(self)))


@dataclass(frozen=True, slots=True)
class GuardLimits:
    """Limits applied to one upload. Sizes in bytes and pixels; draft_size in pixels a side.

    Decoded bytes are what the decode Pillow is set up for produces: width x height x bytes
    per pixel, bit depth included (8-bit RGB: 3, 16-bit RGBA PNG: 8, WebP: 4, libwebp's
    canvas); for a JPEG, the grayscale picture of its reduced (draft) decode. The
    ``max_decoded_bytes`` default bounds memory and inflate work whatever the pixel count: it
    admits every 8-bit image within the default pixel cap (64 MP x 4 bytes) and 16-bit PNGs up
    to ~44 MP RGB. The compression ratio (decoded bytes / file bytes) is capped only above
    ``ratio_exempt_decoded_bytes``, because below it a decode costs no more than an ordinary
    16 MP RGBA image whatever the ratio, and ordinary images reach any ratio there: blank or
    sparse screenshots up to 5K RGBA measured 600-900:1 as PNG and over 1000:1 as lossless
    WebP. Above it, screenshots with content measured under 370:1 even at 8K, while a deflate
    bomb sits at ~1030:1, deflate's ceiling.
    """

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 64_000_000
    max_frames: int = 1000
    allowed_formats: frozenset[str] = SUPPORTED_FORMATS
    draft_size: int = 128
    max_decoded_bytes: int = 256 * 1024 * 1024
    max_compression_ratio: float = 400.0
    ratio_exempt_decoded_bytes: int = 64 * 1024 * 1024
    video: VideoLimits | None = None
    """Limits for video uploads (:mod:`pipeline.core.video`); None: videos are refused as
    ``format_not_allowed`` like any format off the allowlist."""

    def __post_init__(self) -> None:
        unknown = set(self.allowed_formats) - SUPPORTED_FORMATS
        if unknown:
            raise InputRejected(
                f"unsupported formats in allowlist: {sorted(unknown)}; "
                f"supported: {sorted(SUPPORTED_FORMATS)}",
                reason="config",
            )


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """A decoded, upright, grayscale image ready for perceptual hashing.

    ``width``/``height`` are the original (pre-reduction, pre-rotation) dimensions;
    ``image`` may be smaller than that when the format allowed a reduced-scale decode.
    """

    image: Image.Image
    format: str
    width: int
    height: int
    frames: int


def _reject(reason: GuardReason, message: str) -> ImageRejected:
    return ImageRejected(reason, message)


def sniff_format(data: bytes) -> str | None:
    """The format ``data`` claims by its leading bytes (Pillow's names where Pillow has one:
    JPEG, PNG, GIF, BMP, WEBP), or None when it claims none we know."""
    if data.startswith(b"RIFF"):
        # RIFF also wraps WAV and AVI; only the form type at bytes 8-11 says WebP.
        return "WEBP" if b"WEBP".startswith(data[8:12]) else "RIFF"
    if data[4:8] == b"ftyp":
        return iso_media_format(data)
    if data.startswith(EBML_MAGIC):
        return matroska_format(data)
    for signature, name in _SIGNATURES:
        if data.startswith(signature) or (
            _MIN_SIGNATURE_PREFIX <= len(data) < len(signature) and signature.startswith(data)
        ):
            return name
    head = data[:256].lstrip()
    for signature, name in _TEXT_SIGNATURES:
        if head.startswith(signature):
            return name
    return None


def _u16be(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "big")


def _u32le(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "little")


def _heif_meta(data: bytes) -> tuple[int, int] | None:
    """Where the children of a HEIF/AVIF file's top-level ``meta`` box lie (a full box: its
    4-byte version and flags come first)."""
    meta = iso_child(data, 0, len(data), b"meta")
    return None if meta is None else (meta[0] + 4, meta[1])


def _heif_declared_sizes(data: bytes) -> list[tuple[int, int]]:
    """Width and height of every image spatial extent (``ispe``) property of a HEIF/AVIF file:
    each coded item's size (a grid picture's and each of its tiles')."""
    meta = _heif_meta(data)
    iprp = None if meta is None else iso_child(data, *meta, b"iprp")
    ipco = None if iprp is None else iso_child(data, *iprp, b"ipco")
    if ipco is None:
        return []
    return [
        (u32be(data, payload + 4), u32be(data, payload + 8))
        for kind, payload, end in iso_boxes(data, *ipco)
        if kind == b"ispe" and end >= payload + 12 and payload + 12 <= len(data)
    ]


def _read_uint(data: bytes, at: int, size: int) -> tuple[int, int]:
    """A big-endian unsigned int of ``size`` bytes (0 to 8) at ``at``, and the offset after it."""
    return int.from_bytes(data[at : at + size], "big"), at + size


def _heif_items_end(data: bytes) -> int | None:
    """The furthest file offset the item locations (``iloc``) of a HEIF/AVIF file point to,
    counting only data stored in the file by offset (construction method 0); None without a
    readable iloc box. ISO/IEC 14496-12 section 8.11.3."""
    meta = _heif_meta(data)
    iloc = None if meta is None else iso_child(data, *meta, b"iloc")
    if iloc is None:
        return None
    position, box_end = iloc
    end = min(box_end, len(data))
    if position + 8 > end:
        return None
    version = data[position]
    offset_size, length_size = data[position + 4] >> 4, data[position + 4] & 0x0F
    base_offset_size = data[position + 5] >> 4
    index_size = data[position + 5] & 0x0F if version in (1, 2) else 0
    count_size = 4 if version == 2 else 2
    items, position = _read_uint(data, position + 6, count_size)
    furthest = 0
    for _ in range(items):
        _, position = _read_uint(data, position, count_size)  # item ID
        method = 0
        if version in (1, 2):
            flags, position = _read_uint(data, position, 2)
            method = flags & 0x0F
        position += 2  # data reference index
        base, position = _read_uint(data, position, base_offset_size)
        extents, position = _read_uint(data, position, 2)
        for _ in range(extents):
            position += index_size
            offset, position = _read_uint(data, position, offset_size)
            length, position = _read_uint(data, position, length_size)
            if method == 0:
                furthest = max(furthest, base + offset + length)
        if position > end:
            return None  # the table itself is cut: the top-level walk says so
    return furthest


def _heif_cut_short(data: bytes) -> bool:
    """Whether a HEIF/AVIF file ends before what its boxes declare: a top-level box running
    past the end, no ``meta`` box at all, or item data located beyond the last byte."""
    if iso_cut_short(data) or _heif_meta(data) is None:
        return True
    items_end = _heif_items_end(data)
    return items_end is not None and items_end > len(data)


def _jpeg_cut_short(data: bytes) -> bool:
    """Whether the JPEG's marker segments run past the end before the first scan's data."""
    position = 2  # after SOI
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return False  # not a marker where one must be: corrupt, not cut
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            position += 2
            continue
        if marker < 0xC0:
            return False  # no such marker: corrupt
        end = position + 2 + _u16be(data, position + 2)
        if marker == 0xDA:  # start of scan: cut short if no entropy-coded data follows
            return end >= len(data)
        position = end
    return True  # the data ended inside the headers


def _png_cut_short(data: bytes) -> bool:
    """Whether the PNG's chunks run past the end before the first image data chunk."""
    position = 8  # after the signature
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        if length >= 1 << 31:
            return False  # the format caps chunk lengths at 2**31 - 1: corrupt
        if data[position + 4 : position + 8] in (b"IDAT", b"IEND"):
            return False  # the headers are all there (or the image data is missing: corrupt)
        position += 12 + length  # length, type, data, CRC
    return True


def _gif_cut_short(data: bytes) -> bool:
    """Whether the GIF's blocks run past the end before the first image's data is complete."""
    if len(data) < 13:
        return True
    flags = data[10]
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while position < len(data):
        block = data[position]
        if block == 0x21:  # extension: label, then sub-blocks
            position += 2
        elif block == 0x2C:  # image descriptor, optional local table, LZW code size
            if position + 10 > len(data):
                return True
            local = data[position + 9]
            position += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1
        elif block == 0x3B:  # trailer before any image
            return False
        else:
            return False  # corrupt
        while position < len(data) and data[position]:  # sub-blocks until a 0 length
            position += data[position] + 1
        if position >= len(data):
            return True
        position += 1
        if block == 0x2C:
            return False  # a whole first image is present
    return True


def _cut_short(fmt: str, data: bytes) -> bool:
    """Whether ``data`` ends before the structure its own header declares (format ``fmt``):
    the difference between ``truncated`` and ``undecodable`` when a decoder gives up."""
    if fmt == "JPEG":
        return _jpeg_cut_short(data)
    if fmt == "PNG":
        return _png_cut_short(data)
    if fmt == "GIF":
        return _gif_cut_short(data)
    if fmt == "BMP":
        return len(data) < 26 or _u32le(data, 2) > len(data)  # header's declared file size
    if fmt == "WEBP":
        return len(data) < 12 or _u32le(data, 4) + 8 > len(data)  # RIFF's declared size
    if fmt in ("HEIF", "AVIF"):
        return _heif_cut_short(data)
    return False


def _refusal(data: bytes, limits: GuardLimits, problem: str) -> ImageRejected:
    """The precise refusal for bytes a decoder could not handle: a format that is not allowed,
    a file cut short, or else undecodable."""
    fmt = sniff_format(data)
    if fmt is None:
        return _reject(GuardReason.UNDECODABLE, problem)
    if fmt not in limits.allowed_formats:
        return _reject(
            GuardReason.FORMAT_NOT_ALLOWED,
            f"{fmt} is not on the allowlist {sorted(limits.allowed_formats)}",
        )
    if _cut_short(fmt, data):
        return _reject(GuardReason.TRUNCATED, f"{fmt} data is truncated")
    return _reject(GuardReason.UNDECODABLE, f"corrupt {fmt}: {problem}")


def _open(data: bytes, limits: GuardLimits) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=sorted(limits.allowed_formats))
    except UnidentifiedImageError:
        raise _refusal(data, limits, "not a recognisable image") from None


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(type, offset of the chunk's data, declared length) of each chunk whose head is present.
    Stops at a length the format forbids; lengths are as declared, not clipped to the data."""
    position = 8  # after the signature
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        if length >= 1 << 31:
            return
        yield data[position + 4 : position + 8], position + 8, length
        position += 12 + length


def _png_bits_per_pixel(data: bytes) -> int | None:
    """Bits per pixel the PNG's IHDR declares (samples x bit depth), or None without one."""
    for kind, start, length in _png_chunks(data):
        if kind == b"IHDR" and length >= 13 and start + 10 <= len(data):
            depth, colour_type = data[start + 8], data[start + 9]
            return _PNG_SAMPLES_PER_PIXEL.get(colour_type, 4) * depth
    return None


def _webp_canvas_size(data: bytes) -> tuple[int, int] | None:
    """Width and height a WebP's first chunk declares (lossy VP8, lossless VP8L or extended
    VP8X canvas), read the way Pillow reads them; None when the header is not all there."""
    kind = data[12:16]
    if kind == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(
            data[28:30], "little"
        ) & 0x3FFF
    if kind == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if kind == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = _u32le(data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _decoded_bytes_per_pixel(image: Image.Image, fmt: str, data: bytes) -> int:
    """Bytes per pixel the decode produces: the bands of the mode Pillow decodes into (for a
    JPEG, after draft), at the larger of Pillow's sample size and the file's. Pillow keeps a
    16-bit RGBA PNG as 8-bit RGBA, but its decoder still inflates and unpacks 8 bytes for every
    pixel; libwebp decodes every WebP, alpha or not, into a 4-byte RGBA/RGBX canvas."""
    mode = ImageMode.getmode(image.mode)
    pillow_bytes = len(mode.bands) * int(mode.typestr[2:])
    if fmt in _CANVAS_BYTES_PER_PIXEL:
        return max(pillow_bytes, _CANVAS_BYTES_PER_PIXEL[fmt])
    if fmt == "PNG":
        bits = _png_bits_per_pixel(data)
        if bits is not None:
            return max(pillow_bytes, _ceil_div(bits, 8))
    return pillow_bytes


def _png_image_data_shortfall(data: bytes, width: int, height: int) -> tuple[int, int] | None:
    """(bytes needed, bytes present) when the PNG's image data is too short to inflate to the
    pixels its header declares, even at deflate's best ratio; None when it could be enough.

    A zlib stream that ends early is not an error to Pillow: the rows it never reached stay
    zero and the image decodes without complaint, so this has to be checked before decoding.
    """
    bits = _png_bits_per_pixel(data)
    if bits is None:
        return None
    present = sum(
        max(0, min(length, len(data) - start))
        for kind, start, length in _png_chunks(data)
        if kind == b"IDAT"
    )
    needed = width * height * bits // 8 // _DEFLATE_MAX_RATIO
    return (needed, present) if present < needed else None


def _jpeg_minimum_scan_bytes(frame: bytes) -> int | None:
    """The fewest bytes of Huffman-coded scan data that can hold the frame (SOF segment
    payload) ``frame`` declares: one bit per 8x8 block of every component. None if malformed."""
    if len(frame) < 6:
        return None
    height, width, components = _u16be(frame, 1), _u16be(frame, 3), frame[5]
    factors = [(byte >> 4, byte & 0x0F) for byte in frame[7 : 6 + 3 * components : 3]]
    if not factors or len(factors) < components or any(0 in pair for pair in factors):
        return None
    h_max = max(h for h, _ in factors)
    v_max = max(v for _, v in factors)
    blocks = sum(
        _ceil_div(_ceil_div(width * h, h_max), 8) * _ceil_div(_ceil_div(height * v, v_max), 8)
        for h, v in factors
    )
    return _ceil_div(blocks, 8)


def _jpeg_scan_end(data: bytes, start: int, enough: int) -> int:
    """Where the entropy-coded data starting at ``start`` ends (the next marker that is not a
    restart marker or a stuffed 0xFF00), or any position ``enough`` bytes or more past
    ``start`` once that many are known to be there."""
    position = start
    while position - start < enough:
        position = data.find(b"\xff", position)
        if position < 0 or position + 1 >= len(data):
            return len(data)
        following = data[position + 1]
        if following != 0x00 and not 0xD0 <= following <= 0xD7:
            return position
        position += 2
    return position


def _jpeg_scan_data_shortfall(data: bytes) -> tuple[int, int] | None:
    """(bytes needed, bytes present) when the first picture's scan data is too short for the
    blocks its frame header declares; None when it could be enough (or the frame is
    arithmetic-coded or malformed, which is left to the decoder).

    libjpeg, on reaching a marker before the last block, fills the rest of the picture with
    mid-grey and only warns; Pillow silences the warning, so a 16x16 JPEG whose header says
    8000x8000 would decode "successfully". This refuses such files before decoding.
    """
    needed: int | None = None
    present = 0
    position = 2  # after SOI
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None  # corrupt, not short: the decoder names it
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xD9:  # EOI: the first picture ends here
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            position += 2
            continue
        if marker < 0xC0:
            return None
        segment_end = position + 2 + _u16be(data, position + 2)
        if 0xC0 <= marker <= 0xCF and marker not in _JPEG_NOT_FRAMES and needed is None:
            if marker not in _JPEG_HUFFMAN_FRAMES:
                return None
            needed = _jpeg_minimum_scan_bytes(data[position + 4 : segment_end])
            if needed is None:
                return None
        position = segment_end
        if marker == 0xDA:  # start of scan: its entropy-coded data follows the header
            if needed is None:
                return None  # a scan before any frame: corrupt
            end = _jpeg_scan_end(data, min(position, len(data)), needed - present)
            present += max(0, end - position)
            if present >= needed:
                return None
            position = end
    if needed is None or present >= needed:
        return None
    return needed, present


def _check_pixels(width: int, height: int, data: bytes, limits: GuardLimits) -> None:
    """Refuse declared dimensions that are invalid or over the pixel cap."""
    if width <= 0 or height <= 0:
        raise _reject(GuardReason.UNDECODABLE, f"invalid dimensions {width}x{height}")
    pixels = width * height
    if pixels > limits.max_pixels:
        if pixels > _BOMB_PIXELS_PER_BYTE * len(data):
            raise _reject(
                GuardReason.DECOMPRESSION_BOMB,
                f"{width}x{height} pixels declared by {len(data)} bytes",
            )
        raise _reject(
            GuardReason.TOO_MANY_PIXELS, f"{width}x{height} exceeds {limits.max_pixels} pixels"
        )


def _check_decoded_bytes(size: tuple[int, int], bytes_per_pixel: int, limits: GuardLimits) -> int:
    """Refuse a decode of ``size`` pixels at ``bytes_per_pixel`` over the decoded-bytes cap;
    return its decoded bytes."""
    width, height = size
    decoded_bytes = width * height * bytes_per_pixel
    if decoded_bytes > limits.max_decoded_bytes:
        raise _reject(
            GuardReason.DECOMPRESSION_BOMB,
            f"{width}x{height} at {bytes_per_pixel} bytes a pixel decodes to {decoded_bytes} "
            f"bytes, over the cap of {limits.max_decoded_bytes}",
        )
    return decoded_bytes


def _check_ratio(decoded_bytes: int, data: bytes, limits: GuardLimits) -> None:
    """Refuse a compression ratio over the cap, for decodes big enough for it to matter."""
    ratio = decoded_bytes / len(data)
    if decoded_bytes > limits.ratio_exempt_decoded_bytes and ratio > limits.max_compression_ratio:
        raise _reject(
            GuardReason.DECOMPRESSION_BOMB,
            f"{len(data)} bytes decode to {decoded_bytes} ({ratio:.0f}:1, over "
            f"{limits.max_compression_ratio:.0f}:1)",
        )


def _check_before_open(data: bytes, limits: GuardLimits) -> None:
    """The size caps for formats whose library does its work while Pillow opens the file, so
    they cannot wait for the checks after it: WebP (libwebp allocates its canvas there), HEIF
    and AVIF (libheif and libavif parse the whole container; every coded item's declared size
    is checked, a grid picture's and each tile's)."""
    fmt = sniff_format(data)
    if fmt not in _CANVAS_BYTES_PER_PIXEL or fmt not in limits.allowed_formats:
        return
    if fmt == "WEBP":
        webp = _webp_canvas_size(data)
        declared = [] if webp is None else [webp]
    else:
        declared = _heif_declared_sizes(data)
    for size in declared:
        _check_pixels(*size, data, limits)
        decoded_bytes = _check_decoded_bytes(size, _CANVAS_BYTES_PER_PIXEL[fmt], limits)
        _check_ratio(decoded_bytes, data, limits)


def _check_header(image: Image.Image, data: bytes, limits: GuardLimits) -> int:
    """Apply the pixel and frame caps from the header; return the frame count."""
    width, height = image.size
    _check_pixels(width, height, data, limits)
    # n_frames walks frame headers (bounded by the byte cap); single-frame formats lack it.
    frames = int(getattr(image, "n_frames", 1))
    if frames > limits.max_frames:
        raise _reject(GuardReason.TOO_MANY_FRAMES, f"{frames} frames exceed {limits.max_frames}")
    if frames > 1:
        image.seek(0)
    return frames


def _check_decoded_size(
    image: Image.Image, fmt: str, declared: tuple[int, int], data: bytes, limits: GuardLimits
) -> None:
    """Apply the caps on what the decode will produce, once it is set up (a JPEG's draft
    scale chosen) but before any pixel is decoded: the decoded-bytes cap (bit depth included);
    whether the file holds enough data for the ``declared`` size (``truncated`` if not); the
    compression ratio. The ratio comes after the data check, so a file that lies about its
    size is called truncated rather than a bomb."""
    bytes_per_pixel = _decoded_bytes_per_pixel(image, fmt, data)
    decoded_bytes = _check_decoded_bytes(image.size, bytes_per_pixel, limits)
    shortfall = None
    if fmt == "JPEG":
        shortfall = _jpeg_scan_data_shortfall(data)
    elif fmt == "PNG":
        shortfall = _png_image_data_shortfall(data, *declared)
    if shortfall is not None:
        needed, present = shortfall
        width, height = declared
        raise _reject(
            GuardReason.TRUNCATED,
            f"{fmt} header declares {width}x{height} but the file holds {present} bytes of "
            f"image data; any image that size needs at least {needed}",
        )
    _check_ratio(decoded_bytes, data, limits)


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) else 1


def decode(data: bytes, limits: GuardLimits) -> DecodedImage:
    """Check ``data`` against ``limits`` and decode it to an upright grayscale image.

    JPEGs decode at the smallest DCT scale (1/1..1/8) that keeps both sides >= draft_size,
    which is what makes large uploads cheap. Other formats decode at full size, so their cost
    is bounded by the decoded-bytes and compression-ratio caps alone: Pillow's ``draft`` only
    reduces JPEG, and PNG has no reduced decode to offer (each row is filtered against the
    full-width row above it, so every byte must be inflated whatever is kept; Adam7's first
    pass is a 1/8-scale preview, but Pillow decodes all passes and only interlaced files have
    one). A reduced decode would also break the exact agreement with plain imagehash that
    these formats keep. GIF and other animations are hashed by their first frame. HEIF and
    AVIF decode at full size too; libheif applies HEIF's rotation and mirroring itself, AVIF's
    arrive as an EXIF orientation, applied here as for a JPEG.

    Raises :class:`ImageRejected` with the matching :class:`GuardReason`; nothing else.
    """
    if not data:
        raise _reject(GuardReason.EMPTY, "upload is empty")
    if len(data) > limits.max_bytes:
        raise _reject(GuardReason.TOO_LARGE_BYTES, f"{len(data)} bytes exceed {limits.max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            _check_before_open(data, limits)
            image = _open(data, limits)
            # A multi-picture JPEG (MPO: stereo and some phone cameras) opens through the JPEG
            # plugin; its first picture is a plain JPEG, decoded and named like one.
            fmt = "JPEG" if image.format == "MPO" else str(image.format)
            width, height = image.size
            frames = _check_header(image, data, limits)
            if fmt == "JPEG":
                # Only sets the decoder's scale and mode; no pixel is decoded until load().
                image.draft("L", (limits.draft_size, limits.draft_size))
            _check_decoded_size(image, fmt, (width, height), data, limits)
            # Not before the size checks: a PNG without an eXIf chunk ahead of its image data
            # is decoded in full by getexif(), to look for one after it.
            orientation = _orientation(image)
            image.load()
            gray = image if image.mode == "L" else image.convert("L")
            transpose = _ORIENTATION_TRANSPOSE.get(orientation)
            if transpose is not None:
                gray = gray.transpose(transpose)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _reject(GuardReason.DECOMPRESSION_BOMB, str(exc)) from None
    except MemoryError:
        raise _reject(GuardReason.MEMORY_LIMIT, "decoding exceeded the memory limit") from None
    except zlib.error as exc:
        raise _refusal(data, limits, f"corrupt compressed data: {exc}") from None
    except OSError as exc:
        if "truncated" in str(exc).lower():
            raise _reject(GuardReason.TRUNCATED, "image data is truncated") from None
        raise _refusal(data, limits, f"decode failed: {exc}") from None
    except ValueError as exc:
        # Pillow raises ValueError for oversized zlib text/ICC chunks ("Decompressed data too
        # large") and for inconsistent headers.
        if "too large" in str(exc).lower():
            raise _reject(GuardReason.DECOMPRESSION_BOMB, str(exc)) from None
        raise _refusal(data, limits, f"decode failed: {exc}") from None
    except Exception as exc:
        raise _refusal(data, limits, f"decode failed: {type(exc).__name__}") from None
    return DecodedImage(image=gray, format=fmt, width=width, height=height, frames=frames)
