"""How much picture there is to hash: the low-information gate and low-information hashes.

Owns three rules (measured by ``pipeline bench detail`` and ``pipeline bench quality``; figures
in the README's "Low-information pictures" section):

* :func:`is_low_information` (an upload or a region of one): its **pHash is undecided**. pHash
  sets the bits of the 64 low DCT coefficients of a 32x32 thumbnail that lie above their
  median. A bit is *decided* when its coefficient lies farther than :data:`DECIDED_MARGIN` from
  that median: four times the rounding noise of the 8-bit thumbnail the DCT is taken of, so
  re-encoding, resizing or noise does not flip it. A photo or a drawing decides (nearly) all
  64; a uniform, gradient, vignette or stripe picture decides the few coefficients its pattern
  has and leaves the rest to noise, so its pHash is a pattern plus coin flips. A view is
  low-information when fewer than :data:`MIN_DECIDED_BITS` bits are decided, or when the
  coefficients tie at the median (:func:`phash_ties`: sharp stripes, checkerboards, flat
  areas). Such a view is not matched perceptually at all (pHash, dHash, PDQ).

  The rule looks only at what pHash itself encodes, so it cannot be switched on over a picture
  whose pHash still carries it: a texture beyond the 8x8 low frequencies (stripes, a
  checkerboard, fine noise) never reaches them, and a texture within them touches a few
  coefficients, which moves neither the median nor the count of the others. Only taking the
  picture's own low frequencies away (cutting its contrast to a few percent, blurring it to a
  blob) undecides its pHash, and that is what "too little to match" means. The rule it
  replaces (the share of edge energy outside the 16 strongest frequencies) could be driven to
  zero by adding a strong near-Nyquist stripe pattern to a listed photo.
* :func:`dhash_transitions` (any dHash value): how many neighbouring bits differ. A smooth
  picture (gradient, vignette, soft shapes, a sky) compares the same way along whole rows, so
  its dHash is long runs of equal bits, and such hashes crowd together: unrelated smooth
  pictures lie within a few bits of each other. The matcher lets a dHash match count on its own
  only when both hashes have at least :data:`DHASH_MIN_TRANSITIONS`
  (:mod:`pipeline.core.matching`).
* :func:`low_information_hash` (a hash-list entry). A list entry whose hash is the hash of such
  a picture (blank, gradient, stripes, or a photo crop of sky) lies near the patterns those
  pictures produce; it is flagged when loaded, with a warning and a metric, for the list's
  owner to check.

Must not: decode bytes, read files, log, read the clock or the environment, or match anything
(what a gated view or a flagged entry may still do is decided where matching happens).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

# The DCT imagehash.phash runs (see pipeline.core.orientation for why not numpy's).
from scipy import fftpack  # type: ignore[import-untyped]

from pipeline.core.types import Algorithm

#: Side of the thumbnail pHash is computed on (its own 32x32 resize).
DETAIL_SIDE = 32
#: imagehash's resampling filter, so the thumbnail is pixel for pixel pHash's.
_RESAMPLE = Image.Resampling.LANCZOS
#: pHash's block of low frequencies: 8x8 coefficients, 64 bits.
_HASH_SIDE = 8
#: The rounding noise of an 8-bit thumbnail, in grey levels: each pixel is off by up to half a
#: level (uniform, standard deviation 1/sqrt(12)), and so is each coefficient of its
#: orthonormal DCT. Nothing finer survives into a pHash.
ROUNDING_NOISE = 1 / math.sqrt(12)
#: A pHash bit is decided when its coefficient lies farther than this from the median of the
#: 64, in grey levels of the orthonormal DCT (1.15).
DECIDED_MARGIN = 4 * ROUNDING_NOISE
#: Fewer decided bits than this and the pHash is the hash of a pattern plus noise. Measured
#: (``pipeline bench detail``): uniform, gradient, centred vignette (with grain the highest),
#: spotlight and sine-stripe pictures decide at most 34 bits; scikit-image's photos and
#: drawings (whole, cropped, at JPEG q10, blurred, at half contrast) at least 45, Debian's
#: wallpapers at least 54, and none of the photos drops under 40 with a stripe, checkerboard or
#: noise overlay while its pHash still matches. In distances, the 40th-largest distance from
#: the median (what this count compares with the margin) is at most 0.85 for the patterns and
#: at least 1.58 for the photos, overlaid or not: the margin (1.15) sits near the middle of
#: that gap on a log scale.
MIN_DECIDED_BITS = 40
#: pHash of a photo or drawing has exactly half its 64 bits set (its median split); this many
#: bits off half means the coefficients tie at the median (see :func:`phash_ties`).
PHASH_TIE_MARGIN = 6


def thumbnail_dct(image: Image.Image) -> npt.NDArray[np.float64]:
    """The 32x32 DCT-II of ``image``'s grayscale 32x32 LANCZOS thumbnail: exactly the
    coefficients imagehash's pHash takes its low 8x8 from (a caller that already has them,
    like :func:`pipeline.core.orientation.phash_orientations`, may pass those instead)."""
    gray = image if image.mode == "L" else image.convert("L")
    pixels = np.asarray(gray.resize((DETAIL_SIDE, DETAIL_SIDE), _RESAMPLE), dtype=np.float64)
    return np.asarray(fftpack.dct(fftpack.dct(pixels, axis=0), axis=1), dtype=np.float64)


def _low_block(coefficients: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], float]:
    """pHash's 64 coefficients, sorted, and their median (np.median's, without its overhead)."""
    low = np.sort(coefficients[:_HASH_SIDE, :_HASH_SIDE], axis=None)
    half = low.size // 2
    return low, float((low[half - 1] + low[half]) / 2)


def decided_bits_of(coefficients: npt.NDArray[np.float64]) -> int:
    """How many of pHash's 64 bits lie farther than :data:`DECIDED_MARGIN` from the median
    split, given the thumbnail's DCT (:func:`thumbnail_dct`, scipy's unnormalised DCT-II)."""
    low, median = _low_block(coefficients)
    # scipy's unnormalised 2-D DCT-II is 2N times the orthonormal one (AC terms).
    return int(np.count_nonzero(np.abs(low - median) > DECIDED_MARGIN * 2 * DETAIL_SIDE))


def decided_bits(image: Image.Image) -> int:
    """:func:`decided_bits_of` ``image`` (any mode; the guard's reduced decode is enough)."""
    return decided_bits_of(thumbnail_dct(image))


def phash_ties(coefficients: npt.NDArray[np.float64]) -> int:
    """How far pHash's median split of these coefficients is from half its bits (0 for every
    photo and drawing measured; large for pictures whose coefficients tie at the median)."""
    low, median = _low_block(coefficients)
    above = low.size - int(np.searchsorted(low, median, side="right"))
    return abs(above - low.size // 2)


def is_low_information_dct(coefficients: npt.NDArray[np.float64]) -> bool:
    """:func:`is_low_information` from a thumbnail's DCT (:func:`thumbnail_dct`)."""
    return (
        phash_ties(coefficients) >= PHASH_TIE_MARGIN
        or decided_bits_of(coefficients) < MIN_DECIDED_BITS
    )


def is_low_information(image: Image.Image) -> bool:
    """True when ``image`` (an upload's reduced decode, or a region of it) has too little for a
    perceptual match to mean anything: its pHash decides fewer than :data:`MIN_DECIDED_BITS`
    bits, or its coefficients tie (see the module docstring)."""
    return is_low_information_dct(thumbnail_dct(image))


# -- dHash ----------------------------------------------------------------------------------------

#: A dHash with fewer neighbouring bits that differ than this is the hash of a smooth picture.
#: Measured over the photo corpora of ``pipeline bench quality``: every one of 471 photos and
#: drawings (Scratch's backgrounds, Tux Paint's photos and stamps) has at least 16 (median 44;
#: a random hash has 56 of the 112); gradients have 0, vignettes 8, soft-shaded wallpapers 3-15
#: (one in ten wallpapers), a photographed page lit from one side 0.
DHASH_MIN_TRANSITIONS = 16


#: Bit masks of a 64-bit grid laid out row by row, first bit most significant: the pairs of
#: horizontal neighbours (not across a row's end) and of vertical ones.
_ACROSS_PAIRS = 0x7F7F7F7F7F7F7F7F
_DOWN_PAIRS = 0x00FFFFFFFFFFFFFF


def dhash_transitions(value: int) -> int:
    """How many horizontally or vertically neighbouring bits differ in ``value``'s 8x8 grid (a
    dHash as imagehash lays it out, first bit top-left): 0-112."""
    across = (value ^ (value >> 1)) & _ACROSS_PAIRS
    down = (value ^ (value >> 8)) & _DOWN_PAIRS
    return across.bit_count() + down.bit_count()


# -- list entries -------------------------------------------------------------------------------

#: A dHash with at most this many bits set (or unset) is the hash of a uniform picture or a
#: gradient (every neighbour comparison the same way) or within a few bits of one.
DHASH_EXTREME_BITS = 4
#: A perceptual hash whose rows (or columns) repeat with period 1 or 2 to within this many
#: bits is a stripe, vignette or checkerboard pattern (``f0f0f0f0f0f0f0f0``, ``a55aa55a...``).
#: Photos measured were >= 6 bits from any such pattern for pHash; dHash of photo crops
#: reaches 0 (a crop of sky is a gradient), and is rightly flagged.
PERIODIC_BITS = 2


def _bit_grids(algorithm: Algorithm, values: Sequence[int]) -> npt.NDArray[np.uint8]:
    """The hashes as (n, side, side) bit grids, first bit top-left (imagehash's layout)."""
    width = algorithm.bits // 8
    side = math.isqrt(algorithm.bits)
    if width == 8:
        raw = np.array(values, dtype=np.uint64).astype(">u8").view(np.uint8)
    else:
        raw = np.frombuffer(b"".join(v.to_bytes(width, "big") for v in values), dtype=np.uint8)
    return np.unpackbits(raw.reshape(len(values), width), axis=1).reshape(-1, side, side)


def _distance_to_periodic_rows(grids: npt.NDArray[np.uint8], period: int) -> npt.NDArray[np.int64]:
    """Per grid, the bits to flip for its rows to repeat with ``period``."""
    distance = np.zeros(grids.shape[0], dtype=np.int64)
    for phase in range(period):
        rows = grids[:, phase::period, :]
        ones = rows.sum(axis=1, dtype=np.int64)
        distance += np.minimum(ones, rows.shape[1] - ones).sum(axis=1)
    return distance


def pattern_distances(algorithm: Algorithm, values: Sequence[int]) -> npt.NDArray[np.int64]:
    """Per value, the bits between it and the nearest hash whose rows, or columns, repeat with
    period 1 or 2 (the hashes of stripes, gradients, vignettes, checkerboards)."""
    grids = _bit_grids(algorithm, values)
    transposed = grids.transpose(0, 2, 1)
    distances = [_distance_to_periodic_rows(g, p) for g in (grids, transposed) for p in (1, 2)]
    return np.asarray(np.min(distances, axis=0), dtype=np.int64)


def low_information_hashes(algorithm: Algorithm, values: Sequence[int]) -> npt.NDArray[np.bool_]:
    """:func:`low_information_hash` of many values at once (a list load: ~8 us per value)."""
    if not algorithm.is_perceptual or not values:
        return np.zeros(len(values), dtype=np.bool_)
    bits = algorithm.bits
    if bits == 64:  # the bulk case (a list load): no Python work per value
        words = np.array(values, dtype=np.uint64)
        set_bits = np.bitwise_count(words).astype(np.int64)
    else:
        set_bits = np.array([v.bit_count() for v in values], dtype=np.int64)
    if algorithm is Algorithm.DHASH:
        extreme = np.minimum(set_bits, bits - set_bits) <= DHASH_EXTREME_BITS
    else:
        extreme = np.abs(set_bits - bits // 2) >= PHASH_TIE_MARGIN * bits // 64
    return np.asarray(extreme | (pattern_distances(algorithm, values) <= PERIODIC_BITS))


def low_information_hash(algorithm: Algorithm, value: int) -> bool:
    """True when a list entry's perceptual hash is the hash of a low-information picture.

    pHash (and any other median-split hash) with a set-bit count off half by the tie margin
    (scaled to its width: 6 of 64 bits), dHash with <= :data:`DHASH_EXTREME_BITS` bits set or
    unset, and either whose rows or columns repeat with period 1 or 2 to within
    :data:`PERIODIC_BITS`. Exact digests are never low-information."""
    return bool(low_information_hashes(algorithm, [value])[0])
