"""A smooth picture in a chat bubble whose densest detail is the text bubble beside it: the
detail-only search grows from the text through the picture's smooth edge, so the smooth
picture itself must be a region too (pipeline/core/regions.py, ``_embedded_pictures``)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from pipeline.bench.quality import seed_of, upload_bytes
from pipeline.bench.transforms import chat_screenshot_placed
from pipeline.core.guard import GuardLimits, decode
from pipeline.core.regions import RegionKind, content_regions

#: Ubuntu's "Fossa" wallpaper (Debian package ubuntu-wallpapers / lomiri-wallpapers): dark,
#: smooth, with little detail of its own; one of the quality bench's members.
FOSSA = Path("/usr/share/backgrounds/Fossa_by_Jasper_Roks.jpg")


def _iou(first: tuple[float, ...], second: tuple[float, ...]) -> float:
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    if width <= 0 or height <= 0:
        return 0.0
    overlap = width * height
    areas = [(box[2] - box[0]) * (box[3] - box[1]) for box in (first, second)]
    return overlap / (sum(areas) - overlap)


def test_a_smooth_picture_beside_a_text_bubble_is_a_region_of_its_own() -> None:
    """The quality bench's layout for this picture (its seed there): the text bubble right
    under the picture is the densest detail, and the detail-only search reached from it up
    through the picture (IoU 0.72 with the picture: pHash 30 from the listed one)."""
    with Image.open(FOSSA) as opened:
        picture = opened.convert("RGB")
    picture.thumbnail((1280, 1280))
    seed = seed_of(11, "lomiri-wallpapers-20.04:Fossa_by_Jasper_Roks", "chat_screenshot")
    screenshot, (x, y, width, height) = chat_screenshot_placed(picture, seed)
    decoded = decode(upload_bytes(screenshot), GuardLimits()).image
    scale = decoded.width / screenshot.width
    truth = (x * scale, y * scale, (x + width) * scale, (y + height) * scale)
    embedded = [r for r in content_regions(decoded) if r.kind is RegionKind.EMBEDDED]
    best = max(
        (_iou((r.x, r.y, r.x + r.width, r.y + r.height), truth) for r in embedded), default=0.0
    )
    assert best >= 0.9
