"""PDQ (Meta's 256-bit perceptual hash) of a decoded image: identity, quality and all eight
dihedral orientations, through the ``pdqhash`` package (ThreatExchange's C++ hasher).

Owns how the guard's reduced decode is turned into what PDQ hashes, and how ``pdqhash``'s
outputs are laid out: a hash is an int whose ``format(value, '064x')`` is ThreatExchange's hex
(``pdq-photo-hasher``, HMA and StopNCII lists), and ``OrientationHashes[o]`` is the PDQ hash
of the picture turned by ``o`` (the definition :mod:`pipeline.core.orientation` uses).

Why not hand PDQ the reduced decode as it is: PDQ blurs with a box filter whose width is
derived from the pixel count (``(n + 127) // 128``, applied twice per axis) and then picks
single pixels of the blurred picture as its 64x64. On a JPEG decoded at 1/8 scale (the guard's
draft: 1920x1080 arrives as 240x135) that window is 2 pixels, and the hash moved by 28 bits
on average and up to 82 of 256 from the full decode's (16 scikit-image photos upscaled to
1920x1080, JPEG q90); a larger draft costs decode time and still moved up to 16 bits at 1/2
scale. Instead :func:`pdq_luma_64` computes PDQ's own blur and decimation for the picture at
its full size, carried over to the reduced pixels (each reduced pixel standing for the block
of full pixels it averages): one (64 x h) and one (w x 64) weight matrix per size pair, so
the 64x64 costs two small matrix products. That 64x64 (rounded to 8 bits, since ``pdqhash``
takes 8-bit pixels) is what ``pdqhash`` hashes; at 64x64 PDQ skips its own downsampling.

Measured drift from ``pdqhash.compute`` on the full-size RGB decode (what HMA computes), on
the same 16 photos (``tests/unit/test_pdq.py`` pins the bounds on generated and bundled
photos):

=================  ===============  ======================  =====================
upload             reduced decode   this module: mean/max   raw draft: mean/max
=================  ===============  ======================  =====================
4000x3000 JPEG     500x375 (1/8)    1.5 / 4 bits            9.4 / 34 bits
1920x1080 JPEG     240x135 (1/8)    3.8 / 10 bits           28 / 82 bits
1280x720 JPEG      320x180 (1/4)    2.8 / 8 bits            16 / 38 bits
800x600 JPEG       200x150 (1/4)    3.9 / 14 bits           30 / 80 bits
full-size decode   (PNG, WebP)      <= 2 bits (8-bit rounding of the 64x64 only)
=================  ===============  ======================  =====================

The worst cases are periodic textures (scikit-image's brick, 14 bits); photos stay within
10. The default threshold (31, :data:`pipeline.core.hashlist.DEFAULT_THRESHOLDS`) leaves
room for that on top of the edit a copy went through. ThreatExchange's own implementations
disagree with each other by up to 16 bits on the same files (different JPEG decoders and the
C++ tool's 512x512 pre-resize; its Python test allows 16). Quality (0-100) is computed by
``pdqhash`` from the same 64x64, so it drifts only as little as the pixels do.

The eight orientations come from ``pdqhash.compute_dihedral`` (sign flips and a transpose of
the DCT coefficients, no re-decode); :data:`_DIHEDRAL_ORDER` maps its outputs onto
:class:`Orientation`. They differ from hashing the actually turned picture by up to ~18 bits
for half of the orientations, with ``pdqhash`` alone on full-size photos just as here: PDQ's
box window is off-centre for even widths and its decimation picks pixels at
``floor((i + 0.5) * n / 64)``, neither symmetric under reversal, so a turned picture is
sampled at other points. Every other orientation stays >= 110 bits away, so the right one
is still found well within the threshold.

Must not: decode bytes, read files, log, read the clock or the environment, or match.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import pdqhash
from PIL import Image

from pipeline.core.orientation import ORIENTATIONS, Orientation, OrientationHashes

#: PDQ's working grid: the picture is reduced to 64x64 before its DCT.
PDQ_SIDE = 64

#: ``pdqhash.compute_dihedral``'s outputs in order (original, rotate90, rotate180, rotate270,
#: flipx, flipy, flip_plus1, flip_minus1), as our orientations: its rotations turn the way
#: ours do (counter-clockwise), ``flipx`` flips top <-> bottom, ``flipy`` left <-> right, and
#: ``flip_plus1`` is the transpose. Established by hashing the turned pictures, with ``pdqhash``
#: alone on full-size photos and with this module (``test_pdq.py`` checks every one).
_DIHEDRAL_ORDER: tuple[Orientation, ...] = (
    Orientation.IDENTITY,
    Orientation.ROTATE_90,
    Orientation.ROTATE_180,
    Orientation.ROTATE_270,
    Orientation.VERTICAL_FLIP,
    Orientation.MIRROR,
    Orientation.TRANSPOSE,
    Orientation.ANTI_TRANSPOSE,
)


@dataclass(frozen=True, slots=True)
class PdqHashes:
    """PDQ of one picture: its eight orientations and its quality (0-100, pdqhash's score)."""

    orientations: OrientationHashes
    quality: int

    @property
    def identity(self) -> int:
        """The upright hash, laid out as ThreatExchange's hex reads."""
        return self.orientations.identity


def pdq_hashes(image: Image.Image, full_size: tuple[int, int] | None = None) -> PdqHashes:
    """PDQ of ``image`` in every orientation, with its quality.

    ``full_size`` is (width, height) of the upright picture at full resolution when ``image``
    is a reduced decode of it (the guard's JPEG draft); None when ``image`` is full size.
    """
    luma = pdq_luma_64(image, full_size)
    vectors, quality = pdqhash.compute_dihedral(np.repeat(luma[:, :, np.newaxis], 3, axis=2))
    by_orientation = dict(zip(_DIHEDRAL_ORDER, (_vector_to_int(v) for v in vectors), strict=True))
    return PdqHashes(
        OrientationHashes(tuple(by_orientation[o] for o in ORIENTATIONS)), int(quality)
    )


def pdq_hash(image: Image.Image, full_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """(identity hash, quality) of ``image``; see :func:`pdq_hashes` for ``full_size``."""
    luma = pdq_luma_64(image, full_size)
    vector, quality = pdqhash.compute(np.repeat(luma[:, :, np.newaxis], 3, axis=2))
    return _vector_to_int(vector), int(quality)


def full_frame_pdq(rgb: npt.NDArray[np.uint8]) -> tuple[int, int]:
    """(hash, quality) of a full-size RGB picture (height x width x 3) exactly as ThreatExchange's
    hasher computes it (its own luma, blur and decimation): what vPDQ hashes each frame with."""
    vector, quality = pdqhash.compute(np.ascontiguousarray(rgb, dtype=np.uint8))
    return _vector_to_int(vector), int(quality)


def pdq_luma_64(
    image: Image.Image, full_size: tuple[int, int] | None = None
) -> npt.NDArray[np.uint8]:
    """The 64x64 luma PDQ would compute from the full-size picture, from ``image`` (any mode;
    the guard's grayscale decode is the JPEG luma PDQ would take from RGB)."""
    gray = image if image.mode == "L" else image.convert("L")
    gray, full_size = _bounded(gray, full_size or gray.size)
    width, height = gray.size
    full_width, full_height = full_size
    pixels = np.asarray(gray, dtype=np.float32)
    rows = _axis_operator(full_height, height)
    columns = _axis_operator(full_width, width)
    luma = rows @ pixels @ columns.T
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)


#: Longest side PDQ's resampling is built for. Its weights are 64 x side floats per axis; a
#: 4 KB PNG of 1,000,000 x 1 pixels (within the guard's pixel cap) took 1.5 GB and a 17 KB one
#: of 4,000,000 x 1 exhausted a hashing process. A longer picture is box-reduced to this first
#: (ThreatExchange's own hasher reduces everything to 512 x 512): pictures up to 4096 px a side,
#: 12 MP photos included, hash exactly as before.
PDQ_MAX_SIDE = 4096


def _bounded(gray: Image.Image, full_size: tuple[int, int]) -> tuple[Image.Image, tuple[int, int]]:
    """``gray`` and the full size it stands for, with no side beyond :data:`PDQ_MAX_SIDE`."""
    longest = max(*full_size, *gray.size)
    if longest <= PDQ_MAX_SIDE:
        return gray, full_size
    scale = PDQ_MAX_SIDE / longest
    bounded = (max(1, round(full_size[0] * scale)), max(1, round(full_size[1] * scale)))
    if gray.width > bounded[0] or gray.height > bounded[1]:
        return gray.resize(bounded, Image.Resampling.BOX), bounded
    return gray, bounded


def upright_full_size(reduced: tuple[int, int], original: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of the full-size picture the way ``reduced`` stands.

    ``original`` is the file's own (width, height), before an EXIF rotation the decode
    applied; a quarter turn swaps them. The assignment whose two scale factors agree is the
    one (a reduced decode scales both sides alike).
    """
    (w, h), (big_w, big_h) = reduced, original
    kept = abs(big_w / w - big_h / h)
    swapped = abs(big_h / w - big_w / h)
    return (big_h, big_w) if swapped < kept else (big_w, big_h)


@lru_cache(maxsize=64)  # <= 64 x 4097 x 4 bytes each (PDQ_MAX_SIDE)
def _axis_operator(full: int, reduced: int) -> npt.NDArray[np.float32]:
    """(64, reduced) weights: PDQ's blur + decimation along an axis of ``full`` pixels, applied
    to the ``reduced`` pixels that stand for them. The identity of PDQ's own when equal."""
    window = (full + 2 * PDQ_SIDE - 1) // (2 * PDQ_SIDE)
    half = (window + 2) // 2
    position = np.arange(full)
    # One box pass, as ThreatExchange's box1DFloat: output o averages inputs [lo[o], hi[o]],
    # the window clipped at the edges (and the divisor with it).
    lo = np.maximum(0, position + half - window)
    hi = np.minimum(full - 1, position + half - 1)
    count = (hi - lo + 1).astype(np.float64)
    # Decimation picks these positions of the twice-blurred line.
    picked = (((np.arange(PDQ_SIDE) + 0.5) * full) / PDQ_SIDE).astype(np.int64)
    # Output o averages the first-pass outputs lo[at]..hi[at] (at = picked[o]), each of which
    # averages inputs [lo, hi]: a difference array per row, every (o, first) pair at once (a
    # region's size is new for most uploads, so this runs per view, not once).
    spans = hi[picked] - lo[picked] + 1
    rows = np.repeat(np.arange(PDQ_SIDE), spans)
    firsts = np.repeat(lo[picked], spans) + (
        np.arange(int(spans.sum())) - np.repeat(np.cumsum(spans) - spans, spans)
    )
    share = 1.0 / (np.repeat(count[picked], spans) * count[firsts])
    width = full + 1
    slots = np.concatenate([rows * width + lo[firsts], rows * width + hi[firsts] + 1])
    weights = np.bincount(
        slots, weights=np.concatenate([share, -share]), minlength=PDQ_SIDE * width
    ).reshape(PDQ_SIDE, width)
    # Two nested averages: PDQ's two box passes per axis (PDQ_NUM_JAROSZ_XY_PASSES).
    per_full = np.cumsum(weights, axis=1)[:, :full]
    return np.ascontiguousarray(
        np.add.reduceat(per_full, _block_starts(full, reduced), axis=1), dtype=np.float32
    )


def _block_starts(full: int, reduced: int) -> npt.NDArray[np.int64]:
    """First full pixel of each reduced pixel. A JPEG decoded at 1/k holds ceil(full / k)
    pixels, pixel d averaging full pixels [k*d, k*d + k); any other ratio is spread evenly."""
    factor = round(full / reduced)
    if factor >= 1 and -(-full // factor) == reduced:
        return np.arange(reduced, dtype=np.int64) * factor
    return (np.arange(reduced, dtype=np.int64) * full + reduced - 1) // reduced


def _vector_to_int(vector: npt.NDArray[np.integer]) -> int:
    """pdqhash's 256 bits (most significant first, as its hex reads) as an int."""
    return int.from_bytes(np.packbits(np.asarray(vector, dtype=np.bool_)).tobytes(), "big")
