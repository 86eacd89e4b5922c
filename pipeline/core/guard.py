"""Guarded decoding of untrusted image bytes.

Owns the refusal rules: every way an upload can be unfit to hash ends as an
:class:`ImageRejected` with a bounded :class:`GuardReason` (safe for metric labels and dead
letters), never as a crash, a hang or unbounded memory. Checks run cheapest first: byte cap,
then the container header (format allowlist, declared pixel count, frame count), and only then
the decode, which for JPEG happens at a reduced DCT scale (``draft``), so memory and time are
bounded by the header checks before any pixel is produced.

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

#: Leading bytes of formats people upload that are not on any allowlist we ship; used only to
#: name the refusal precisely (format_not_allowed vs undecodable), never to parse them.
_OTHER_SIGNATURES: tuple[bytes, ...] = (
    b"%PDF",
    b"PK\x03\x04",
    b"II*\x00",
    b"MM\x00*",
    b"<?xml",
    b"<svg",
    b"8BPS",
    b"\x00\x00\x01\x00",
    b"GIF8",
    b"BM",
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"RIFF",
)


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


def _identify_other(data: bytes) -> bool:
    head = data[:16].lstrip()
    return any(head.startswith(sig) for sig in _OTHER_SIGNATURES)


def _open(data: bytes, limits: GuardLimits) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=sorted(limits.allowed_formats))
    except UnidentifiedImageError:
        if _identify_other(data):
            raise _reject(
                GuardReason.FORMAT_NOT_ALLOWED,
                f"format not on the allowlist {sorted(limits.allowed_formats)}",
            ) from None
        raise _reject(GuardReason.UNDECODABLE, "not a recognisable image") from None


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
            fmt = str(image.format)
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
        raise _reject(GuardReason.UNDECODABLE, f"corrupt compressed data: {exc}") from None
    except OSError as exc:
        if "truncated" in str(exc).lower():
            raise _reject(GuardReason.TRUNCATED, "image data is truncated") from None
        raise _reject(GuardReason.UNDECODABLE, f"decode failed: {exc}") from None
    except ValueError as exc:
        # Pillow raises ValueError for oversized zlib text/ICC chunks ("Decompressed data too
        # large") and for inconsistent headers.
        if "too large" in str(exc).lower():
            raise _reject(GuardReason.DECOMPRESSION_BOMB, str(exc)) from None
        raise _reject(GuardReason.UNDECODABLE, f"decode failed: {exc}") from None
    except Exception as exc:
        raise _reject(GuardReason.UNDECODABLE, f"decode failed: {type(exc).__name__}") from None
    return DecodedImage(image=gray, format=fmt, width=width, height=height, frames=frames)
