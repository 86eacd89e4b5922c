"""Perceptual hashes of the eight dihedral orientations of one image, from one reduced decode.

Owns the :class:`Orientation` vocabulary (identity, mirror, vertical flip, quarter turns,
transpose, anti-transpose: bounded, snake_case, fit for a verdict field and a metric label), how
each orientation's pHash and dHash is derived from the already-decoded image without decoding
or turning it again, and :class:`OrientationHashes`, the small frozen mapping that carries them.

``hashes[o]`` is the hash the upload would have if it were turned by ``o`` first, that is
``imagehash.phash(orient(image, o))`` (or ``dhash``) read as an int the way
:mod:`pipeline.core.hashing` reads it. The identity value is bit-for-bit today's production
hash.

Every orientation is three independent steps taken in this order: transpose (swap axes), reverse
the rows (top <-> bottom), reverse the columns (left <-> right). The 2^3 combinations are exactly
the eight symmetries of a rectangle, and each step has a cheap counterpart in both hashes' own
domains:

* pHash (DCT-II of a 32x32 resize): transposing the pixels transposes the coefficients, and
  reversing a length-N axis multiplies coefficient k of that axis by (-1)^k. So one resize and
  one DCT serve all eight; each orientation then takes its own median, as imagehash does,
  because the sign flips change which coefficients lie above it. The algebra is exact (up to
  float rounding where coefficients tie the median in exact arithmetic, which decides those bits
  in imagehash too), and so is Pillow's resize under reversals, so mirror, flip and half turn
  equal hashing the turned picture bit for bit. Pillow's resize does not commute with a
  transpose (two 8-bit passes, the order picked from the picture's shape), so the four
  transposing orientations can differ from hashing the turned picture by a pair or two of bits
  (scikit-image's photos: mean <= 0.3, max 4; drawings: max 8). A turned, re-encoded copy still
  lands within half the default threshold of the listed original (``test_orientation.py``).
* dHash (left-right neighbour comparisons on a 9-wide, 8-tall resize): reversals are reversals
  of that grid; the transposing four come from one more tiny resize of the already-reduced
  picture, transposed (see :func:`dhash_orientations`). All eight are exact.

Must not: decode bytes, read files, log, read the clock or the environment, or match anything
(matching across orientations belongs to :mod:`pipeline.core.matching`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from PIL import Image

# imagehash.phash runs exactly this DCT (scipy.fftpack, imagehash's own dependency). numpy's
# matrix-product DCT differs from it by ~1e-11, which is harmless for photos but not for flat or
# gradient pictures: there scipy returns exact zeros that sit on the median, numpy returns noise
# around it, and 26-31 of 64 bits flip. Using the same routine keeps the identity hash exact.
from scipy import fftpack  # type: ignore[import-untyped]

from pipeline.core.types import BASELINE_PERCEPTUAL, Algorithm

#: imagehash's defaults: an 8x8 hash; pHash keeps the low 8x8 of a 32x32 DCT.
_HASH_SIDE = 8
_PHASH_SIDE = _HASH_SIDE * 4
#: imagehash's ``ANTIALIAS``; any other filter would not reproduce its hashes.
_RESAMPLE = Image.Resampling.LANCZOS

#: (-1)^k for k = 0..7: reversing an axis of the pixels flips the sign of its odd frequencies.
_ALTERNATING = (-1.0) ** np.arange(_HASH_SIDE, dtype=np.float64)
_SIGN_PER_ROW = _ALTERNATING[:, np.newaxis]
_SIGN_PER_COLUMN = _ALTERNATING[np.newaxis, :]


class Orientation(enum.StrEnum):
    """One of the eight ways to turn or flip a picture without distorting it.

    Rotations are counter-clockwise, as Pillow's ``Image.Transpose.ROTATE_90`` and the usual
    mathematical convention turn. Values are stable and bounded.
    """

    IDENTITY = "identity"
    MIRROR = "mirror"  # left <-> right
    VERTICAL_FLIP = "vertical_flip"  # top <-> bottom
    ROTATE_180 = "rotate_180"
    TRANSPOSE = "transpose"  # across the top-left to bottom-right diagonal
    ROTATE_90 = "rotate_90"
    ROTATE_270 = "rotate_270"
    ANTI_TRANSPOSE = "anti_transpose"  # across the top-right to bottom-left diagonal

    @property
    def inverse(self) -> Orientation:
        """The orientation that undoes this one (only the quarter turns are not their own)."""
        return _INVERSE.get(self, self)

    @property
    def pil_method(self) -> Image.Transpose | None:
        """Pillow's name for this transform (None for the identity), for turning real images."""
        return _PIL_METHOD.get(self)


#: Every orientation, identity first: the order of :class:`OrientationHashes` and of tie-breaks.
ORIENTATIONS: tuple[Orientation, ...] = tuple(Orientation)

_INVERSE = {
    Orientation.ROTATE_90: Orientation.ROTATE_270,
    Orientation.ROTATE_270: Orientation.ROTATE_90,
}

_PIL_METHOD = {
    Orientation.MIRROR: Image.Transpose.FLIP_LEFT_RIGHT,
    Orientation.VERTICAL_FLIP: Image.Transpose.FLIP_TOP_BOTTOM,
    Orientation.ROTATE_180: Image.Transpose.ROTATE_180,
    Orientation.TRANSPOSE: Image.Transpose.TRANSPOSE,
    Orientation.ROTATE_90: Image.Transpose.ROTATE_90,
    Orientation.ROTATE_270: Image.Transpose.ROTATE_270,
    Orientation.ANTI_TRANSPOSE: Image.Transpose.TRANSVERSE,
}


class _Steps(NamedTuple):
    """An orientation as the three independent steps, applied in field order."""

    transposed: bool
    rows_reversed: bool  # top <-> bottom
    columns_reversed: bool  # left <-> right


# With numpy's (row, column) indexing: a counter-clockwise quarter turn is np.rot90(a) ==
# a.T[::-1, :], the clockwise one a.T[:, ::-1], the anti-transpose a.T[::-1, ::-1].
_STEPS: dict[Orientation, _Steps] = {
    Orientation.IDENTITY: _Steps(transposed=False, rows_reversed=False, columns_reversed=False),
    Orientation.MIRROR: _Steps(transposed=False, rows_reversed=False, columns_reversed=True),
    Orientation.VERTICAL_FLIP: _Steps(transposed=False, rows_reversed=True, columns_reversed=False),
    Orientation.ROTATE_180: _Steps(transposed=False, rows_reversed=True, columns_reversed=True),
    Orientation.TRANSPOSE: _Steps(transposed=True, rows_reversed=False, columns_reversed=False),
    Orientation.ROTATE_90: _Steps(transposed=True, rows_reversed=True, columns_reversed=False),
    Orientation.ROTATE_270: _Steps(transposed=True, rows_reversed=False, columns_reversed=True),
    Orientation.ANTI_TRANSPOSE: _Steps(transposed=True, rows_reversed=True, columns_reversed=True),
}

_POSITION = {orientation: position for position, orientation in enumerate(ORIENTATIONS)}


@dataclass(frozen=True, slots=True)
class UprightHash:
    """One perceptual hash computed upright only: the hashes of a view that is searched upright
    only (a reframed view, :mod:`pipeline.core.reframe`), where the seven turned values would
    cost hashing time and be searched by nobody. Offers what the matcher reads of
    :class:`OrientationHashes`: ``identity`` and ``distinct()``."""

    identity: int

    def distinct(self) -> dict[int, Orientation]:
        """The one value, upright."""
        return {self.identity: Orientation.IDENTITY}


@dataclass(frozen=True, slots=True)
class OrientationHashes(Mapping[Orientation, int]):
    """One perceptual hash per :class:`Orientation`: a read-only mapping orientation -> int.

    ``hashes`` holds the values in :data:`ORIENTATIONS` order. Immutable, hashable and picklable
    (it crosses the hashing process pool). Raises ValueError unless there is one non-negative
    int per orientation.
    """

    hashes: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.hashes) != len(ORIENTATIONS) or any(value < 0 for value in self.hashes):
            raise ValueError(
                f"need {len(ORIENTATIONS)} non-negative hashes, one per orientation,"
                f" got {self.hashes!r}"
            )

    def __getitem__(self, orientation: Orientation) -> int:
        return self.hashes[_POSITION[orientation]]

    def __iter__(self) -> Iterator[Orientation]:
        return iter(ORIENTATIONS)

    def __len__(self) -> int:
        return len(ORIENTATIONS)

    @property
    def identity(self) -> int:
        """The upright hash: equal to what :mod:`pipeline.core.hashing` computes."""
        return self.hashes[0]

    def distinct(self) -> dict[int, Orientation]:
        """Each distinct hash value once, with the first orientation (identity first) that has
        it. Symmetric pictures share values; searching each only once saves index queries."""
        first: dict[int, Orientation] = {}
        for orientation, value in zip(ORIENTATIONS, self.hashes, strict=True):
            first.setdefault(value, orientation)
        return first

    def closest(self, value: int) -> tuple[Orientation, int]:
        """The orientation whose hash is nearest ``value`` and that Hamming distance in bits.

        Ties go to the earliest orientation, so an upright match is reported as ``identity``.
        """
        distances = [(mine ^ value).bit_count() for mine in self.hashes]
        best = min(range(len(distances)), key=distances.__getitem__)
        return ORIENTATIONS[best], distances[best]


def orient(image: Image.Image, orientation: Orientation) -> Image.Image:
    """``image`` turned by ``orientation`` (a new image; the identity returns a copy).

    The reference the derived hashes are held to; the hashing path itself never calls it.
    """
    method = orientation.pil_method
    return image.copy() if method is None else image.transpose(method)


def phash_orientations(image: Image.Image) -> OrientationHashes:
    """64-bit pHash of ``image`` (any mode) in every orientation, from one resize and one DCT.

    Each value is laid out as :func:`pipeline.core.hashing.bits_to_int` lays out imagehash's
    bits (first bit most significant). The identity, mirror, vertical flip and half turn equal
    ``imagehash.phash`` of the turned image exactly; the transposing four equal it up to
    resampling rounding (see the module docstring). Raises what Pillow raises for an image it
    cannot resize (none for the guard's decoded images).
    """
    pixels = np.asarray(_grayscale(image).resize((_PHASH_SIDE, _PHASH_SIDE), _RESAMPLE))
    return phash_orientations_of(
        np.asarray(fftpack.dct(fftpack.dct(pixels, axis=0), axis=1), np.float64)
    )


def phash_orientations_of(coefficients: npt.NDArray[np.float64]) -> OrientationHashes:
    """:func:`phash_orientations` from the 32x32 DCT-II of the picture's 32x32 thumbnail
    (:func:`pipeline.core.detail.thumbnail_dct`), for a caller that needs it for more."""
    low = coefficients[:_HASH_SIDE, :_HASH_SIDE]
    blocks = np.stack([_turn_coefficients(low, _STEPS[o]) for o in ORIENTATIONS])
    flat = blocks.reshape(len(ORIENTATIONS), -1)
    # Each orientation its own median: sign flips move coefficients across it.
    bits = flat > np.median(flat, axis=1, keepdims=True)
    return OrientationHashes(_pack_each(bits))


def dhash_orientations(image: Image.Image) -> OrientationHashes:
    """64-bit dHash of ``image`` (any mode) in every orientation, from two tiny resizes.

    Laid out like :func:`phash_orientations`; every value equals ``imagehash.dhash`` of the
    turned image exactly.
    """
    gray = _grayscale(image)
    # imagehash's grid: 9 wide, 8 tall (numpy: 8 rows of 9), compared left to right. Mirror and
    # flips are reversals of it: Pillow's resampling weights are symmetric, so reversing the
    # picture first gives exactly the reversed grid (checked on 3,000 random sizes).
    upright = np.asarray(gray.resize((_HASH_SIDE + 1, _HASH_SIDE), _RESAMPLE))
    # A quarter turn makes the picture's height its width, so its grid samples the upright
    # picture 8 wide and 9 tall: the 8-tall grid above cannot give a ninth row without a second
    # interpolation, hence one more tiny resize of the already-reduced image (no decode). It is
    # taken from the transposed picture, not as ``gray.resize((8, 9))``: Pillow resamples in two
    # 8-bit passes, clipping Lanczos overshoot in between, and picks their order from the
    # picture's shape, so only resizing the transposed pixels reproduces a turned upload's hash
    # exactly (``gray.resize((8, 9))`` moved up to 6 of 64 bits on scikit-image's pictures).
    transposed = np.asarray(
        gray.transpose(Image.Transpose.TRANSPOSE).resize((_HASH_SIDE + 1, _HASH_SIDE), _RESAMPLE)
    )
    rows = []
    for orientation in ORIENTATIONS:
        steps = _STEPS[orientation]
        grid = _reverse(transposed if steps.transposed else upright, steps)
        # Compare the turned grid's own neighbours, not negated identity bits: where two
        # neighbours are equal both directions read 0, as they do in imagehash.
        rows.append((grid[:, 1:] > grid[:, :-1]).ravel())
    return OrientationHashes(_pack_each(np.stack(rows)))


_ORIENTATION_HASHERS = {
    Algorithm.PHASH: phash_orientations,
    Algorithm.DHASH: dhash_orientations,
}


def oriented_perceptual_hashes(
    image: Image.Image, algorithms: Iterable[Algorithm] = BASELINE_PERCEPTUAL
) -> dict[Algorithm, OrientationHashes]:
    """Every orientation of pHash and dHash among ``algorithms`` (others are skipped), in the
    order given: the drop-in counterpart of :func:`pipeline.core.hashing.perceptual_hashes` for
    ``DecodedImage.image``. PDQ's come with its quality and need the picture's full size:
    :func:`pipeline.core.hashing.decoded_pdq`."""
    gray = _grayscale(image)
    return {
        alg: _ORIENTATION_HASHERS[alg](gray) for alg in algorithms if alg in _ORIENTATION_HASHERS
    }


def _grayscale(image: Image.Image) -> Image.Image:
    # imagehash converts to "L" on every call; for an "L" image that is only a copy.
    return image if image.mode == "L" else image.convert("L")


def _turn_coefficients(low: npt.NDArray[np.float64], steps: _Steps) -> npt.NDArray[np.float64]:
    """The low-frequency DCT block of the picture turned by ``steps``, from the upright one."""
    block = low.T if steps.transposed else low
    if steps.rows_reversed:
        block = block * _SIGN_PER_ROW
    if steps.columns_reversed:
        block = block * _SIGN_PER_COLUMN
    return block


def _reverse(grid: npt.NDArray[np.uint8], steps: _Steps) -> npt.NDArray[np.uint8]:
    if steps.rows_reversed:
        grid = grid[::-1, :]
    if steps.columns_reversed:
        grid = grid[:, ::-1]
    return grid


def _pack_each(bits: npt.NDArray[np.bool_]) -> tuple[int, ...]:
    """One int per row of 64 bits, first bit most significant (``bits_to_int``'s order)."""
    packed = np.packbits(bits, axis=1)
    return tuple(int.from_bytes(row.tobytes(), "big") for row in packed)
