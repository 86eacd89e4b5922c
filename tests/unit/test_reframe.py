"""Reframed views: a cropped copy uncropped, a crooked copy straightened, both upright only.

The rules: every upload is also hashed with its edges extended by what a 5% and a 10% crop of
each side take off; an upload whose corners are four long thin triangles of one fill colour is
turned back by the angle their sides give, its corners painted the picture's mean. These views
carry pHash and dHash, are searched upright only, and a match through one names it as the
region's kind (its rectangle is the whole upload).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import imagehash
import numpy as np
import pytest
from PIL import Image

from pipeline.bench.transforms import crop, pad, rotate_small
from pipeline.core.guard import GuardLimits, decode
from pipeline.core.hashing import ALL_ALGORITHMS, bits_to_int
from pipeline.core.hashlist import Category, HashListEntry, ListConfig
from pipeline.core.matching import Matcher
from pipeline.core.orientation import Orientation, UprightHash
from pipeline.core.reframe import UNCROP_SHARES, reframings, straightened, tilt, uncropped
from pipeline.core.regions import RegionKind
from pipeline.core.types import Algorithm, HashValue
from pipeline.hashprocess import hash_job
from tests.imagegen import sample_photo

LIST = ListConfig.create("eokm", action="block", thresholds={"phash": 8, "dhash": 10})
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "hubble_deep_field")


def jpeg(image: Image.Image, quality: int = 92) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def decoded(image: Image.Image) -> Image.Image:
    """The guard's reduced grayscale decode of ``image`` uploaded as a JPEG."""
    return decode(jpeg(image), GuardLimits()).image


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("degrees", [-8.0, -4.0, 2.0, 4.0])
def test_the_tilt_is_read_off_the_fill_corners_within_three_quarters_of_a_degree(
    name: str, degrees: float
) -> None:
    photo = sample_photo(name)
    found = tilt(decoded(rotate_small(degrees)(photo, 0)))
    # 512 px photos decode at 128 px: one pixel of fill depth over the 60 measured is ~1 degree
    assert found is not None
    assert abs(found - degrees) <= 0.75


@pytest.mark.parametrize("name", PHOTOS)
def test_an_upright_photo_a_padded_one_and_a_one_degree_shy_turn_are_not_tilted(
    name: str,
) -> None:
    photo = sample_photo(name)
    assert tilt(decoded(photo)) is None
    assert tilt(decoded(pad(0.2, (0, 0, 0))(photo, 0))) is None  # black corners, no triangles
    if name != "hubble_deep_field":
        # Too small to be worth it. (The deep field's own black sky reaches its corners: its
        # 0.2 degree turn reads as 7.7 degrees, which costs one more view and nothing else.)
        assert tilt(decoded(rotate_small(0.2)(photo, 0))) is None


def test_uncropping_extends_the_edges_by_what_the_crop_took() -> None:
    pixels = np.arange(90 * 72, dtype=np.uint8).reshape(72, 90)
    grown = np.asarray(uncropped(Image.fromarray(pixels), 0.05))
    # 5% of each side of a 100-wide original is 5 px of the 90 px left: 90 / 18.
    assert grown.shape == (72 + 2 * 4, 90 + 2 * 5)
    assert (grown[4:-4, 5:-5] == pixels).all()
    assert (grown[4:-4, :5] == pixels[:, :1]).all()
    assert (grown[:4, 5:-5] == pixels[:1]).all()


def test_straightening_paints_the_corners_the_picture_mean() -> None:
    flat = Image.new("L", (200, 120), 200)
    turned = flat.rotate(5, fillcolor=0)
    back = np.asarray(straightened(turned, 5))
    assert abs(int(back[0, 0]) - 200) <= 1
    assert abs(int(back[-1, -1]) - 200) <= 1
    assert back.min() >= 190  # no black left anywhere


def test_every_upload_has_an_uncropped_view_and_a_crooked_one_a_straightened_view() -> None:
    photo = sample_photo("coffee")
    assert [kind for kind, _ in reframings(decoded(photo))] == [RegionKind.UNCROPPED] * len(
        UNCROP_SHARES
    )
    kinds = [kind for kind, _ in reframings(decoded(rotate_small(4)(photo, 0)))]
    assert kinds == [RegionKind.STRAIGHTENED, *[RegionKind.UNCROPPED] * len(UNCROP_SHARES)]
    upload = hash_job(jpeg(rotate_small(4)(photo, 0)), GuardLimits(), ALL_ALGORITHMS)
    reframed = [view for view in upload.views if view.upright_only]
    assert [view.region.kind for view in reframed] == kinds
    assert all(set(view.hashes) == {Algorithm.PHASH, Algorithm.DHASH} for view in reframed)
    assert all(
        (view.region.x, view.region.y, view.region.width, view.region.height)
        == (0, 0, upload.width, upload.height)
        for view in reframed
    )


def plain_list(photo: Image.Image) -> Matcher:
    """A list holding the photo's plain imagehash pHash, as a hotline makes it."""
    with Image.open(io.BytesIO(jpeg(photo, 95))) as listed:
        value = bits_to_int(imagehash.phash(listed).hash)
    matcher = Matcher()
    matcher.set_list(LIST)
    matcher.upsert([HashListEntry("eokm", "e", HashValue(Algorithm.PHASH, value), Category.CSAM)])
    return matcher


@pytest.mark.parametrize(
    ("edit", "name", "kind"),
    [
        *((rotate_small(4.0), name, RegionKind.STRAIGHTENED)
          for name in ("astronaut", "chelsea", "text", "grass", "moon")),
        *((crop(0.05), name, RegionKind.UNCROPPED)
          for name in ("astronaut", "chelsea", "camera", "moon")),
        *((crop(0.10), name, RegionKind.UNCROPPED) for name in ("clock",)),
    ],
)  # fmt: skip
def test_a_crooked_or_cropped_copy_its_own_hash_misses_matches_through_its_reframed_view(
    edit: Callable[[Image.Image, int], Image.Image], name: str, kind: RegionKind
) -> None:
    """Scikit-image photos turned 4 degrees or cropped whose upload's own pHash is beyond the
    threshold of the listed photo's plain imagehash pHash: the reframed view's is within it,
    upright, and the match names the view."""
    photo = sample_photo(name)
    matcher = plain_list(photo)
    upload = hash_job(jpeg(edit(photo, 0)), GuardLimits(), ALL_ALGORITHMS)
    assert matcher.match(upload.hashes, upload.views[:1]) == []
    (found,) = matcher.match(upload.hashes, upload.views)
    assert found.region is not None
    assert found.region.kind is kind
    assert found.orientation is Orientation.IDENTITY


def test_a_reframed_view_is_searched_upright_only() -> None:
    """Its hashes are computed upright only: the mirror of a crop that matches through its
    uncropped view is not caught (its whole view, turned, is as far as the crop's upright)."""
    photo = sample_photo("camera")
    matcher = plain_list(photo)
    cropped = crop(0.05)(photo, 0)
    upload = hash_job(jpeg(cropped), GuardLimits(), ALL_ALGORITHMS)
    assert [m.region.kind for m in matcher.match(upload.hashes, upload.views) if m.region] == [
        RegionKind.UNCROPPED
    ]
    mirrored = cropped.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    upload = hash_job(jpeg(mirrored), GuardLimits(), ALL_ALGORITHMS)
    reframed = [view for view in upload.views if view.upright_only]
    assert reframed
    assert all(isinstance(value, UprightHash) for v in reframed for value in v.hashes.values())
    assert matcher.match(upload.hashes, upload.views) == []
