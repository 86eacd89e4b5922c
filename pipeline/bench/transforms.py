"""The edits a circulating copy goes through, as pure deterministic PIL -> PIL functions.

Owns the transform vocabulary of ``pipeline bench quality`` (and of anyone who wants the same
edits in a test): re-encoding, resizing, blur, tone changes, watermark, the eight dihedral turns,
a small rotation, uniform borders (pad, letterbox), a synthetic phone-chat screenshot with the
picture inside a message bubble, crops, and meme text bars. Each transform is a
:class:`Transform` whose ``apply(image, seed)`` returns a new image; the same image and seed
always give the same pixels (the seed only picks layout and text where a real copy would vary,
e.g. the chat's messages). Sizes are relative to the picture, except the chat screenshot,
which is a 1080x2340 phone screen whatever the picture's size.

Text is drawn with Pillow's bundled font (``ImageFont.load_default(size)``), so the output does
not depend on the fonts installed on the machine.

Must not: read or write files (JPEG round trips are in memory), hash, match, or use global
random state.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

#: How a transform is applied: the picture and a seed for whatever a real copy would vary.
Apply = Callable[[Image.Image, int], Image.Image]
#: Where a framing transform put the picture: (x, y, width, height) in the output's pixels.
Placement = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Transform:
    """One named edit. ``group`` is what the issue's targets are stated for."""

    name: str
    group: str
    description: str
    apply: Apply


# Groups, as the targets name them.
BENIGN = "benign edits"
ORIENTATION = "mirror/flip/rotate 90/180/270"
BORDER = "pad 20% and letterbox"
SCREENSHOT = "chat screenshot"
CROP5 = "crop 5%"
CROP10 = "crop 10%"
ROTATE4 = "rotate 4 degrees"
MEME = "meme text bars"
IDENTITY = "identity"

#: The phone screen the chat screenshot is drawn on (a common 19.5:9 Android size).
PHONE_SIZE = (1080, 2340)


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size)


def identity(image: Image.Image, seed: int) -> Image.Image:
    """The picture as listed (still re-encoded by whoever uploads it)."""
    return image.copy()


def jpeg(quality: int) -> Apply:
    """An in-memory JPEG round trip at ``quality``."""

    def apply(image: Image.Image, seed: int) -> Image.Image:
        buffer = io.BytesIO()
        _rgb(image).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return decoded.convert("RGB")

    return apply


def scale(factor: float) -> Apply:
    """Resize both sides by ``factor`` (bicubic)."""

    def apply(image: Image.Image, seed: int) -> Image.Image:
        size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        return image.resize(size, Image.Resampling.BICUBIC)

    return apply


def blur(image: Image.Image, seed: int) -> Image.Image:
    """A Gaussian blur of radius 1/300 of the shorter side (2.4 px at 720 p)."""
    return image.filter(ImageFilter.GaussianBlur(max(1.0, min(image.size) / 300)))


def brightness(factor: float) -> Apply:
    """Scale brightness by ``factor`` (1.3 = +30%)."""

    def apply(image: Image.Image, seed: int) -> Image.Image:
        return ImageEnhance.Brightness(_rgb(image)).enhance(factor)

    return apply


def contrast(image: Image.Image, seed: int) -> Image.Image:
    """Contrast x1.5 around the mean grey."""
    return ImageEnhance.Contrast(_rgb(image)).enhance(1.5)


def gray(image: Image.Image, seed: int) -> Image.Image:
    """Greyscale (ITU-R 601 luma, Pillow's ``L``)."""
    return image.convert("L")


def watermark(image: Image.Image, seed: int) -> Image.Image:
    """Half-transparent white text in the bottom-right corner, 6% of the height tall."""
    base = _rgb(image).convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    size = max(8, round(base.height * 0.06))
    font = _font(size)
    text = "© 2024 photos.example"
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    margin = size // 2
    position = (base.width - (right - left) - margin, base.height - (bottom - top) - margin)
    draw.text(position, text, font=font, fill=(255, 255, 255, 128))
    return Image.alpha_composite(base, overlay).convert("RGB")


def transpose(method: Image.Transpose) -> Apply:
    """One of Pillow's exact dihedral turns."""

    def apply(image: Image.Image, seed: int) -> Image.Image:
        return image.transpose(method)

    return apply


def rotate_small(degrees: float) -> Apply:
    """Rotate by ``degrees`` counter-clockwise, same canvas, black corners (a crooked copy)."""

    def apply(image: Image.Image, seed: int) -> Image.Image:
        return _rgb(image).rotate(
            degrees, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=(0, 0, 0)
        )

    return apply


def pad(fraction: float, colour: tuple[int, int, int]) -> Apply:
    """A uniform border on every side, ``fraction`` of the picture's width (left/right) and
    height (top/bottom), so the picture covers 1/(1 + 2*fraction) of each side."""

    def apply(image: Image.Image, seed: int) -> Image.Image:
        border_x = round(image.width * fraction)
        border_y = round(image.height * fraction)
        canvas = Image.new("RGB", (image.width + 2 * border_x, image.height + 2 * border_y), colour)
        canvas.paste(_rgb(image), (border_x, border_y))
        return canvas

    return apply


def letterbox(image: Image.Image, seed: int) -> Image.Image:
    """The picture inside a video frame with black bars, the way video stills circulate.

    Portrait, square and 4:3 pictures (aspect < 1.45) go into a landscape 16:9 frame (bars left
    and right); wider ones go into a vertical 9:16 frame (a phone story: bars above and below).
    Either way the bars are at least ~9% of the frame on each side, never zero as they would be
    for a 16:9 picture in a 16:9 frame.
    """
    if image.width / image.height < 1.45:
        width, height = round(image.height * 16 / 9), image.height
    else:
        width, height = image.width, round(image.width * 16 / 9)
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    canvas.paste(_rgb(image), ((width - image.width) // 2, (height - image.height) // 2))
    return canvas


def crop(fraction: float) -> Apply:
    """Cut ``fraction`` of the width from the left and from the right, and of the height from
    the top and from the bottom."""

    def apply(image: Image.Image, seed: int) -> Image.Image:
        dx = round(image.width * fraction)
        dy = round(image.height * fraction)
        return image.crop((dx, dy, image.width - dx, image.height - dy))

    return apply


_CHAT_TEXT = (
    "ok see you at eight did you get it haha that is so good look at this lol where "
    "was that taken send me more tomorrow maybe yes no wow nice thanks on my way love it "
    "what time call me later sure"
)
_WORDS = tuple(_CHAT_TEXT.split())


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(low, high)))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
          width: int) -> list[str]:  # fmt: skip
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if current and draw.textlength(trial, font=font) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    return [*lines, current] if current else lines


def _text_bubble(draw: ImageDraw.ImageDraw, rng: random.Random, top: int, outgoing: bool) -> int:
    """Draw one text message; return the y just below it."""
    font = _font(40)
    lines = _wrap(draw, _sentence(rng, 2, 14), font, 640)
    line_height = 52
    text_width = max(int(draw.textlength(line, font=font)) for line in lines)
    width = max(text_width, 120) + 2 * 32 + 90  # room for the time stamp
    height = len(lines) * line_height + 2 * 22 + 8
    left = PHONE_SIZE[0] - 24 - width if outgoing else 24
    fill = (220, 248, 198) if outgoing else (255, 255, 255)
    draw.rounded_rectangle((left, top, left + width, top + height), radius=28, fill=fill)
    for index, line in enumerate(lines):
        draw.text((left + 32, top + 22 + index * line_height), line, font=font, fill=(17, 27, 33))
    draw.text(
        (left + width - 100, top + height - 40),
        f"{rng.randint(7, 23):02d}:{rng.randint(0, 59):02d}",
        font=_font(26),
        fill=(102, 119, 129),
    )
    return top + height + 14


def chat_screenshot(image: Image.Image, seed: int) -> Image.Image:
    """A synthetic 1080x2340 phone screenshot of a chat with the picture in a message bubble.

    Status bar (time, signal, battery), a header with avatar and name, a few text bubbles, the
    picture scaled to 70-85% of the screen width (at most 1300 px tall) in a rounded bubble
    with a time stamp over its corner, another bubble or two, and the input bar. The seed
    picks the messages, the picture's width and whether it was sent or received.
    """
    return chat_screenshot_placed(image, seed)[0]


def chat_screenshot_placed(image: Image.Image, seed: int) -> tuple[Image.Image, Placement]:
    """:func:`chat_screenshot` and where the picture went in it (for diagnostics)."""
    rng = random.Random(seed)  # noqa: S311 - layout, not crypto
    screen_w, screen_h = PHONE_SIZE
    screen = Image.new("RGB", PHONE_SIZE, (236, 229, 221))
    draw = ImageDraw.Draw(screen)
    # Status bar.
    draw.rectangle((0, 0, screen_w, 84), fill=(7, 94, 84))
    draw.text((40, 20), f"{rng.randint(7, 23)}:{rng.randint(0, 59):02d}", font=_font(38),
              fill=(255, 255, 255))  # fmt: skip
    for index in range(4):  # signal bars
        x = 860 + index * 16
        draw.rectangle((x, 58 - index * 9, x + 10, 62), fill=(255, 255, 255))
    draw.rounded_rectangle((950, 28, 1020, 60), radius=6, outline=(255, 255, 255), width=3)
    draw.rectangle((956, 34, 956 + rng.randint(20, 56), 54), fill=(255, 255, 255))
    # Header: back arrow, avatar, name, icons.
    draw.rectangle((0, 84, screen_w, 240), fill=(7, 94, 84))
    draw.line((40, 162, 70, 132), fill=(255, 255, 255), width=6)
    draw.line((40, 162, 70, 192), fill=(255, 255, 255), width=6)
    draw.ellipse((96, 112, 196, 212), fill=(rng.randint(90, 200), rng.randint(90, 200), 160))
    draw.text((224, 118), rng.choice(("Alex", "Sam", "Jo", "Kim", "Robin", "Mum")),
              font=_font(46), fill=(255, 255, 255))  # fmt: skip
    draw.text((224, 172), "online", font=_font(30), fill=(200, 230, 220))
    for x in (860, 960):
        draw.ellipse((x, 140, x + 44, 184), outline=(255, 255, 255), width=5)
    # Input bar.
    bar_top = screen_h - 150
    draw.rounded_rectangle((20, bar_top + 20, 900, bar_top + 130), radius=55, fill=(255, 255, 255))
    draw.text((110, bar_top + 52), "Message", font=_font(40), fill=(140, 150, 155))
    draw.ellipse((925, bar_top + 20, 1035, bar_top + 130), fill=(0, 168, 132))
    # Messages above the picture.
    top = 270
    for _ in range(rng.randint(1, 3)):
        top = _text_bubble(draw, rng, top, outgoing=rng.random() < 0.5)
    # The picture bubble.
    outgoing = rng.random() < 0.5
    picture = _rgb(image)
    width = round(screen_w * rng.uniform(0.70, 0.85))
    height = round(width * picture.height / picture.width)
    max_height = min(1300, bar_top - 40 - top - 2 * 10)
    if height > max_height:  # tall pictures are shown shorter, as chat apps do
        height = max_height
        width = round(height * picture.width / picture.height)
    picture = picture.resize((width, height), Image.Resampling.BICUBIC)
    frame = 10
    left = screen_w - 24 - width - 2 * frame if outgoing else 24
    fill = (220, 248, 198) if outgoing else (255, 255, 255)
    draw.rounded_rectangle(
        (left, top, left + width + 2 * frame, top + height + 2 * frame), radius=30, fill=fill
    )
    mask = Image.new("L", picture.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, width - 1, height - 1), radius=24, fill=255)
    screen.paste(picture, (left + frame, top + frame), mask)
    placed = (left + frame, top + frame, width, height)
    stamp = f"{rng.randint(7, 23):02d}:{rng.randint(0, 59):02d}"
    draw.text((left + frame + width - 110, top + frame + height - 50), stamp, font=_font(28),
              fill=(255, 255, 255), stroke_width=1, stroke_fill=(60, 60, 60))  # fmt: skip
    top += height + 2 * frame + 14
    # Messages below it, while they fit.
    while top < bar_top - 200 and rng.random() < 0.8:
        top = _text_bubble(draw, rng, top, outgoing=rng.random() < 0.5)
    if top > bar_top:  # a bubble ran under the input bar: redraw the bar over it
        draw.rectangle((0, bar_top, screen_w, screen_h), fill=(236, 229, 221))
        draw.rounded_rectangle((20, bar_top + 20, 900, bar_top + 130), radius=55,
                               fill=(255, 255, 255))  # fmt: skip
        draw.text((110, bar_top + 52), "Message", font=_font(40), fill=(140, 150, 155))
        draw.ellipse((925, bar_top + 20, 1035, bar_top + 130), fill=(0, 168, 132))
    return screen, placed


_MEME_LINES = (
    ("WHEN THE BUILD", "FINALLY PASSES"),
    ("NOBODY:", "ABSOLUTELY NOBODY:"),
    ("ME EXPLAINING", "WHY IT WORKS"),
    ("MONDAY MORNING", "BE LIKE"),
    ("ONE DOES NOT SIMPLY", "SKIP THE TESTS"),
)


def meme_bars(image: Image.Image, seed: int) -> Image.Image:
    """White bars above and below (each 18% of the picture's height) with bold black text."""
    picture = _rgb(image)
    bar = max(12, round(picture.height * 0.18))
    canvas = Image.new("RGB", (picture.width, picture.height + 2 * bar), (255, 255, 255))
    canvas.paste(picture, (0, bar))
    draw = ImageDraw.Draw(canvas)
    upper, lower = random.Random(seed).choice(_MEME_LINES)  # noqa: S311 - picks a caption
    for text, top in ((upper, 0), (lower, bar + picture.height)):
        size = max(8, round(bar * 0.55))
        font = _font(size)
        while size > 8 and draw.textlength(text, font=font) > picture.width * 0.92:
            size = round(size * 0.9)
            font = _font(size)
        stroke = max(1, size // 18)  # thickens the strokes: a bold face from the one font
        left, upper_y, right, lower_y = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
        position = (
            (picture.width - (right - left)) // 2 - left,
            top + (bar - (lower_y - upper_y)) // 2 - upper_y,
        )
        draw.text(position, text, font=font, fill=(0, 0, 0), stroke_width=stroke,
                  stroke_fill=(0, 0, 0))  # fmt: skip
    return canvas


_T = Image.Transpose

#: Every transform, in the order the quality table prints them.
TRANSFORMS: tuple[Transform, ...] = (
    Transform("identity", IDENTITY, "the listed picture itself", identity),
    Transform("jpeg_q30", BENIGN, "JPEG quality 30 round trip", jpeg(30)),
    Transform("jpeg_q10", BENIGN, "JPEG quality 10 round trip", jpeg(10)),
    Transform("resize_25", BENIGN, "resized to 25% per side", scale(0.25)),
    Transform("resize_50", BENIGN, "resized to 50% per side", scale(0.5)),
    Transform("upscale_2x", BENIGN, "resized to 200% per side", scale(2.0)),
    Transform("blur", BENIGN, "Gaussian blur, radius 1/300 of the shorter side", blur),
    Transform("brighter_30", BENIGN, "brightness +30%", brightness(1.3)),
    Transform("darker_30", BENIGN, "brightness -30%", brightness(0.7)),
    Transform("contrast", BENIGN, "contrast x1.5", contrast),
    Transform("gray", BENIGN, "greyscale", gray),
    Transform("watermark", BENIGN, "text watermark, bottom right", watermark),
    Transform("mirror", ORIENTATION, "left-right mirror", transpose(_T.FLIP_LEFT_RIGHT)),
    Transform("flip", ORIENTATION, "top-bottom flip", transpose(_T.FLIP_TOP_BOTTOM)),
    Transform("rotate_90", ORIENTATION, "quarter turn counter-clockwise", transpose(_T.ROTATE_90)),
    Transform("rotate_180", ORIENTATION, "half turn", transpose(_T.ROTATE_180)),
    Transform("rotate_270", ORIENTATION, "quarter turn clockwise", transpose(_T.ROTATE_270)),
    Transform("rotate_4", ROTATE4, "4 degrees, same canvas, black corners", rotate_small(4.0)),
    Transform("pad_black", BORDER, "black border, 20% of each side", pad(0.2, (0, 0, 0))),
    Transform("pad_white", BORDER, "white border, 20% of each side", pad(0.2, (255, 255, 255))),
    Transform("letterbox", BORDER, "in a 16:9 (or 9:16) frame with black bars", letterbox),
    Transform(
        "chat_screenshot", SCREENSHOT, "in a 1080x2340 phone chat screenshot", chat_screenshot
    ),
    Transform("crop_5", CROP5, "5% cut from each side", crop(0.05)),
    Transform("crop_10", CROP10, "10% cut from each side", crop(0.10)),
    Transform("meme_bars", MEME, "white bars with bold text above and below", meme_bars),
)

BY_NAME: dict[str, Transform] = {transform.name: transform for transform in TRANSFORMS}


def select(names: str | None) -> tuple[Transform, ...]:
    """The transforms named in a comma-separated list (all when ``names`` is empty).

    Raises ``KeyError`` naming the unknown ones.
    """
    if not names:
        return TRANSFORMS
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in BY_NAME]
    if unknown:
        raise KeyError(f"unknown transforms {unknown}; known: {', '.join(BY_NAME)}")
    return tuple(transform for transform in TRANSFORMS if transform.name in wanted)


def placement(name: str, image: Image.Image, seed: int) -> tuple[Image.Image, Placement | None]:
    """Transform ``name`` applied to ``image`` and, for the framings (pads, letterbox, chat
    screenshot, meme bars), where the picture is in the output; None for the other edits."""
    output = BY_NAME[name].apply(image, seed)
    width, height = image.size
    if name in ("pad_black", "pad_white"):
        return output, (round(width * 0.2), round(height * 0.2), width, height)
    if name == "letterbox":
        return output, (
            (output.width - width) // 2,
            (output.height - height) // 2,
            width,
            height,
        )
    if name == "meme_bars":
        return output, (0, (output.height - height) // 2, width, height)
    if name == "chat_screenshot":
        return chat_screenshot_placed(image, seed)
    return output, None
