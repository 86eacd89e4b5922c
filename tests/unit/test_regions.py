"""Content regions: where the picture really is inside a padded, letterboxed, screenshotted or
meme-framed upload, found on the guard's reduced decode as production sees it."""

from __future__ import annotations

import io
from collections.abc import Callable

import imagehash
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.core.guard import GuardLimits, decode
from pipeline.core.regions import Region, RegionKind, content_regions
from tests.framing import BLACK, WHITE, Framed, chat_screenshot, letterbox, meme, pad
from tests.imagegen import encode, sample_photo
from tests.orientation_corpus import DRAWINGS, PHOTOS

#: Photographs with the detail of ordinary uploads. The bundled low-contrast, low-detail
#: pictures (clock, moon, microaneurysms, brick) are left out of the embedded-picture cases:
#: inside a chat frame their text neighbours carry more detail than they do (see the module
#: docstring of pipeline/core/regions.py).
FRAMED_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")

Box = tuple[float, float, float, float]

FRAMINGS: dict[str, tuple[Callable[[Image.Image], Framed], RegionKind]] = {
    "pad_black": (lambda photo: pad(photo, 0.2, BLACK), RegionKind.TRIMMED),
    "pad_white": (lambda photo: pad(photo, 0.2, WHITE), RegionKind.TRIMMED),
    "pad_colour": (lambda photo: pad(photo, 0.2, (40, 120, 200)), RegionKind.TRIMMED),
    "pad_uneven": (
        lambda photo: pad(photo, sides=(0.05, 0.3, 0.15, 0.0), colour=(250, 250, 250)),
        RegionKind.TRIMMED,
    ),
    "pillarbox_16_9": (lambda photo: letterbox(photo, 16 / 9), RegionKind.TRIMMED),
    "letterbox_9_16": (lambda photo: letterbox(photo, 9 / 16), RegionKind.TRIMMED),
    "chat_green": (lambda photo: chat_screenshot(photo, "green"), RegionKind.EMBEDDED),
    "chat_blue": (lambda photo: chat_screenshot(photo, "blue", seed=1), RegionKind.EMBEDDED),
    "chat_dark": (lambda photo: chat_screenshot(photo, "dark", seed=2), RegionKind.EMBEDDED),
    "chat_gradient": (
        lambda photo: chat_screenshot(photo, "green", seed=3, gradient=25),
        RegionKind.EMBEDDED,
    ),
    "meme_white": (meme, RegionKind.EMBEDDED),
    "meme_black": (lambda photo: meme(photo, bar=BLACK), RegionKind.EMBEDDED),
}


def _decoded(image: Image.Image, quality: int = 85) -> Image.Image:
    """``image`` uploaded as a JPEG and decoded by the guard: reduced, grayscale."""
    return decode(encode(image, quality=quality), GuardLimits()).image


def _box(region: Region) -> Box:
    return (region.x, region.y, region.x + region.width, region.y + region.height)


def _truth(framed: Framed, decoded: Image.Image) -> Box:
    """The photo's rectangle in the decoded picture's pixels."""
    scale_x = decoded.width / framed.image.width
    scale_y = decoded.height / framed.image.height
    x, y, width, height = framed.photo
    return (x * scale_x, y * scale_y, (x + width) * scale_x, (y + height) * scale_y)


def _iou(first: Box, second: Box) -> float:
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    if width <= 0 or height <= 0:
        return 0.0
    overlap = width * height
    areas = [(box[2] - box[0]) * (box[3] - box[1]) for box in (first, second)]
    return overlap / (sum(areas) - overlap)


def _best(regions: tuple[Region, ...], truth: Box) -> tuple[float, Region | None]:
    scored = [(_iou(_box(region), truth), region) for region in regions]
    return max(scored, key=lambda pair: pair[0], default=(0.0, None))


def _crop(image: Image.Image, region: Region) -> Image.Image:
    return image.crop(_box(region))


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return {name: sample_photo(name) for name in FRAMED_PHOTOS}


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("name", FRAMED_PHOTOS)
def test_finds_the_photo_inside_its_frame(
    photos: dict[str, Image.Image], name: str, framing: str
) -> None:
    make, kind = FRAMINGS[framing]
    framed = make(photos[name])
    decoded = _decoded(framed.image)
    regions = content_regions(decoded)
    overlap, region = _best(regions, _truth(framed, decoded))
    assert region is not None, f"nothing found; regions: {regions}"
    assert overlap >= 0.9, f"best {region} covers {_truth(framed, decoded)} at IoU {overlap:.2f}"
    assert region.kind is kind


@pytest.mark.parametrize("framing", ["pad_black", "pillarbox_16_9", "chat_green", "meme_white"])
def test_survives_a_forwarded_hard_jpeg_re_encode(
    photos: dict[str, Image.Image], framing: str
) -> None:
    make, _ = FRAMINGS[framing]
    framed = make(photos["chelsea"])
    forwarded = Image.open(io.BytesIO(encode(framed.image, quality=70))).convert("RGB")
    decoded = _decoded(forwarded, quality=40)
    overlap, _region = _best(content_regions(decoded), _truth(framed, decoded))
    assert overlap >= 0.9


def test_works_on_a_full_size_rgb_picture(photos: dict[str, Image.Image]) -> None:
    """Not only the guard's reduced decode: a full-size RGB screenshot is reduced first, and
    the regions come back in its own pixels."""
    framed = chat_screenshot(photos["astronaut"], "green")
    regions = content_regions(framed.image)
    overlap, region = _best(regions, _truth(framed, framed.image))
    assert overlap >= 0.9
    assert region is not None
    assert region.x + region.width <= framed.image.width
    assert region.y + region.height <= framed.image.height


@pytest.mark.parametrize("name", PHOTOS)
def test_ordinary_photos_have_no_regions(name: str) -> None:
    """Stretched to 1080p landscape and portrait too, at a poor and a good JPEG quality."""
    picture = sample_photo(name)
    assert content_regions(_decoded(picture)) == ()
    for size in ((1920, 1080), (1080, 1920)):
        for quality in (30, 90):
            assert content_regions(_decoded(picture.resize(size), quality)) == ()


@pytest.mark.parametrize("name", [name for name in DRAWINGS if name != "logo"])
def test_bundled_drawings_have_no_regions(name: str) -> None:
    assert content_regions(_decoded(sample_photo(name))) == ()


def test_a_disc_on_white_gives_at_most_its_middle() -> None:
    """A known limit: scikit-image's logo, a grey disc of drawing on white, is shaped like an
    embedded picture across its widest band (flat ground above and below, the disc touching
    the sides), so that band is hashed too. One region, never a pad (not stretched: on a
    16:9 canvas the logo is a padded picture)."""
    decoded = _decoded(sample_photo("logo"))
    regions = content_regions(decoded)
    assert len(regions) <= 1
    for region in regions:
        assert region.kind is RegionKind.EMBEDDED
        assert region.width >= 0.9 * decoded.width


def test_blank_pictures_have_no_regions() -> None:
    for colour in (0, 128, 255):
        assert content_regions(Image.new("L", (320, 240), colour)) == ()
    gradient = Image.linear_gradient("L").resize((320, 240))
    assert content_regions(gradient) == ()


def test_max_regions_bounds_the_answer(photos: dict[str, Image.Image]) -> None:
    decoded = _decoded(pad(photos["coffee"], 0.3, WHITE).image)
    assert len(content_regions(decoded)) >= 1
    assert content_regions(decoded, max_regions=0) == ()
    assert len(content_regions(decoded, max_regions=1)) == 1


def test_is_deterministic(photos: dict[str, Image.Image]) -> None:
    decoded = _decoded(chat_screenshot(photos["rocket"], "dark").image)
    assert content_regions(decoded) == content_regions(decoded)


@pytest.mark.parametrize("framing", list(FRAMINGS))
def test_hashing_the_region_recovers_the_photos_phash(
    photos: dict[str, Image.Image], framing: str
) -> None:
    """The point of a region: its pHash is near the listed photo's (made by plain imagehash
    from the original), where the framed whole is not."""
    make, _ = FRAMINGS[framing]
    photo = photos["coffee"]
    listed = imagehash.phash(photo)
    framed = make(photo)
    decoded = _decoded(framed.image)
    _overlap, region = _best(content_regions(decoded), _truth(framed, decoded))
    assert region is not None
    region_distance = imagehash.phash(_crop(decoded, region)) - listed
    whole_distance = imagehash.phash(decoded) - listed
    assert region_distance <= 10, (region_distance, whole_distance)
    assert region_distance < whole_distance


_pad_share = st.floats(min_value=0.0, max_value=0.35)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(FRAMED_PHOTOS),
    sides=st.tuples(_pad_share, _pad_share, _pad_share, _pad_share),
    grey=st.integers(min_value=0, max_value=255),
    quality=st.sampled_from([50, 75, 95]),
)
def test_random_pads_are_trimmed(
    photos: dict[str, Image.Image],
    name: str,
    sides: tuple[float, float, float, float],
    grey: int,
    quality: int,
) -> None:
    framed = pad(photos[name], sides=sides, colour=(grey, grey, grey))
    decoded = _decoded(framed.image, quality)
    truth = _truth(framed, decoded)
    regions = content_regions(decoded)
    for region in regions:
        assert region.x + region.width <= decoded.width
        assert region.y + region.height <= decoded.height
    kept_width = (truth[2] - truth[0]) / decoded.width
    kept_height = (truth[3] - truth[1]) / decoded.height
    if min(kept_width, kept_height) < 0.9:
        # A pad of 10% or more of a side is always found...
        overlap, _region = _best(regions, truth)
        assert overlap >= 0.9, (regions, truth)
    if min(kept_width, kept_height) > 0.98:
        # ...and one of 2% or less is the whole image, already hashed.
        assert regions == ()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=st.integers(1, 80),
    height=st.integers(1, 80),
    levels=st.lists(st.integers(0, 255), min_size=1, max_size=4),
    vertical=st.booleans(),
)
def test_any_blocky_or_tiny_picture_gets_an_answer_never_an_error(
    width: int, height: int, levels: list[int], vertical: bool
) -> None:
    # Flat bands from edge to edge (a two-tone split was peeled from both ends to nothing and
    # crashed the search), down to one pixel wide.
    bands = Image.new("L", (width, height))
    for index, level in enumerate(levels):
        start = index * (height if vertical else width) // len(levels)
        box = (0, start, width, height) if vertical else (start, 0, width, height)
        bands.paste(level, box)
    for region in content_regions(bands):
        assert region.x + region.width <= width
        assert region.y + region.height <= height
