"""Reframed views of an upload: the listed picture's field of view, guessed back.

Owns the two reframings hashed besides the whole picture and its content regions
(:mod:`pipeline.core.regions`), both of the guard's reduced decode, in memory:

* **Uncropped.** A copy cut down by a few percent on each side shows a smaller field of view
  than the listed picture, and pHash and dHash compare fields of view: a 5% crop moves pHash
  past its threshold for half of the listed photos measured. The upload with its edge pixels
  extended outwards by what a 5% crop of each side takes off (1/18 of its sides) has the
  listed picture's geometry again; the low frequencies the hashes read come
  back, the extended strip only repeats the edge. Edge extension was measured against mirrored
  extension: mirroring adds structure the listed picture did not have (pHash within 8 of the
  listed photo for 65% of 5% crops mirrored, 85% extended).
* **Straightened.** A copy turned by a few degrees on its own canvas has four triangles of
  one fill colour in its corners (:func:`tilt`: their sides give the angle). Turned back by
  that angle, with the corners painted the picture's mean grey instead of the fill (a black
  corner is a strong low frequency the listed picture does not have), it is the listed
  picture but for its corners.

Both views are searched upright only (:attr:`pipeline.core.hashing.View.upright_only`): each
is a guess at how the listed picture was framed, and its seven turns would be seven more
chances for an unrelated picture to come near an entry. Must not: read files, log, or match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

from pipeline.core.regions import RegionKind

#: The crops undone, as the share of each side a crop took off. One view, for 5% of each side:
#: measured with ``pipeline bench quality`` it also brings 10% crops back within reach (44% of
#: them matched, against 17% without), and a second view for 10% (crop 10%: 74%) cost a tenth
#: of the 1080p hashing rate.
UNCROP_SHARES: tuple[float, ...] = (0.05,)
#: Grey levels within which a corner pixel is of the fill colour (JPEG rings at the edge of a
#: flat fill; the reduced decode averages it with the picture along the turned edge).
FILL_TOLERANCE = 12
#: Turns straightened, in degrees: below the lower bound a copy still matches as it is; above
#: the upper one it is no longer "a little crooked" and its corners would eat the picture.
MIN_TILT_DEGREES = 0.5
MAX_TILT_DEGREES = 15.0
#: A corner triangle is trusted when its short side is at least this many pixels and its long
#: side at least :data:`_MIN_LEG_RATIO` times the short one (a small turn's triangles are
#: long and thin) and short of :data:`_MAX_LEG_SHARE` of the image's side.
_MIN_SHORT_LEG = 2
_MIN_LEG_RATIO = 3
_MAX_LEG_SHARE = 0.9
#: Corners of four whose triangles must agree on the turn's direction.
_MIN_CORNERS = 3

_Pixels = npt.NDArray[np.int16]


def reframings(image: Image.Image) -> list[tuple[RegionKind, Image.Image]]:
    """The reframed pictures of ``image`` (the guard's grayscale decode) to hash, in order:
    the straightened picture when the corners show a small turn, then each uncropped one."""
    gray = image if image.mode == "L" else image.convert("L")
    found: list[tuple[RegionKind, Image.Image]] = []
    turned = tilt(gray)
    if turned is not None:
        found.append((RegionKind.STRAIGHTENED, straightened(gray, turned)))
    found.extend((RegionKind.UNCROPPED, uncropped(gray, share)) for share in UNCROP_SHARES)
    return found


def uncropped(image: Image.Image, share: float) -> Image.Image:
    """``image`` with its edge pixels extended on each side by what a crop of ``share`` of
    each side of the original took off (``share / (1 - 2 * share)`` of the upload's side)."""
    pixels = np.asarray(image)
    height, width = pixels.shape[:2]
    grow = share / (1 - 2 * share)
    pad_x, pad_y = round(width * grow), round(height * grow)
    edges = ((pad_y, pad_y), (pad_x, pad_x)) + ((0, 0),) * (pixels.ndim - 2)
    return Image.fromarray(np.pad(pixels, edges, mode="edge"))


def tilt(image: Image.Image) -> float | None:
    """Degrees (counter-clockwise positive, as Pillow turns) by which ``image`` (grayscale)
    was turned on its own canvas, read off the fill triangles in its corners; None when its
    corners do not show such a turn.

    Each corner triangle's hypotenuse is the turned picture's edge: along the triangle's long
    side, the fill's depth shrinks by tan(angle) a pixel, so the angle is the slope of the
    fill's depth across the long side (a trimmed mean over pixel pairs half the side apart,
    which rounding and a dark picture edge do not throw). The corners must share one fill
    colour, at least three must show a long thin triangle, and all of them the same direction.
    """
    pixels = np.asarray(image, dtype=np.int16)
    corners = (pixels, pixels[:, ::-1], pixels[::-1], pixels[::-1, ::-1])
    colours = [int(corner[0, 0]) for corner in corners]
    if max(colours) - min(colours) > FILL_TOLERANCE:
        return None
    fill = int(np.median(colours))
    slopes: list[float] = []
    directions: set[bool] = set()
    # Turned counter-clockwise, the top-left and bottom-right triangles lie along the rows and
    # the other two along the columns; clockwise, the other way round.
    for corner, mirrored in zip(corners, (False, True, True, False), strict=True):
        along_row, along_column = _fill_run(corner[0], fill), _fill_run(corner[:, 0], fill)
        short, long = sorted((along_row, along_column))
        side = corner.shape[1] if along_row > along_column else corner.shape[0]
        if short < _MIN_SHORT_LEG or long < _MIN_LEG_RATIO * short or long >= _MAX_LEG_SHARE * side:
            continue
        slope = _depth_slope(corner if along_row > along_column else corner.T, long, fill)
        if slope is None:
            continue
        slopes.append(slope)
        directions.add((along_row > along_column) != mirrored)
    if len(slopes) < _MIN_CORNERS or len(directions) != 1:
        return None
    angle = math.degrees(math.atan(float(np.median(slopes))))
    if not MIN_TILT_DEGREES <= angle <= MAX_TILT_DEGREES:
        return None
    return angle if directions.pop() else -angle


def straightened(image: Image.Image, angle: float) -> Image.Image:
    """``image`` (grayscale) turned back by ``angle`` degrees on its canvas, every pixel that
    was not the picture (the upload's fill corners, and the corners the turn back opens)
    painted the picture's mean."""
    size = image.size
    inside = np.asarray(Image.new("L", size, 255).rotate(angle, fillcolor=0)) >= 128
    # The turned edge is a blend of picture and fill one pixel either way: not the picture.
    inside[1:] &= inside[:-1].copy()
    inside[:-1] &= inside[1:].copy()
    inside[:, 1:] &= inside[:, :-1].copy()
    inside[:, :-1] &= inside[:, 1:].copy()
    pixels = np.asarray(image)
    mean = round(float(pixels[inside].mean())) if inside.any() else 128
    back = image.rotate(-angle, resample=Image.Resampling.BICUBIC, fillcolor=mean)
    kept = Image.fromarray(inside.astype(np.uint8) * 255).rotate(-angle, fillcolor=0)
    result = np.asarray(back).copy()
    result[np.asarray(kept) < 128] = mean
    return Image.fromarray(result)


def _fill_run(line: Sequence[int] | _Pixels, fill: int) -> int:
    """How many pixels from the start of ``line`` are of the fill colour."""
    off = np.abs(np.asarray(line, dtype=np.int16) - fill) > FILL_TOLERANCE
    return int(np.argmax(off)) if off.any() else len(off)


def _depth_slope(corner: _Pixels, long: int, fill: int) -> float | None:
    """How fast the fill's depth (down each column) shrinks along the first ``long`` columns
    of ``corner``: a trimmed mean of slopes between columns half the span apart."""
    columns = np.arange(max(1, int(0.1 * long)), max(3, int(0.8 * long)))
    columns = columns[columns < corner.shape[1]]
    half = len(columns) // 2
    if half < 2:
        return None
    off = np.abs(corner[:, columns] - fill) > FILL_TOLERANCE
    depth = np.where(off.any(axis=0), np.argmax(off, axis=0), corner.shape[0])
    pairs = np.sort(
        (depth[:half] - depth[half : 2 * half]) / (columns[half : 2 * half] - columns[:half])
    )
    cut = len(pairs) // 5
    return float(pairs[cut : len(pairs) - cut].mean())
