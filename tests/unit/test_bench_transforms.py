"""The quality benchmark's transforms and corpus rules: deterministic, the geometry they claim,
and one file per picture."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from pipeline.bench import transforms
from pipeline.bench.corpus import low_information_pictures, picture_key


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(data.coffee())  # 600x400


@pytest.mark.parametrize("transform", transforms.TRANSFORMS, ids=lambda t: t.name)
def test_same_seed_same_pixels(transform: transforms.Transform, photo: Image.Image) -> None:
    first = np.asarray(transform.apply(photo, 5))
    assert np.array_equal(first, np.asarray(transform.apply(photo, 5)))
    assert photo.size == (600, 400)  # the input is never changed in place


def test_seed_changes_the_chat_layout(photo: Image.Image) -> None:
    one = np.asarray(transforms.BY_NAME["chat_screenshot"].apply(photo, 1))
    two = np.asarray(transforms.BY_NAME["chat_screenshot"].apply(photo, 2))
    assert one.shape == two.shape == (2340, 1080, 3)
    assert not np.array_equal(one, two)


def test_geometry(photo: Image.Image) -> None:
    size = {t.name: t.apply(photo, 0).size for t in transforms.TRANSFORMS}
    assert size["pad_black"] == (600 + 2 * 120, 400 + 2 * 80)
    assert size["crop_5"] == (540, 360)
    assert size["crop_10"] == (480, 320)
    assert size["rotate_90"] == (400, 600)
    assert size["resize_25"] == (150, 100)
    assert size["meme_bars"] == (600, 400 + 2 * 72)
    # 3:2 is wide: a vertical 9:16 frame, bars above and below.
    assert size["letterbox"] == (600, round(600 * 16 / 9))


def test_pad_and_letterbox_borders_are_uniform(photo: Image.Image) -> None:
    padded = np.asarray(transforms.BY_NAME["pad_white"].apply(photo, 0))
    assert (padded[:80] == 255).all()
    assert (padded[:, :120] == 255).all()
    boxed = np.asarray(transforms.BY_NAME["letterbox"].apply(photo, 0))
    bar = (boxed.shape[0] - 400) // 2
    assert (boxed[:bar] == 0).all()
    assert (boxed[-bar:] == 0).all()
    assert boxed[bar + 10 : bar + 390].std() > 20  # the photo, not a bar


@pytest.mark.parametrize("seed", range(6))
def test_chat_screenshot_holds_the_photo_at_70_to_85_percent_width(seed: int) -> None:
    magenta = Image.new("RGB", (600, 400), (255, 0, 255))  # a colour the chat UI never uses
    screen = np.asarray(transforms.BY_NAME["chat_screenshot"].apply(magenta, seed)).astype(int)
    ys, xs = np.nonzero((screen[..., 0] > 230) & (screen[..., 1] < 30) & (screen[..., 2] > 230))
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert 0.70 * 1080 - 2 <= width <= 0.85 * 1080 + 2
    assert abs(width / height - 1.5) < 0.02  # not stretched
    assert ys.min() > 240  # below the header
    assert ys.max() < 2340 - 150  # above the input bar


def test_select_names_unknown_transforms() -> None:
    assert [t.name for t in transforms.select("mirror,identity")] == ["identity", "mirror"]
    with pytest.raises(KeyError, match="nope"):
        transforms.select("mirror,nope")


@pytest.mark.parametrize(
    ("relative", "key"),
    [
        ("Next/contents/images/1920x1080.png", "Next"),
        ("Next/contents/images_dark/5120x2880.png", "Next"),
        ("abstract/Elephants_3840x2160.jpg", "abstract/Elephants"),
        ("abstract/Elephants.jpg", "abstract/Elephants"),
        ("wood-d.webp", "wood"),
        ("Nature/lake.jpg", "Nature/lake"),
    ],
)
def test_picture_key_groups_sizes_and_variants(relative: str, key: str) -> None:
    assert picture_key(relative) == key


def test_low_information_pictures_cover_the_issue_families() -> None:
    pictures = low_information_pictures(160, 90)
    assert len(pictures) >= 20
    assert {family for family, _, _ in pictures} >= {"uniform", "gradient", "vignette", "stripes"}
    assert all(image.size == (160, 90) and image.mode == "RGB" for _, _, image in pictures)
