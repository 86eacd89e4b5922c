"""Benign test images made in memory, and hostile byte strings that are not images at all.

Photographic content comes from scikit-image's bundled sample photos; everything else is
generated. Nothing here is written to disk.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from pipeline.demo.images import encode, synthetic_image

__all__ = [
    "encode",
    "gif_with_frames",
    "noise_jpeg",
    "noise_jpegs",
    "png_declaring",
    "sample_photo",
    "synthetic_image",
]


def sample_photo(name: str = "astronaut") -> Image.Image:
    """One of scikit-image's bundled sample photos as an RGB image."""
    from skimage import data

    pixels = np.asarray(getattr(data, name)())
    if pixels.ndim == 2:
        return Image.fromarray(pixels, "L").convert("RGB")
    return Image.fromarray(pixels[..., :3], "RGB")


def noise_jpeg(seed: int, width: int, height: int, quality: int = 88) -> bytes:
    """A JPEG of RGB noise: it barely compresses (~1 byte per pixel at quality 88), so its
    size follows its pixel count, and it is slow-ish to decode and hash."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    return encode(Image.fromarray(pixels, "RGB"), quality=quality)


def noise_jpegs(count: int) -> list[bytes]:
    """``count`` distinct noise JPEGs of ~200-250 KB."""
    return [noise_jpeg(seed, 560, 420 + seed * 4) for seed in range(count)]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_declaring(width: int, height: int, rows: int = 4) -> bytes:
    """A tiny grayscale PNG declaring width x height but carrying only ``rows`` (0: no IDAT)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = _png_chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1) * rows)) if rows else b""
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + data + _png_chunk(b"IEND", b"")


def gif_with_frames(count: int, size: int = 8) -> bytes:
    """An animated GIF with ``count`` small distinct frames."""
    frames = [Image.new("L", (size, size), color=i % 256) for i in range(count)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=10)
    return buffer.getvalue()
