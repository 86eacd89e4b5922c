"""How much picture there is to hash: the low-information gate and low-information list hashes.

Owns two rules (measured by ``pipeline bench detail``; figures in the README's "Low-information
pictures" section):

* :func:`is_low_information` (an upload or a region of one). A near-uniform, gradient, vignette,
  few-frequency stripe or blank-ish picture has almost nothing for a perceptual hash to encode:
  its dHash collapses to a pattern (all zeros, all ones, ``f0f0f0f0f0f0f0f0``, ...) and its pHash
  to a handful of set bits, so it sits within the match radius of whatever list entry happens to
  hash near that pattern, and of every other such picture. Such a picture must not match
  anything perceptually. It is low-information when either
  - its **detail score** (:func:`detail_score`) is below :data:`LOW_DETAIL_THRESHOLD`: the share
    of the picture's edge energy lying outside its :data:`STRONGEST_FREQUENCIES` strongest
    spatial frequencies, on the same 32x32 thumbnail pHash uses. A photo or a drawing spreads
    its edges over hundreds of frequencies; a gradient or vignette has almost all of it in one
    or two, a sine stripe in one, a uniform picture none (JPEG and sensor noise stay below a
    noise floor); or
  - its **pHash is degenerate**: pHash sets the bits of the 64 low DCT coefficients above their
    median, which is exactly 32 bits for every photo and drawing measured; a count off 32 by
    :data:`PHASH_TIE_MARGIN` or more means many coefficients tie at the median, i.e. the
    picture is made of a few exact symmetries (sharp checkerboards, sharp stripes, flat areas).
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

#: Side of the thumbnail the score is computed on: pHash's own 32x32 resize.
DETAIL_SIDE = 32
#: imagehash's resampling filter, so the thumbnail is pixel for pixel pHash's.
_RESAMPLE = Image.Resampling.LANCZOS
#: Edge energy counted as structure only outside this many strongest frequencies. A gradient
#: or a vignette needs one to a few, a sine stripe one, a photo hundreds.
STRONGEST_FREQUENCIES = 16
#: Below this detail score (percent) a picture is low-information. Measured (``pipeline bench
#: detail``): gradients, vignettes, spotlights, uniform pictures (with JPEG or sensor noise),
#: sine stripes and two-tone splits score <= 4.2 except sine stripes of a 3-pixel thumbnail
#: period (<= 7.4); every scikit-image photo and drawing, whole or cropped, edited or not,
#: scores >= 10 (the scikit-image colour wheel and checkerboard aside, gated on purpose). Half
#: the lowest photo, not the last point above the patterns.
LOW_DETAIL_THRESHOLD = 5.0
#: A frequency carries structure only when it holds more than this share of the thumbnail's
#: variance, in grey levels squared: three times what white noise of 2 grey levels (JPEG at
#: quality 75, sensor noise) puts in each of the 1024 coefficients.
NOISE_FLOOR = 3 * 2.0**2 / DETAIL_SIDE**2
#: pHash of a photo or drawing has exactly half its 64 bits set (its median split); this many
#: bits off half means the coefficients tie at the median (see the module docstring).
PHASH_TIE_MARGIN = 6

_HASH_SIDE = 8
_FREQUENCY_SQUARED = np.add.outer(
    np.arange(DETAIL_SIDE, dtype=np.float64) ** 2, np.arange(DETAIL_SIDE, dtype=np.float64) ** 2
)


def thumbnail_dct(image: Image.Image) -> npt.NDArray[np.float64]:
    """The 32x32 DCT-II of ``image``'s grayscale 32x32 LANCZOS thumbnail: exactly the
    coefficients imagehash's pHash takes its low 8x8 from (a caller that already has them,
    like :func:`pipeline.core.orientation.phash_orientations`, may pass those instead)."""
    gray = image if image.mode == "L" else image.convert("L")
    pixels = np.asarray(gray.resize((DETAIL_SIDE, DETAIL_SIDE), _RESAMPLE), dtype=np.float64)
    return np.asarray(fftpack.dct(fftpack.dct(pixels, axis=0), axis=1), dtype=np.float64)


def detail_score_of(coefficients: npt.NDArray[np.float64]) -> float:
    """The detail score (0-100) of a thumbnail's 32x32 DCT (:func:`thumbnail_dct`).

    Each AC coefficient's energy is rescaled to its share of the thumbnail's variance (grey
    levels squared; by Parseval the DC term alone is the mean), coefficients at or under
    :data:`NOISE_FLOOR` are dropped, and the rest are weighted by their squared frequency (the
    energy of the picture's edges rather than of its shading, so a photo's 1/f spectrum comes
    out flat and its many frequencies count). The score is the percentage of that edge energy
    outside the :data:`STRONGEST_FREQUENCIES` largest; 0 for a picture with none."""
    energy = np.square(coefficients)
    energy[0, 0] = 0.0
    # The unnormalised DCT-II (scipy's, as imagehash calls it) carries 4 N^4 times the
    # thumbnail's variance in its AC terms: this makes each a share of it in grey levels^2.
    share = energy / (4.0 * DETAIL_SIDE**4)
    edges = np.where(share > NOISE_FLOOR, share, 0.0) * _FREQUENCY_SQUARED
    edge_total = float(edges.sum())
    if edge_total <= 0.0:
        return 0.0
    strongest = np.partition(edges.ravel(), -STRONGEST_FREQUENCIES)[-STRONGEST_FREQUENCIES:]
    return 100.0 * (1.0 - float(strongest.sum()) / edge_total)


def phash_ties(coefficients: npt.NDArray[np.float64]) -> int:
    """How far pHash's median split of these coefficients is from half its bits (0 for every
    photo and drawing measured; large for pictures whose coefficients tie at the median)."""
    low = np.sort(coefficients[:_HASH_SIDE, :_HASH_SIDE], axis=None)
    half = low.size // 2
    median = (low[half - 1] + low[half]) / 2  # np.median's, without its overhead
    above = low.size - int(np.searchsorted(low, median, side="right"))
    return abs(above - half)


def is_low_information_dct(coefficients: npt.NDArray[np.float64]) -> bool:
    """:func:`is_low_information` from a thumbnail's DCT (:func:`thumbnail_dct`)."""
    return (
        detail_score_of(coefficients) < LOW_DETAIL_THRESHOLD
        or phash_ties(coefficients) >= PHASH_TIE_MARGIN
    )


def detail_score(image: Image.Image) -> float:
    """The detail score (0-100) of ``image`` (any mode; the guard's reduced decode is enough):
    see :func:`detail_score_of`."""
    return detail_score_of(thumbnail_dct(image))


def is_low_information(image: Image.Image) -> bool:
    """True when ``image`` (an upload's reduced decode, or a region of it) has too little
    detail for a perceptual match to mean anything: its detail score is under
    :data:`LOW_DETAIL_THRESHOLD` or its pHash is degenerate (see the module docstring)."""
    return is_low_information_dct(thumbnail_dct(image))


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
