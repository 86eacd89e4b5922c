"""Deterministic synthetic images and their near-copies, encoded in memory.

Every image is a pure function of its seed, so a demo hash list computed from seeds is stable
across machines (the pinned values are checked by the tests).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance


def synthetic_image(seed: int, width: int = 640, height: int = 480) -> Image.Image:
    """An RGB picture made from a smooth random colour field plus a few random shapes."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 7))):
        x0, x1 = sorted(int(v) for v in rng.integers(0, width, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, height, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1 + 8, y1 + 8), fill=colour)
        else:
            draw.rectangle((x0, y0, x1 + 8, y1 + 8), fill=colour)
    grain = rng.normal(0, 6, size=(height, width, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float64) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def encode(image: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    """Encode in memory (never on disk)."""
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, format=fmt, quality=quality)
    else:
        image.save(buffer, format=fmt)
    return buffer.getvalue()


def near_copies(image: Image.Image) -> dict[str, bytes]:
    """The copies that circulate: re-encoded harder, resized down, and brightened."""
    width, height = image.size
    return {
        "reencoded": encode(image, quality=55),
        "resized": encode(image.resize((width * 3 // 5, height * 3 // 5))),
        "brightened": encode(ImageEnhance.Brightness(image).enhance(1.12)),
    }
