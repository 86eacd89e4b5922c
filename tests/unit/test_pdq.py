"""PDQ through pdqhash: golden values, the hex layout, the dihedral mapping and the drift of
hashing the guard's reduced decode instead of the full picture (pipeline/core/pdq.py).

pdqhash itself was checked against ThreatExchange's published reference hashes
(pdq/cpp/bin/README.md, pdq/python/README.md): 0 bits apart on the bridge photos of 512 pixels
or less, 2-12 bits on the larger ones, which ThreatExchange's C++ tool first resizes to
512x512 (nearest neighbour). Those photos are not copied here (tests use generated pictures
and scikit-image's); the goldens below pin pdqhash's output on those instead.
"""

from __future__ import annotations

import io

import numpy as np
import pdqhash
import pytest
from PIL import Image

from pipeline.core.guard import GuardLimits, decode
from pipeline.core.hashing import decoded_pdq, hash_image
from pipeline.core.hashlist import PDQ_MIN_QUALITY
from pipeline.core.orientation import ORIENTATIONS, orient
from pipeline.core.pdq import pdq_hash, pdq_hashes, upright_full_size
from pipeline.core.types import Algorithm, HashValue
from tests.imagegen import encode, sample_photo, synthetic_image

#: pdqhash.compute on the full RGB picture, as HMA hashes a file: (hex, quality).
GOLDEN = {
    "synthetic-1": ("b58ea1f073297170fc7b5a1a0ace878285cd0b8583f994f394ba6f0e1f079c27", 100),
    "synthetic-2": ("670767274d254874493662568f07b58fb6e038fbb6d89710cacfa67154b855a9", 100),
    "astronaut": ("2d6b1af3a956c529e79ca3d2526fa834d4196c81cedd04de0a26b855fc99b724", 100),
    "chelsea": ("5feb5321f01da156898e2bf629a5d3438412cdbd23f48942464526315db33ffd", 100),
}


def picture(name: str) -> Image.Image:
    if name.startswith("synthetic-"):
        return synthetic_image(int(name.rsplit("-", 1)[1]))
    return sample_photo(name)


def reference(image: Image.Image) -> tuple[int, int]:
    """pdqhash on the full RGB array, read as its hex reads (HMA's pdq_hasher)."""
    vector, quality = pdqhash.compute(np.ascontiguousarray(np.asarray(image.convert("RGB"))))
    return int("".join(str(int(bit)) for bit in vector), 2), int(quality)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_full_size_pictures_hash_exactly_as_pdqhash(name: str) -> None:
    hex_value, quality = GOLDEN[name]
    image = picture(name)
    assert reference(image) == (int(hex_value, 16), quality)
    found = pdq_hashes(image)
    assert HashValue(Algorithm.PDQ, found.identity).hex == hex_value
    assert found.quality == quality
    assert pdq_hash(image) == (found.identity, quality)


@pytest.mark.parametrize("name", ["chelsea", "coffee", "rocket"])
def test_each_orientation_is_the_hash_of_the_turned_picture(name: str) -> None:
    image = sample_photo(name)
    derived = pdq_hashes(image).orientations
    for orientation in ORIENTATIONS:
        turned, _ = pdq_hash(orient(image, orientation))
        distances = {o: (derived[o] ^ turned).bit_count() for o in ORIENTATIONS}
        # PDQ's sampling is not symmetric under reversal: up to ~18 bits (pdqhash alone too).
        assert distances[orientation] <= 20, (orientation, distances)
        assert min(d for o, d in distances.items() if o != orientation) >= 90


@pytest.mark.parametrize(("size", "bound"), [((1920, 1080), 10), ((4000, 3000), 6)])
def test_reduced_jpeg_decode_stays_near_the_full_decode(size: tuple[int, int], bound: int) -> None:
    """The guard's draft (1/8 scale here) hashed as if full size: measured 0-10 bits on these
    photos at 1080p, where hashing the draft as it is moved 14-22 bits."""
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        data = encode(sample_photo(name).resize(size, Image.Resampling.BICUBIC), "JPEG")
        full, _ = reference(Image.open(io.BytesIO(data)))
        decoded = decode(data, GuardLimits())
        assert decoded.image.width < size[0] // 4  # really the reduced decode
        assert (decoded_pdq(decoded).identity ^ full).bit_count() <= bound, name


def test_exif_turned_upload_uses_the_upright_full_size() -> None:
    assert upright_full_size((240, 135), (1920, 1080)) == (1920, 1080)
    assert upright_full_size((135, 240), (1920, 1080)) == (1080, 1920)
    assert upright_full_size((500, 500), (4000, 4000)) == (4000, 4000)


def test_flat_pictures_have_low_quality_and_photos_full() -> None:
    flat = Image.new("RGB", (300, 200), (120, 120, 120))
    assert pdq_hashes(flat).quality < PDQ_MIN_QUALITY
    assert pdq_hashes(sample_photo("astronaut")).quality == 100


def test_pdq_is_hashed_only_when_asked() -> None:
    data = encode(sample_photo("chelsea"), "PNG")
    assert Algorithm.PDQ not in hash_image(data, GuardLimits()).hashes
    asked = hash_image(data, GuardLimits(), (Algorithm.PHASH, Algorithm.PDQ)).hashes
    assert list(asked) == [Algorithm.PHASH, Algorithm.PDQ]
    assert asked[Algorithm.PDQ] == int(GOLDEN["chelsea"][0], 16)


def test_a_very_long_picture_is_hashed_with_bounded_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A few KB of PNG can declare 1,000,000 x 1 pixels (within the pixel cap); PDQ's weights
    # are 64 x side floats per axis, which took 1.5 GB at that size before the bound.
    from pipeline.core import pdq

    built: list[int] = []
    original = pdq._axis_operator

    def recording(full: int, reduced: int) -> np.ndarray:  # type: ignore[type-arg]
        built.append(full)
        return original(full, reduced)

    monkeypatch.setattr(pdq, "_axis_operator", recording)
    long = Image.fromarray((np.arange(1_000_000) % 251).astype(np.uint8).reshape(1, -1), "L")
    value, quality = pdq.pdq_hash(long)
    assert 0 <= value < 1 << 256
    assert 0 <= quality <= 100
    assert built
    assert max(built) <= pdq.PDQ_MAX_SIDE
