"""Guarded decoding of untrusted image bytes.

Owns the refusal rules: every way an upload can be unfit to hash ends as an
:class:`ImageRejected` with a bounded :class:`GuardReason` (safe for metric labels and dead
letters), never as a crash, a hang or unbounded memory. Checks run cheapest first: byte cap,
then the container header (format allowlist, declared pixel count, frame count), and only then
the decode, which for JPEG happens at a reduced DCT scale (``draft``), so memory and time are
bounded by the header checks before any pixel is produced.

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
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from pipeline.errors import InputRejected

# Pillow's own decompression-bomb limit is a process-wide default; our caller's limit is
# enforced from the header before Pillow's check can matter, and its warning is made an error
# inside decode() so nothing ever decodes silently past it.

#: The Pillow format names the pipeline knows how to guard and hash.
SUPPORTED_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP"})

#: Beyond this many decoded pixels per compressed byte a too-large image is called a bomb:
#: real photos compress ~3-20 bytes of pixels per byte, bombs by thousands.
_BOMB_PIXELS_PER_BYTE = 1000

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
    """Limits applied to one upload. Sizes in bytes and pixels; draft_size in pixels a side."""

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 64_000_000
    max_frames: int = 1000
    allowed_formats: frozenset[str] = SUPPORTED_FORMATS
    draft_size: int = 128

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
        return "ISOBMFF"  # HEIF, AVIF, MP4
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


def _check_header(image: Image.Image, data: bytes, limits: GuardLimits) -> int:
    """Apply the pixel and frame caps from the header; return the frame count."""
    width, height = image.size
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
    # n_frames walks frame headers (bounded by the byte cap); single-frame formats lack it.
    frames = int(getattr(image, "n_frames", 1))
    if frames > limits.max_frames:
        raise _reject(GuardReason.TOO_MANY_FRAMES, f"{frames} frames exceed {limits.max_frames}")
    if frames > 1:
        image.seek(0)
    return frames


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) else 1


def decode(data: bytes, limits: GuardLimits) -> DecodedImage:
    """Check ``data`` against ``limits`` and decode it to an upright grayscale image.

    JPEGs decode at the smallest DCT scale (1/1..1/8) that keeps both sides >= draft_size,
    which is what makes large uploads cheap. Other formats decode at full size (they have no
    reduced-scale decode). GIF and other animations are hashed by their first frame.

    Raises :class:`ImageRejected` with the matching :class:`GuardReason`; nothing else.
    """
    if not data:
        raise _reject(GuardReason.EMPTY, "upload is empty")
    if len(data) > limits.max_bytes:
        raise _reject(GuardReason.TOO_LARGE_BYTES, f"{len(data)} bytes exceed {limits.max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = _open(data, limits)
            # A multi-picture JPEG (MPO: stereo and some phone cameras) opens through the JPEG
            # plugin; its first picture is a plain JPEG, decoded and named like one.
            fmt = "JPEG" if image.format == "MPO" else str(image.format)
            width, height = image.size
            frames = _check_header(image, data, limits)
            orientation = _orientation(image)
            if fmt == "JPEG":
                image.draft("L", (limits.draft_size, limits.draft_size))
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
