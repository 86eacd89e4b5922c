"""Framings that hide a photo inside a bigger picture, made in memory for tests and benchmarks.

Each generator takes an RGB photo and returns a :class:`Framed`: the new picture and the
rectangle (x, y, width, height, in the new picture's pixels) where the photo now sits. They
draw what circulates: pads of a flat colour, letterbox and pillarbox bars, a phone chat
screenshot (status bar, header, text bubbles, the photo in a rounded bubble with a timestamp,
an input bar) and meme text bars. Everything is generated with Pillow; nothing is written to
disk. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

Colour = tuple[int, int, int]
Rect = tuple[int, int, int, int]

BLACK: Colour = (0, 0, 0)
WHITE: Colour = (255, 255, 255)


@dataclass(frozen=True, slots=True)
class Framed:
    """A framed picture and where the photo is inside it (x, y, width, height)."""

    image: Image.Image
    photo: Rect


def pad(
    photo: Image.Image,
    fraction: float = 0.2,
    colour: Colour = BLACK,
    sides: tuple[float, float, float, float] | None = None,
) -> Framed:
    """``photo`` on a flat canvas: ``fraction`` of its width (height) added left and right (top
    and bottom), split evenly, or per side as (left, top, right, bottom) fractions."""
    width, height = photo.size
    left, top, right, bottom = sides or (fraction / 2, fraction / 2, fraction / 2, fraction / 2)
    x, y = round(width * left), round(height * top)
    canvas = Image.new(
        "RGB", (x + width + round(width * right), y + height + round(height * bottom)), colour
    )
    canvas.paste(photo.convert("RGB"), (x, y))
    return Framed(canvas, (x, y, width, height))


def letterbox(photo: Image.Image, aspect: float = 16 / 9, colour: Colour = BLACK) -> Framed:
    """``photo`` centred in the smallest canvas of ``aspect`` (width / height) that holds it:
    bars top and bottom (letterbox) for a photo wider than ``aspect``, left and right
    (pillarbox) for a narrower one."""
    width, height = photo.size
    if width / height > aspect:
        canvas_size = (width, round(width / aspect))
    else:
        canvas_size = (round(height * aspect), height)
    canvas = Image.new("RGB", canvas_size, colour)
    x, y = (canvas_size[0] - width) // 2, (canvas_size[1] - height) // 2
    canvas.paste(photo.convert("RGB"), (x, y))
    return Framed(canvas, (x, y, width, height))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _words(rng: random.Random, count: int) -> str:
    vocabulary = (
        "ok", "see", "this", "lol", "what", "look", "at", "that", "haha", "send", "me", "the",
        "one", "from", "yesterday", "omg", "no", "way", "where", "is", "it", "again", "nice",
    )  # fmt: skip
    return " ".join(rng.choice(vocabulary) for _ in range(count))


@dataclass(frozen=True, slots=True)
class ChatTheme:
    """Colours of a chat app: background, header bar, incoming and outgoing bubbles, text."""

    background: Colour
    header: Colour
    incoming: Colour
    outgoing: Colour
    text: Colour
    status_text: Colour


CHAT_THEMES: dict[str, ChatTheme] = {
    # A green messenger on its beige wallpaper, a blue one on white, and a dark mode.
    "green": ChatTheme((236, 229, 221), (7, 94, 84), WHITE, (220, 248, 198), (20, 20, 20), WHITE),
    "blue": ChatTheme(WHITE, (247, 247, 247), (233, 233, 235), (0, 122, 255), BLACK, BLACK),
    "dark": ChatTheme(
        (11, 20, 26), (31, 44, 52), (31, 44, 52), (0, 92, 75), (233, 237, 239), (233, 237, 239)
    ),
}


def _text_bubble(
    draw: ImageDraw.ImageDraw,
    rng: random.Random,
    top: int,
    screen_width: int,
    outgoing: bool,
    theme: ChatTheme,
    scale: float,
) -> int:
    """Draw one text bubble of one to three lines starting at ``top``; return its bottom."""
    font = _font(round(30 * scale))
    lines = [_words(rng, rng.randint(2, 5)) for _ in range(rng.randint(1, 3))]
    line_height = round(40 * scale)
    text_width = max(draw.textlength(line, font=font) for line in lines)
    bubble_width = min(int(text_width) + round(40 * scale), int(screen_width * 0.75))
    bubble_height = line_height * len(lines) + round(28 * scale)
    margin = round(24 * scale)
    left = screen_width - margin - bubble_width if outgoing else margin
    fill = theme.outgoing if outgoing else theme.incoming
    draw.rounded_rectangle(
        (left, top, left + bubble_width, top + bubble_height), radius=round(20 * scale), fill=fill
    )
    colour = WHITE if outgoing and theme.outgoing == (0, 122, 255) else theme.text
    for index, line in enumerate(lines):
        draw.text(
            (left + round(20 * scale), top + round(14 * scale) + index * line_height),
            line,
            fill=colour,
            font=font,
        )
    return top + bubble_height


def chat_screenshot(
    photo: Image.Image,
    theme: str = "green",
    size: tuple[int, int] = (1080, 2340),
    photo_width_share: float = 0.7,
    seed: int = 0,
    gradient: int = 0,
    margin: int = 8,
    radius: int = 18,
    gap: int = 16,
    outgoing: bool = True,
) -> Framed:
    """A phone chat screenshot of ``size`` with ``photo`` in a rounded bubble among text bubbles.

    Status bar (clock, icons) and a header bar (back arrow, avatar, contact name) at the top,
    text bubbles above and below the photo, the photo ``photo_width_share`` of the screen wide
    (its height capped at 45% of the screen, as apps do) inside a bubble (``outgoing`` on the
    right in the outgoing colour, else on the left in the incoming one) with a ``margin`` of
    bubble around it (0: the photo is the bubble, as iMessage and Telegram draw it), corners
    rounded by ``radius`` and a timestamp drawn over its bottom-right corner, messages ``gap``
    apart, and an input bar at the bottom. Lengths are for a 1080 px wide screen. ``gradient``
    darkens the background towards the bottom by that many levels (wallpapers are rarely
    perfectly flat)."""
    rng = random.Random(seed)
    palette = CHAT_THEMES[theme]
    width, height = size
    scale = width / 1080
    canvas = Image.new("RGB", size, palette.background)
    if gradient:
        ramp = Image.linear_gradient("L").resize(size)
        shade = Image.new("RGB", size, tuple(max(0, c - gradient) for c in palette.background))
        canvas = Image.composite(shade, canvas, ramp)
    draw = ImageDraw.Draw(canvas)

    # Status bar and header.
    status_height, header_height = round(70 * scale), round(150 * scale)
    draw.rectangle((0, 0, width, status_height + header_height), fill=palette.header)
    small = _font(round(30 * scale))
    draw.text((round(40 * scale), round(18 * scale)), "9:41", fill=palette.status_text, font=small)
    for index in range(3):
        x = width - round((60 + 50 * index) * scale)
        draw.rectangle(
            (x, round(25 * scale), x + round(30 * scale), round(48 * scale)),
            fill=palette.status_text,
        )
    avatar_top = status_height + round(30 * scale)
    draw.ellipse(
        (round(90 * scale), avatar_top, round(180 * scale), avatar_top + round(90 * scale)),
        fill=(150, 170, 190),
    )
    draw.text(
        (round(210 * scale), avatar_top + round(20 * scale)),
        "Alex",
        fill=palette.status_text,
        font=_font(round(40 * scale)),
    )

    # Text bubbles above the photo.
    spacing = round(gap * scale)
    top = status_height + header_height + round(30 * scale)
    for index in range(rng.randint(1, 3)):
        top = _text_bubble(draw, rng, top, width, index % 2 == 1, palette, scale)
        top += spacing

    # The photo bubble.
    photo_width = round(width * photo_width_share)
    photo_height = round(photo_width * photo.height / photo.width)
    if photo_height > height * 0.45:
        photo_height = round(height * 0.45)
        photo_width = round(photo_height * photo.width / photo.height)
    margin = round(margin * scale)
    side = round(24 * scale)
    bubble_left = width - side - photo_width - 2 * margin if outgoing else side
    bubble_top = top
    if margin:
        draw.rounded_rectangle(
            (
                bubble_left,
                bubble_top,
                bubble_left + photo_width + 2 * margin,
                bubble_top + photo_height + 2 * margin,
            ),
            radius=round((radius + 6) * scale),
            fill=palette.outgoing if outgoing else palette.incoming,
        )
    resized = photo.convert("RGB").resize((photo_width, photo_height), Image.Resampling.LANCZOS)
    rounded = Image.new("L", resized.size, 0)
    ImageDraw.Draw(rounded).rounded_rectangle(
        (0, 0, photo_width - 1, photo_height - 1), radius=round(radius * scale), fill=255
    )
    photo_x, photo_y = bubble_left + margin, bubble_top + margin
    canvas.paste(resized, (photo_x, photo_y), rounded)
    draw.text(
        (photo_x + photo_width - round(110 * scale), photo_y + photo_height - round(45 * scale)),
        "10:32",
        fill=WHITE,
        font=_font(round(26 * scale)),
    )
    top = bubble_top + photo_height + 2 * margin + spacing

    # Text bubbles below, while they fit above the input bar.
    input_top = height - round(140 * scale)
    while top + round(200 * scale) < input_top:
        top = _text_bubble(draw, rng, top, width, rng.random() < 0.5, palette, scale)
        top += spacing

    # Input bar.
    draw.rectangle((0, input_top, width, height), fill=palette.background)
    draw.rounded_rectangle(
        (round(20 * scale), input_top + round(20 * scale), width - round(140 * scale),
         height - round(30 * scale)),
        radius=round(45 * scale),
        fill=palette.incoming,
    )  # fmt: skip
    draw.text(
        (round(70 * scale), input_top + round(45 * scale)),
        "Message",
        fill=(140, 140, 140),
        font=small,
    )
    draw.ellipse(
        (width - round(120 * scale), input_top + round(20 * scale), width - round(20 * scale),
         input_top + round(120 * scale)),
        fill=palette.header,
    )  # fmt: skip
    return Framed(canvas, (photo_x, photo_y, photo_width, photo_height))


def meme(
    photo: Image.Image,
    top_text: str = "WHEN THE CODE",
    bottom_text: str = "WORKS FIRST TIME",
    bar: Colour = WHITE,
    bar_share: float = 0.2,
) -> Framed:
    """``photo`` between two bars of ``bar`` colour, each ``bar_share`` of its height, holding
    big centred text in the contrasting colour (the caption-above-and-below meme layout)."""
    width, height = photo.size
    bar_height = round(height * bar_share)
    canvas = Image.new("RGB", (width, height + 2 * bar_height), bar)
    canvas.paste(photo.convert("RGB"), (0, bar_height))
    draw = ImageDraw.Draw(canvas)
    ink = BLACK if sum(bar) > 3 * 128 else WHITE
    for text, centre_y in (
        (top_text, bar_height // 2),
        (bottom_text, height + bar_height * 3 // 2),
    ):
        size = round(bar_height * 0.55)
        font = _font(size)
        while draw.textlength(text, font=font) > width * 0.92 and size > 8:
            size -= 2
            font = _font(size)
        draw.text((width // 2, centre_y), text, fill=ink, font=font, anchor="mm")
    return Framed(canvas, (0, bar_height, width, height))
