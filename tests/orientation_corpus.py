"""Uploads for the orientation tests, and how far derived orientation hashes drift.

The pictures are scikit-image's bundled photos and drawings, encoded and decoded in memory as
production decodes uploads (:func:`pipeline.core.guard.decode`: JPEG at a reduced DCT scale,
PNG in full); nothing is written to disk. The reference for an orientation is plain imagehash
on the decoded picture really turned in memory by Pillow: what the pipeline's identity path
computes for that picture turned.

``python -m tests.orientation_corpus`` prints the per-orientation drift table.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import imagehash
from PIL import Image

from pipeline.core.guard import GuardLimits, decode
from pipeline.core.hashing import bits_to_int
from pipeline.core.orientation import ORIENTATIONS, Orientation, orient, oriented_perceptual_hashes
from pipeline.core.types import BASELINE_PERCEPTUAL, Algorithm
from tests.imagegen import encode, sample_photo

#: Photographs among scikit-image's bundled pictures (no download needed).
PHOTOS = (
    "astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "grass",
    "gravel", "hubble_deep_field", "immunohistochemistry", "microaneurysms", "moon", "retina",
    "rocket",
)  # fmt: skip
#: Bundled drawings and test charts: flat areas and hard edges, the hard case for resampling.
DRAWINGS = ("checkerboard", "colorwheel", "logo", "page", "text")

#: Upload shapes: the picture as bundled (JPEG, and PNG for the full-decode path), a landscape
#: and a portrait 1080p JPEG, and an odd-sized one. Each lands at a different reduced size.
_VARIANTS: tuple[tuple[str, tuple[int, int] | None, str], ...] = (
    ("jpeg", None, "JPEG"),
    ("png", None, "PNG"),
    ("1080p", (1920, 1080), "JPEG"),
    ("1080p-portrait", (1080, 1920), "JPEG"),
    ("333x517", (333, 517), "JPEG"),
)

_IMAGEHASH: dict[Algorithm, Callable[[Image.Image], imagehash.ImageHash]] = {
    Algorithm.PHASH: imagehash.phash,
    Algorithm.DHASH: imagehash.dhash,
}

LIMITS = GuardLimits()


def decoded_upload(image: Image.Image, fmt: str = "JPEG") -> Image.Image:
    """``image`` encoded as ``fmt`` and decoded by the guard, as production sees an upload."""
    return decode(encode(image, fmt), LIMITS).image


@functools.cache
def uploads(names: tuple[str, ...]) -> tuple[tuple[str, Image.Image], ...]:
    """(label, decoded picture) for every bundled picture in ``names`` and every variant."""
    found = []
    for name in names:
        picture = sample_photo(name)
        for label, size, fmt in _VARIANTS:
            shaped = picture if size is None else picture.resize(size, Image.Resampling.BICUBIC)
            found.append((f"{name}-{label}", decoded_upload(shaped, fmt)))
    return tuple(found)


def reference_hash(algorithm: Algorithm, image: Image.Image, orientation: Orientation) -> int:
    """Plain imagehash of ``image`` really turned by ``orientation``, as the pipeline reads it."""
    return bits_to_int(_IMAGEHASH[algorithm](orient(image, orientation)).hash)


@dataclass(frozen=True, slots=True)
class Drift:
    """Bits between derived and reference hashes for one algorithm and orientation."""

    algorithm: Algorithm
    orientation: Orientation
    bits: tuple[int, ...]  # one per upload

    @property
    def max_bits(self) -> int:
        return max(self.bits)

    @property
    def mean_bits(self) -> float:
        return statistics.fmean(self.bits)


def drift(
    pictures: tuple[tuple[str, Image.Image], ...],
) -> dict[tuple[Algorithm, Orientation], Drift]:
    """Derived-vs-reference distance for every algorithm, orientation and picture."""
    bits: dict[tuple[Algorithm, Orientation], list[int]] = {
        (alg, o): [] for alg in BASELINE_PERCEPTUAL for o in ORIENTATIONS
    }
    for _, image in pictures:
        derived = oriented_perceptual_hashes(image)
        for (alg, o), found in bits.items():
            found.append((derived[alg][o] ^ reference_hash(alg, image, o)).bit_count())
    return {key: Drift(*key, tuple(found)) for key, found in bits.items()}


def _print_table() -> None:
    for title, names in (("photos", PHOTOS), ("drawings", DRAWINGS)):
        pictures = uploads(names)
        print(f"{title}: {len(pictures)} decoded uploads")
        print(f"{'orientation':<16}{'pHash max':>10}{'mean':>8}{'dHash max':>11}{'mean':>8}")
        table = drift(pictures)
        for o in ORIENTATIONS:
            p, d = table[(Algorithm.PHASH, o)], table[(Algorithm.DHASH, o)]
            print(f"{o:<16}{p.max_bits:>10}{p.mean_bits:>8.3f}{d.max_bits:>11}{d.mean_bits:>8.3f}")


if __name__ == "__main__":
    _print_table()
