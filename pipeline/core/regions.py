"""Where the picture really is inside an upload: the content regions hashed besides the whole.

Owns :class:`Region` (a rectangle in the upload's pixels and what kind of region it is) and
the search for candidate regions, :func:`content_regions`: uniform borders trimmed (padding,
letterbox, pillarbox) and the embedded picture inside a screenshot, chat frame or meme. Works
on the guard's reduced decode; never decodes, reads files, logs or matches anything.

How, on the decode (box-reduced to at most 320 px a side; the guard's JPEG decodes already are):

* Trimmed: from each side inwards, lines that are one flat colour (97% of pixels within 3
  levels of the outermost line's, mean within 1.5) are pad; rows, then columns, twice.
* Embedded: a pixel has detail when it differs from its right or lower neighbour by more than
  2 levels (flat UI, pads and wallpapers decode to steps of 0-1). The rectangle with the
  largest sum of (detail share - 0.6) over a <= 48-block grid is the core of the picture;
  its edges are settled to pixel lines, then grown over whatever carries the picture on
  (smooth sky, skin, blur: no detail, but no UI either) up to the first flat line of the
  surroundings' colour, less a bubble's 1-2 line margin. It is kept only if flat UI lies
  just outside it on two opposite sides and on every side not at the image's edge, and the
  search only runs when two opposite edges of the image are mostly one colour.

Limits (measured with scikit-image's photos, see tests/unit/test_regions.py): a low-detail or
low-contrast photo (the moon, a clock on a plain wall) inside a chat frame carries less detail
than the text bubbles around it and is not found; a photo whose edge is the colour of the UI
around it (white sky on a white meme bar) loses that edge; a patterned chat wallpaper is not
flat UI, so nothing is found there; one embedded picture per upload (the largest).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image


class RegionKind(enum.StrEnum):
    """What a hashed region is: bounded, snake_case, fit for a verdict field and a metric label."""

    WHOLE = "whole"
    """The whole upload, as decoded."""
    TRIMMED = "trimmed"
    """The upload without uniform borders (pad, letterbox, pillarbox)."""
    EMBEDDED = "embedded"
    """A picture inside flat surroundings (screenshot, chat frame, meme bars)."""
    UNCROPPED = "uncropped"
    """The whole upload with its edges extended, as if a crop of a few percent of each side
    were undone (:mod:`pipeline.core.reframe`)."""
    STRAIGHTENED = "straightened"
    """The whole upload turned back by the few degrees its fill-coloured corners show
    (:mod:`pipeline.core.reframe`)."""


@dataclass(frozen=True, slots=True)
class Region:
    """A rectangle of the upload in its own pixels (x, y of the top-left corner; width, height).

    Raises ValueError for an empty or negative rectangle."""

    x: int
    y: int
    width: int
    height: int
    kind: RegionKind = RegionKind.WHOLE

    def __post_init__(self) -> None:
        if self.x < 0 or self.y < 0 or self.width <= 0 or self.height <= 0:
            raise ValueError(f"not a region: {self!r}")

    @classmethod
    def whole(cls, width: int, height: int) -> Region:
        """The whole picture of ``width`` x ``height`` pixels."""
        return cls(0, 0, width, height, RegionKind.WHOLE)


#: The long side, in pixels, the search works at. The guard's JPEG decodes (the 1/8 to 1/1 DCT
#: scale that keeps both sides >= 128) already fit, so they are searched as they are; larger
#: decodes (PNG, WebP, small JPEGs' full decode) are box-reduced by an integer factor first.
_WORK_SIDE = 320
#: Grey levels: two neighbouring pixels this close are "no detail". A flat UI colour, a pad or
#: a slight wallpaper gradient decodes to steps of 0-1 (JPEG keeps a flat 8x8 block flat, and
#: the reduced decode shows one value per block), a photo's texture to larger ones.
_FLAT_STEP = 2
#: A pad line: this share of its pixels within :data:`_PAD_TOLERANCE` levels of the outermost
#: line's colour. Real pads are flat to a level or two after JPEG (ringing only reaches the
#: line next to the picture, which stays in); a clear sky or a studio backdrop drifts more.
_PAD_TOLERANCE = 3
_PAD_SHARE = 0.97
#: ...and its mean within this many levels of the outermost line's: a pad does not drift, so
#: a gradient picture does not lose its first rows as "pad".
_PAD_DRIFT = 1.5
#: Borders of one axis differing by at most this share of the wider one (or by at most
#: :data:`_PAD_SLACK` lines) are even; beyond it, a centred region is tried too.
_UNEVEN_PAD_SHARE = 0.25
_PAD_SLACK = 2
#: Grey levels within which a line is "of the surroundings' colour" when growing a picture
#: or judging its surround (UI colours, after JPEG and the reduced decode).
_UI_TOLERANCE = 6
#: Share of pixels with detail that makes a line or a block "photographic" (photos at the
#: reduced scale: 0.8-1.0 outside smooth areas; text on a flat background: below it once a
#: line gap or a bubble margin is in the block).
_DETAIL_SHARE = 0.6
#: The block grid of the largest-detail-rectangle search, in blocks on the long side.
_GRID = 48
#: A UI colour covers this share of the search area with flat pixels (within a level of it);
#: a line is of the UI's colours when its pixels are within :data:`_PALETTE_TOLERANCE` of one.
_PALETTE_SHARE = 0.01
#: ...and a sharp peak: its 3-level window holds this many times its 4 flanking levels (a
#: UI colour decodes to one level, give or take one; a photo's smooth area to a broad hump).
_PALETTE_SHARPNESS = 2.0
_PALETTE_TOLERANCE = 4
#: A line with fewer steps along it than this share is plain: flat, or flat pieces (a line
#: through a bubble's edge and the wallpaper beside it).
_PLAIN_SHARE = 0.1
#: An embedded picture is at least this share picture pixels (detail, or not of a UI
#: colour): a logo or a diagram of flat fills on white is drawn like UI and is not one.
_PICTURE_SHARE = 0.5
#: A row of a meme's caption bar: at least this share of it the bars' colour (the rest: the
#: caption's letters).
_BAR_SHARE = 0.5
#: Cores of detail tried, best first, before the search gives up (a caption, a text bubble,
#: an icon can each be denser than the picture).
_CORE_TRIES = 4
#: A line is flat UI, where growing a picture outwards stops, when its neighbouring pixels
#: differ by at most this much on average (a slow gradient passes, texture and text do not)
#: and its colour is one of the surroundings' (within :data:`_UI_TOLERANCE`).
_FLAT_LINE_STEP = 1.0
#: A line just outside an embedded picture is flat UI when this share of its pixels is within
#: :data:`_UI_TOLERANCE` of its median (rounded corners and a bubble's edge take the rest).
_SURROUND_SHARE = 0.85
#: An edge of the image gives the surroundings' colour when this share of it is one colour.
_EDGE_UI_SHARE = 0.5
#: How many lines outward the flat surround is looked for (the decoded boundary blurs over
#: one or two).
_SURROUND_REACH = 3
#: A bubble's margin around a photo at the reduced scale (8-12 px on a 1080 px wide phone
#: screen, 1-2 px at 1/8): up to this many flat lines of their own colour come off the edges.
_MARGIN_LINES = 2
#: Rounded corners: the frame's colour reaches into a picture's first lines near its ends,
#: so those lines are judged without 1/10 of their length at each end.
_CORNER_SHARE_INVERSE = 10
#: Regions smaller than this are not worth a hash: pHash reads a 32x32 resize, and a region
#: that spans less than two fifths of the image both ways (or covers under 6% of it) is a
#: thumbnail, an avatar or an icon, where a match is both unlikely and cheap to fake. One way
#: is enough: a landscape photo in a portrait phone chat spans 70% of its width and 18% of
#: its height.
_MIN_SIDE_PIXELS = 24
_MIN_SPAN_SHARE = 0.4
_MIN_AREA_SHARE = 0.06
#: A region is "the whole image" when it keeps this share of both sides: the whole image's
#: own hash already covers it (a 2% pad moves pHash by a few bits at most).
_NEAR_WHOLE_SHARE = 0.96
#: Two candidates this alike (intersection over union) are one region; the first is kept.
_SAME_REGION_IOU = 0.9

#: Bounds in working pixels: (left, top, right, bottom), right and bottom exclusive.
_Box = tuple[int, int, int, int]
_Pixels = npt.NDArray[np.int16]
_Mask = npt.NDArray[np.bool_]
_Floats = npt.NDArray[np.floating[Any]]
_Indices = npt.NDArray[np.intp]


def content_regions(image: Image.Image, max_regions: int = 3) -> tuple[Region, ...]:
    """Candidate regions of ``image`` worth hashing besides the whole, best first.

    ``image`` is the guard's decode (grayscale, any mode is accepted); regions are in its
    pixels. At most ``max_regions``; none tiny and none (nearly) the whole image; empty for
    an ordinary photo. The trimmed picture (uniform borders removed) comes first: its
    evidence, flat lines of one colour, is the stronger. Then the embedded picture: the
    largest rectangle of photographic detail whose surroundings on two opposite sides are flat
    (screenshot and chat UI, meme bars)."""
    if max_regions <= 0:
        return ()
    pixels, factor = _working_pixels(image)
    height, width = pixels.shape
    whole: _Box = (0, 0, width, height)
    trimmed = _trim_uniform_borders(pixels)
    candidates: list[tuple[_Box, RegionKind]] = []
    if trimmed is not None and trimmed != whole:
        candidates.append((trimmed, RegionKind.TRIMMED))
        centred = _centred(trimmed, whole)
        if centred != trimmed:
            candidates.append((centred, RegionKind.TRIMMED))
    if trimmed is not None and (
        _may_frame_a_picture(pixels, whole) or _may_frame_a_picture(pixels, trimmed)
    ):
        palette = _Palette.of(pixels, trimmed)
        for found in (
            *_embedded_pictures(pixels, palette, trimmed),
            _between_bars(pixels, palette, trimmed),
        ):
            if found is not None:
                candidates.append((found, RegionKind.EMBEDDED))

    regions: list[Region] = []
    seen: list[_Box] = []
    for box, kind in candidates:
        duplicate = any(_iou(box, other) >= _SAME_REGION_IOU for other in seen)
        seen.append(box)  # a near-whole trimmed box also stands for its embedded twin
        if duplicate or not _worth_hashing(box, width, height) or _nearly_contains(box, whole):
            continue
        regions.append(_to_image_pixels(box, kind, factor, image.size))
    return tuple(regions[:max_regions])


def _centred(trimmed: _Box, whole: _Box) -> _Box:
    """``trimmed`` with each axis's borders made even, at the narrower of the two, where they
    differ by more than :data:`_UNEVEN_PAD_SHARE` of the wider. Pads, letterboxes and video
    bars are nearly always centred; a picture whose own edge is of the pad's colour (a dark
    night sky in black bars) loses that edge to the trim, on one side."""
    left, top, right, bottom = trimmed
    pads = (left - whole[0], top - whole[1], whole[2] - right, whole[3] - bottom)

    def even(first: int, second: int) -> tuple[int, int]:
        if abs(first - second) <= max(_PAD_SLACK, _UNEVEN_PAD_SHARE * max(first, second)):
            return first, second
        return (min(first, second),) * 2

    (pad_left, pad_right), (pad_top, pad_bottom) = even(pads[0], pads[2]), even(pads[1], pads[3])
    return pad_left, pad_top, whole[2] - pad_right, whole[3] - pad_bottom


def _working_pixels(image: Image.Image) -> tuple[_Pixels, int]:
    gray = image if image.mode == "L" else image.convert("L")
    factor = max(1, -(-max(gray.size) // _WORK_SIDE))
    if factor > 1:
        gray = gray.reduce(factor)
    return np.asarray(gray, dtype=np.int16), factor


def _to_image_pixels(box: _Box, kind: RegionKind, factor: int, size: tuple[int, int]) -> Region:
    left, top, right, bottom = (value * factor for value in box)
    right, bottom = min(right, size[0]), min(bottom, size[1])
    return Region(left, top, right - left, bottom - top, kind)


def _worth_hashing(box: _Box, width: int, height: int) -> bool:
    box_width, box_height = box[2] - box[0], box[3] - box[1]
    return (
        min(box_width, box_height) >= _MIN_SIDE_PIXELS
        and (box_width >= _MIN_SPAN_SHARE * width or box_height >= _MIN_SPAN_SHARE * height)
        and box_width * box_height >= _MIN_AREA_SHARE * width * height
    )


def _nearly_contains(box: _Box, whole: _Box) -> bool:
    """Whether ``box`` keeps nearly all of ``whole`` along both axes."""
    return (box[2] - box[0]) >= _NEAR_WHOLE_SHARE * (whole[2] - whole[0]) and (
        box[3] - box[1]
    ) >= _NEAR_WHOLE_SHARE * (whole[3] - whole[1])


def _iou(first: _Box, second: _Box) -> float:
    overlap_width = min(first[2], second[2]) - max(first[0], second[0])
    overlap_height = min(first[3], second[3]) - max(first[1], second[1])
    if overlap_width <= 0 or overlap_height <= 0:
        return 0.0
    overlap = overlap_width * overlap_height
    union = _area(first) + _area(second) - overlap
    return overlap / union


def _area(box: _Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


# Trimming uniform borders.


def _median(line: _Pixels) -> int:
    middle = len(line) // 2
    return int(np.partition(line, middle)[middle])


def _leading(count: int, holds: Callable[[int, int], _Mask]) -> int:
    """How many of ``count`` lines, from the first, hold: ``holds(start, stop)`` tests lines
    start..stop-1. Tested in chunks that double, since most runs end within a few lines and
    testing the whole picture every time would cost more than the rest of the search."""
    start, chunk = 0, 8
    while start < count:
        stop = min(count, start + chunk)
        failing = np.flatnonzero(~holds(start, stop))
        if failing.size:
            return start + int(failing[0])
        start, chunk = stop, chunk * 2
    return count


def _pad_lines(lines: _Pixels) -> int:
    """How many leading rows of ``lines`` are pad: nearly all pixels of the first row's
    colour (its median, so a few noisy pixels in the outermost row do not set it), and the
    same mean brightness."""
    colour = _median(lines[0])
    level = float(lines[0].mean())
    needed = _PAD_SHARE * lines.shape[1]

    def pad(start: int, stop: int) -> _Mask:
        chunk = lines[start:stop]
        close = np.abs(chunk - colour) <= _PAD_TOLERANCE
        steady = np.abs(chunk.mean(axis=1) - level) <= _PAD_DRIFT
        pad_lines: _Mask = (np.count_nonzero(close, axis=1) >= needed) & steady
        return pad_lines

    return _leading(len(lines), pad)


def _trim_uniform_borders(pixels: _Pixels) -> _Box | None:
    """The picture inside flat borders (per side, any colour); None when all is flat.

    Rows first over the full width, then columns over what is left, twice, so uneven pads and
    a letterbox inside a pillarbox both come off."""
    height, width = pixels.shape
    left, top, right, bottom = 0, 0, width, height
    for _ in range(2):
        rows = pixels[top:bottom, left:right]
        top_pad = _pad_lines(rows)
        if top_pad >= bottom - top:
            return None
        top, bottom = top + top_pad, bottom - _pad_lines(rows[::-1])
        if bottom <= top:
            return None  # flat from both ends (a two-tone split): no picture inside
        columns = pixels[top:bottom, left:right].T
        left_pad = _pad_lines(columns)
        if left_pad >= right - left:
            return None
        left, right = left + left_pad, right - _pad_lines(columns[::-1])
        if right <= left:
            return None
    return left, top, right, bottom


# The embedded picture.


@dataclass(frozen=True, slots=True)
class _Counts:
    """A mask as a summed-area table: the count of any rectangle (a line segment, a block)
    costs four look-ups."""

    sums: npt.NDArray[np.int32]  # [y, x]: pixels set above row y and left of column x

    @classmethod
    def of(cls, mask: _Mask) -> _Counts:
        height, width = mask.shape
        sums = np.zeros((height + 1, width + 1), dtype=np.int32)
        np.cumsum(mask, axis=0, out=sums[1:, 1:])
        np.cumsum(sums[1:, 1:], axis=1, out=sums[1:, 1:])
        return cls(sums)

    def row_shares(self, rows: _Indices, left: int, right: int) -> _Floats:
        """Share set of each of ``rows`` between columns ``left`` and ``right``."""
        sums = self.sums
        inside = sums[rows + 1, right] - sums[rows + 1, left] - sums[rows, right] + sums[rows, left]
        shares: _Floats = inside / (right - left)
        return shares

    def column_shares(self, columns: _Indices, top: int, bottom: int) -> _Floats:
        """Share set of each of ``columns`` between rows ``top`` and ``bottom``."""
        sums = self.sums
        inside = (
            sums[bottom, columns + 1]
            - sums[top, columns + 1]
            - sums[bottom, columns]
            + sums[top, columns]
        )
        shares: _Floats = inside / (bottom - top)
        return shares


@dataclass(frozen=True, slots=True)
class _DetailMap:
    """Where the pixels have detail: a step of more than :data:`_FLAT_STEP` to a neighbour.

    A line (a row or a column) is judged by the steps *along* it: a flat UI line stays flat
    however much it differs from the next line, so a thin bar or a bubble's margin between two
    other colours is not mistaken for detail. Blocks are judged by steps either way."""

    along_rows: _Counts  # steps to the right neighbour
    along_columns: _Counts  # steps to the lower neighbour
    either: _Mask  # a step either way

    @classmethod
    def of(cls, pixels: _Pixels) -> _DetailMap:
        across = np.zeros(pixels.shape, dtype=np.bool_)
        across[:, :-1] = np.abs(np.diff(pixels, axis=1)) > _FLAT_STEP
        down = np.zeros(pixels.shape, dtype=np.bool_)
        down[:-1] = np.abs(np.diff(pixels, axis=0)) > _FLAT_STEP
        return cls(_Counts.of(across), _Counts.of(down), across | down)

    def row_shares(self, rows: _Indices, left: int, right: int) -> _Floats:
        """Detail share (steps along the row) of each of ``rows`` in ``left``..``right``."""
        return self.along_rows.row_shares(rows, left, right)

    def column_shares(self, columns: _Indices, top: int, bottom: int) -> _Floats:
        """Detail share (steps along the column) of each of ``columns`` in ``top``..``bottom``."""
        return self.along_columns.column_shares(columns, top, bottom)


@dataclass(frozen=True, slots=True)
class _Palette:
    """The UI's colours: grey levels that whole flat areas of the search area share (a chat's
    wallpaper, its bubbles' fill, a bar). JPEG keeps a flat area's 8x8 blocks flat, so each
    UI colour is a sharp peak in the histogram of flat pixels; a photo's smooth sky or skin
    spreads over many levels."""

    levels: npt.NDArray[np.bool_]  # [level]: within _PALETTE_TOLERANCE of a UI colour

    @classmethod
    def of(cls, pixels: _Pixels, within: _Box) -> _Palette:
        left, top, right, bottom = within
        area = pixels[top:bottom, left:right]
        flat = np.ones(area.shape, dtype=np.bool_)
        flat[:, :-1] &= np.abs(np.diff(area, axis=1)) <= 1
        flat[:-1] &= np.abs(np.diff(area, axis=0)) <= 1
        counts = np.bincount(area[flat].ravel().astype(np.intp), minlength=256)[:256]
        padded = np.concatenate([np.zeros(3, np.int64), counts, np.zeros(3, np.int64)])
        # Level L's own window (L-1..L+1) and its flanks (L-3..L-2, L+2..L+3).
        near = padded[2:-4] + padded[3:-3] + padded[4:-2]
        flanks = padded[:-6] + padded[1:-5] + padded[5:-1] + padded[6:]
        sharp = near >= _PALETTE_SHARPNESS * flanks
        colours = np.flatnonzero(sharp & (near >= _PALETTE_SHARE * area.size))
        levels = np.zeros(256, dtype=np.bool_)
        for colour in colours:
            levels[max(0, colour - _PALETTE_TOLERANCE) : colour + _PALETTE_TOLERANCE + 1] = True
        return cls(levels)

    def of_colours(self, pixels: _Pixels) -> _Mask:
        """Which ``pixels`` are of a UI colour."""
        of_colours: _Mask = self.levels[np.clip(pixels, 0, 255)]
        return of_colours

    def shares(self, lines: _Pixels) -> _Floats:
        """Share of each line's pixels (rows of ``lines``) that are of a UI colour."""
        shares: _Floats = self.levels[np.clip(lines, 0, 255)].mean(axis=1)
        return shares


def _may_frame_a_picture(pixels: _Pixels, within: _Box) -> bool:
    """Whether two opposite edges of ``within`` are mostly one colour each, as UI around an
    embedded picture makes them (status and input bars, chat wallpaper, meme bars). Most
    photos fail this at once, and the search costs them nothing more."""
    left, top, right, bottom = within

    def mostly_flat(line: _Pixels) -> bool:
        return _flat_line(line, _EDGE_UI_SHARE)

    return (
        mostly_flat(pixels[top, left:right]) and mostly_flat(pixels[bottom - 1, left:right])
    ) or (mostly_flat(pixels[top:bottom, left]) and mostly_flat(pixels[top:bottom, right - 1]))


def _between_bars(pixels: _Pixels, palette: _Palette, within: _Box) -> _Box | None:
    """The picture between a meme's caption bars (or a feed post's header and footer): the
    longest run of rows of ``within`` that are not mostly the bars' colour, when its top and
    bottom rows are mostly one colour each and that colour is a UI colour (``palette``: a
    flat sky is not one), whatever text they carry. A picture that fills the width has no
    flat surround beside it, and a flat-colour illustration has too little detail for the
    embedded-picture search; the bars' rows are plain to tell."""
    left, top, right, bottom = within
    edges = (pixels[top, left:right], pixels[bottom - 1, left:right])
    if not all(_flat_line(line, _EDGE_UI_SHARE) for line in edges):
        return None
    colours = np.array([_median(line) for line in edges], dtype=np.int16)
    if not palette.levels[colours].all():
        return None
    area = pixels[top:bottom, left:right]
    near = np.abs(area[:, :, np.newaxis] - colours).min(axis=2) <= _UI_TOLERANCE
    picture_rows = near.mean(axis=1) < _BAR_SHARE
    if picture_rows.all() or not picture_rows.any():
        return None
    # The longest run of picture rows.
    padded = np.concatenate([[False], picture_rows, [False]])
    changes = np.flatnonzero(np.diff(padded.astype(np.int8)))
    starts, stops = changes[::2], changes[1::2]
    longest = int(np.argmax(stops - starts))
    first_row, last_row = int(starts[longest]), int(stops[longest])
    # A picture across the width meets both sides on most of its rows (not a round or a
    # cut-out picture on the bars' colour: a fundus photo, a logo on white).
    sides = near[first_row:last_row][:, [0, -1]].mean(axis=0)
    if (sides > 1 - _BAR_SHARE).any():
        return None
    band = (left, top + first_row, right, top + last_row)
    inner = _trim_uniform_borders(pixels[band[1] : band[3], band[0] : band[2]])
    if inner is None or inner[2] - inner[0] < _NEAR_WHOLE_SHARE * (right - left):
        return None  # not a picture across the bars' width (a chat's rows: the search above)
    box = (band[0] + inner[0], band[1] + inner[1], band[0] + inner[2], band[1] + inner[3])
    return _tighten(pixels, box)


def _embedded_pictures(pixels: _Pixels, palette: _Palette, within: _Box) -> tuple[_Box, ...]:
    """The pictures inside flat surroundings within ``within``, larger first (none, one or two).

    Searched twice, for two notions of what is picture: detail alone (a photo's texture; a
    picture running into the image's edges, as in a meme, keeps its smooth sky), then detail
    or a colour the UI does not have (a smooth picture: a gradient, a blur, a sky, whose
    detail is less than that of the text around it). Both are kept when they differ: the
    larger one can be a picture grown through its smooth edge into the bubble beside it,
    the smaller the picture itself."""
    detail = _DetailMap.of(pixels)
    broad = detail.either | ~palette.of_colours(pixels)
    found = [
        _picture_of(detail, picture, pixels, palette, within)
        for picture in (detail.either, broad & ~_of_wallpaper(pixels, within))
    ]
    # Mostly picture either way: not a drawing made of the UI's own flat colours.
    return tuple(
        box
        for box in sorted((box for box in found if box is not None), key=_area, reverse=True)
        if broad[box[1] : box[3], box[0] : box[2]].mean() >= _PICTURE_SHARE
    )


def _of_wallpaper(pixels: _Pixels, within: _Box) -> _Mask:
    """Pixels of the wallpaper's colour where it shades (a gradient is no sharp colour of
    the palette): within :data:`_PALETTE_TOLERANCE` of their row's colour where the row meets
    the search area's left and right edges with one smooth colour (a wallpaper shading down
    the screen), or of their column's where it meets the top and bottom edges alike."""
    left, top, right, bottom = within
    area = pixels[top:bottom, left:right]
    of_wallpaper = np.zeros(pixels.shape, dtype=np.bool_)
    for lines in (area, area.T):
        first, last = lines[:, 0], lines[:, -1]
        smooth = (np.abs(first - lines[:, 1]) <= 1) & (np.abs(last - lines[:, -2]) <= 1)
        smooth[1:] &= (np.abs(np.diff(first)) <= 1) & (np.abs(np.diff(last)) <= 1)
        smooth &= np.abs(first - last) <= _PALETTE_TOLERANCE
        colour = (first + last) / 2
        matches = smooth[:, np.newaxis] & (
            np.abs(lines - colour[:, np.newaxis]) <= _PALETTE_TOLERANCE
        )
        target = of_wallpaper[top:bottom, left:right]
        target |= matches if lines is area else matches.T
    return of_wallpaper


def _picture_of(
    detail: _DetailMap, picture: _Mask, pixels: _Pixels, palette: _Palette, within: _Box
) -> _Box | None:
    """The picture whose core is the densest rectangle of ``picture`` pixels.

    Cores are tried best first: the densest is often not the picture but a caption or a text
    bubble beside it, which ends too small or without a flat surround; its blocks are then
    left out and the next best core is tried, at most :data:`_CORE_TRIES` times."""
    grid = _CoreGrid.of(picture, within)
    if grid is None:
        return None
    content = _Counts.of(picture)
    height, width = pixels.shape
    for _ in range(_CORE_TRIES):
        core = grid.best()
        if core is None:
            return None
        box = _settle_on_detail(detail, content, pixels, palette, core, within)
        if box is not None:
            box = _tighten(pixels, _continue_smooth_picture(pixels, palette, box, within))
            if _worth_hashing(box, width, height) and _surrounded_by_flat_ui(
                pixels, palette, box, within
            ):
                return box
        grid.exclude(core if box is None else _union(core, box))
    return None


def _union(first: _Box, second: _Box) -> _Box:
    return (
        min(first[0], second[0]),
        min(first[1], second[1]),
        max(first[2], second[2]),
        max(first[3], second[3]),
    )


@dataclass(slots=True)
class _CoreGrid:
    """Detail shares of the blocks tiling the search area, less :data:`_DETAIL_SHARE`: the
    weights of the largest-detail-rectangle search. Blocks already tried are excluded."""

    weights: npt.NDArray[np.float32]
    within: _Box
    block: int

    @classmethod
    def of(cls, content: _Mask, within: _Box) -> _CoreGrid | None:
        """The grid over ``within`` of ``content`` (the pixels counted as picture)."""
        left, top, right, bottom = within
        block = max(1, -(-max(bottom - top, right - left) // _GRID))
        rows, columns = (bottom - top) // block, (right - left) // block
        if rows < 2 or columns < 2:
            return None
        tiles = content[top : top + rows * block, left : left + columns * block]
        counts = tiles.reshape(rows, block, columns, block).sum(axis=(1, 3), dtype=np.int32)
        weights = counts.astype(np.float32) / np.float32(block * block) - np.float32(_DETAIL_SHARE)
        return cls(weights, within, block)

    def exclude(self, box: _Box) -> None:
        """Leave the blocks overlapping ``box`` out of later searches."""
        left, top = self.within[:2]
        first_column = max(0, (box[0] - left) // self.block)
        first_row = max(0, (box[1] - top) // self.block)
        last_column = -(-(box[2] - left) // self.block)
        last_row = -(-(box[3] - top) // self.block)
        self.weights[first_row:last_row, first_column:last_column] = -1.0

    def best(self) -> _Box | None:
        """The block-aligned rectangle with the greatest sum of weights; None when no
        rectangle has a positive sum.

        The maximum-sum subrectangle over the block grid, all top/bottom block-row pairs at
        once: for each pair the column sums form a 1-D array whose best run is its largest
        rise of running sum (Kadane), kept for all pairs in one sweep over the block columns."""
        weights, block = self.weights, self.block
        left, top = self.within[:2]
        rows, columns = weights.shape
        down = np.zeros((rows + 1, columns), dtype=np.float32)
        np.cumsum(weights, axis=0, out=down[1:])
        # band[c, t, b]: the weight of block column c over block rows t..b (used where t <= b).
        band = np.ascontiguousarray(
            (down[np.newaxis, 1:, :] - down[:-1, np.newaxis, :]).transpose(2, 0, 1)
        )
        running = np.zeros((rows, rows), dtype=np.float32)
        lowest = np.zeros((rows, rows), dtype=np.float32)
        best = np.full((rows, rows), -np.inf, dtype=np.float32)
        for column in band:
            running += column
            np.maximum(best, running - lowest, out=best)
            np.minimum(lowest, running, out=lowest)
        best[np.tri(rows, k=-1, dtype=np.bool_)] = -np.inf  # bottom above top
        first_row, last_row = (int(i) for i in np.unravel_index(int(np.argmax(best)), best.shape))
        if best[first_row, last_row] <= 0:
            return None
        along = np.zeros(columns + 1, dtype=np.float32)
        np.cumsum(band[:, first_row, last_row], out=along[1:])
        rises = along[1:] - np.minimum.accumulate(along[:-1])
        last_column = int(np.argmax(rises))
        first_column = int(np.argmin(along[: last_column + 1]))
        return (
            left + first_column * block,
            top + first_row * block,
            left + (last_column + 1) * block,
            top + (last_row + 1) * block,
        )


def _run_length(shares: _Floats, detailed: bool) -> int:
    """How many leading ``shares`` are (or, with ``detailed`` False, are not) detailed."""
    stops = np.flatnonzero((shares >= _DETAIL_SHARE) != detailed)
    return int(stops[0]) if stops.size else len(shares)


def _settle_on_detail(
    detail: _DetailMap,
    content: _Counts,
    pixels: _Pixels,
    palette: _Palette,
    box: _Box,
    within: _Box,
) -> _Box | None:
    """Move the block-aligned edges to pixel lines: grow over lines with detail along them
    (never over a flat UI line, however it differs from its neighbours), then drop edge lines
    that are not picture (:func:`_kept_lines`; ``content`` counts the picture pixels), twice
    (each side's share depends on the others)."""
    left, top, right, bottom = box
    min_left, min_top, max_right, max_bottom = within

    def kept_rows(rows: _Indices) -> _Mask:
        return _kept_lines(
            content.row_shares(rows, left, right),
            detail.row_shares(rows, left, right),
            palette.shares(pixels[rows, left:right]),
        )

    def kept_columns(columns: _Indices) -> _Mask:
        return _kept_lines(
            content.column_shares(columns, top, bottom),
            detail.column_shares(columns, top, bottom),
            palette.shares(pixels[top:bottom, columns].T),
        )

    for _ in range(2):
        top -= _run_length(
            detail.row_shares(np.arange(top - 1, min_top - 1, -1), left, right), True
        )
        bottom += _run_length(detail.row_shares(np.arange(bottom, max_bottom), left, right), True)
        left -= _run_length(
            detail.column_shares(np.arange(left - 1, min_left - 1, -1), top, bottom), True
        )
        right += _run_length(detail.column_shares(np.arange(right, max_right), top, bottom), True)
        top += _leading_false(kept_rows(np.arange(top, bottom)))
        bottom -= _leading_false(kept_rows(np.arange(bottom - 1, top - 1, -1)))
        if bottom - top <= 2:
            return None
        left += _leading_false(kept_columns(np.arange(left, right)))
        right -= _leading_false(kept_columns(np.arange(right - 1, left - 1, -1)))
        if right - left <= 2:
            return None
    return left, top, right, bottom


def _kept_lines(picture: _Floats, along: _Floats, of_ui: _Floats) -> _Mask:
    """Which of a run of lines (outermost first) hold picture: mostly picture pixels (shares
    ``picture``), and neither a plain line (few steps ``along`` it) of the UI's colours (a
    picture's column can be plain, like wood grain, but is rarely of the UI's colours: shares
    ``of_ui``) nor a plain line just outside one (the decode blends two UI colours where they
    meet: a bubble's rounded bottom over the wallpaper)."""
    plain = along < _PLAIN_SHARE
    plain_ui = plain & (of_ui >= _SURROUND_SHARE)
    before_plain_ui = np.zeros_like(plain_ui)
    before_plain_ui[:-1] = plain[:-1] & plain_ui[1:]
    kept: _Mask = (picture >= _DETAIL_SHARE) & ~plain_ui & ~before_plain_ui
    return kept


def _leading_false(mask: _Mask) -> int:
    stops = np.flatnonzero(mask)
    return int(stops[0]) if stops.size else len(mask)


def _continuing_lines(
    lines: _Pixels, ends: _Floats | None, ui_colours: _Floats, palette: _Palette
) -> int:
    """How many lines after the first carry the picture on: every line up to the first UI
    line. That is a flat line of the surroundings' colour, one of ``ui_colours`` (the colours
    along the search area's edges) or of the same line's own ``ends`` (its pixels where it
    meets the search area's edge, outside the picture; None when the picture reaches that
    edge), or a plain line of the UI's colours (``palette``: a bubble's edge beside the
    wallpaper, where the picture's bubble touches the next one)."""

    def carries_on(start: int, stop: int) -> _Mask:
        outward = lines[start + 1 : stop + 1]
        steps = np.abs(np.diff(outward, axis=1))
        mean = outward.mean(axis=1, dtype=np.float32)
        # Flat along the line, up to a slow gradient (wallpapers shade across the screen).
        flat = steps.mean(axis=1) <= _FLAT_LINE_STEP
        distance = np.abs(mean[:, np.newaxis] - ui_colours[np.newaxis, :]).min(axis=1)
        if ends is not None:
            distance = np.minimum(
                distance, np.abs(mean[:, np.newaxis] - ends[start + 1 : stop + 1]).min(axis=1)
            )
        # A plain line of UI colours with some of the surroundings' own colour in it: the
        # next bubble's edge (its fill beside the wallpaper). Not a flat fill of the picture
        # that happens to be a sharp colour too (an illustration's sky): that has none.
        plain = (steps > _FLAT_STEP).mean(axis=1) < _PLAIN_SHARE
        of_ui = palette.shares(outward) >= _SURROUND_SHARE
        beside = np.abs(outward[:, :, np.newaxis] - ui_colours[np.newaxis, np.newaxis, :])
        some_surroundings = (beside.min(axis=2) <= _PALETTE_TOLERANCE).mean(axis=1) >= 0.1
        bubble_edge = plain & of_ui & some_surroundings
        carries: _Mask = ~((flat & (distance <= _UI_TOLERANCE)) | bubble_edge)
        return carries

    return _leading(len(lines) - 1, carries_on)


def _continue_smooth_picture(pixels: _Pixels, palette: _Palette, box: _Box, within: _Box) -> _Box:
    """Grow each side over lines that carry the picture on (sky, skin, a blurred background
    have too little detail to be found by the detail search), up to the first flat line of
    the surroundings' colour: the UI background, a bar, a pad."""
    left, top, right, bottom = box
    min_left, min_top, max_right, max_bottom = within
    # The colours of the image's and the search area's edges where those are mostly UI (a
    # meme's caption row is mostly its bar; a photo running into an edge is no colour).
    edge_lines = (
        pixels[min_top, min_left:max_right],
        pixels[max_bottom - 1, min_left:max_right],
        pixels[min_top:max_bottom, min_left],
        pixels[min_top:max_bottom, max_right - 1],
        pixels[0],
        pixels[-1],
        pixels[:, 0],
        pixels[:, -1],
    )
    edges = np.array(
        [float(_median(line)) for line in edge_lines if _flat_line(line, _EDGE_UI_SHARE)]
        or [np.inf],
        dtype=np.float32,
    )
    border_columns = pixels[:, [min_left, max_right - 1]].astype(np.float32)
    border_rows = pixels[[min_top, max_bottom - 1], :].T.astype(np.float32)
    for _ in range(2):
        # Beside the picture, along the edges it grows towards: the wallpaper at the
        # picture's own height (or width), however a gradient shifts it elsewhere.
        vertical_ui = np.concatenate(
            [edges, border_rows[left:right].mean(axis=0)]  # above and below the picture
        )
        horizontal_ui = np.concatenate([edges, border_columns[top:bottom].mean(axis=0)])
        row_ends = None if (left, right) == (min_left, max_right) else border_columns
        column_ends = None if (top, bottom) == (min_top, max_bottom) else border_rows
        top -= _continuing_lines(
            pixels[min_top : top + 1, left:right][::-1],
            None if row_ends is None else row_ends[min_top : top + 1][::-1],
            vertical_ui,
            palette,
        )
        bottom += _continuing_lines(
            pixels[bottom - 1 : max_bottom, left:right],
            None if row_ends is None else row_ends[bottom - 1 : max_bottom],
            vertical_ui,
            palette,
        )
        left -= _continuing_lines(
            pixels[top:bottom, min_left : left + 1].T[::-1],
            None if column_ends is None else column_ends[min_left : left + 1][::-1],
            horizontal_ui,
            palette,
        )
        right += _continuing_lines(
            pixels[top:bottom, right - 1 : max_right].T,
            None if column_ends is None else column_ends[right - 1 : max_right],
            horizontal_ui,
            palette,
        )
    return left, top, right, bottom


def _tighten(pixels: _Pixels, box: _Box) -> _Box:
    """Take the frame off the picture's edges, side by side: up to :data:`_MARGIN_LINES`
    flat lines (a bubble's margin, which has a colour of its own and so is grown over), then
    a line that is more the frame than the picture (the decode blends the boundary into one
    line). A line of frame costs a hash far more than a line of picture lost."""
    left, top, right, bottom = box
    height, width = pixels.shape
    top += _frame_lines(
        pixels[top:bottom, left:right], pixels[top - 1, left:right] if top else None
    )
    bottom -= _frame_lines(
        pixels[top:bottom, left:right][::-1],
        pixels[bottom, left:right] if bottom < height else None,
    )
    left += _frame_lines(
        pixels[top:bottom, left:right].T, pixels[top:bottom, left - 1] if left else None
    )
    right -= _frame_lines(
        pixels[top:bottom, left:right].T[::-1],
        pixels[top:bottom, right] if right < width else None,
    )
    return left, top, right, bottom


def _frame_lines(lines: _Pixels, outside: _Pixels | None) -> int:
    """How many leading ``lines`` are frame (see :func:`_tighten`); ``outside`` is the line
    just before them, None at the image's edge."""
    if len(lines) <= 2 * _MARGIN_LINES + 2:
        return 0
    length = lines.shape[1]
    inner = slice(length // _CORNER_SHARE_INVERSE, length - length // _CORNER_SHARE_INVERSE)
    dropped = 0
    while dropped < _MARGIN_LINES and _margin_line(lines[dropped, inner]):
        dropped += 1
    reference = lines[dropped - 1] if dropped else outside
    if reference is not None:
        line, next_line = (lines[dropped, inner], lines[dropped + 1, inner])
        to_frame = float(np.abs(line - reference[inner]).mean())
        to_picture = float(np.abs(line - next_line).mean())
        if to_frame < to_picture:
            dropped += 1
    return dropped


def _margin_line(line: _Pixels) -> bool:
    """A flat line of one colour (a bubble's margin), up to JPEG's noise."""
    close = np.abs(line - _median(line)) <= _PAD_TOLERANCE
    steady = np.abs(np.diff(line)) <= 1
    return bool(
        np.count_nonzero(close) >= _PAD_SHARE * len(line)
        and np.count_nonzero(steady) >= _PAD_SHARE * (len(line) - 1)
    )


def _flat_line(line: _Pixels, share: float = 0.0) -> bool:
    """Whether ``share`` (default :data:`_SURROUND_SHARE`) of ``line`` is one colour."""
    close = np.abs(line - _median(line)) <= _UI_TOLERANCE
    return bool(np.count_nonzero(close) >= (share or _SURROUND_SHARE) * len(line))


def _ui_line(line: _Pixels) -> bool:
    """A line of flat UI just outside a picture: on :data:`_SURROUND_SHARE` of it (the rest:
    rounded corners, a bubble's edge) one colour, changing by at most a level from pixel to
    pixel (a wallpaper's gradient passes; a photo's smooth shadows, noisier, do not)."""
    steady = np.abs(np.diff(line)) <= 1
    return _flat_line(line) and bool(np.count_nonzero(steady) >= _SURROUND_SHARE * (len(line) - 1))


_STACKED = ("top", "bottom")


def _plain_ui_line(line: _Pixels, palette: _Palette) -> bool:
    """A line with few steps along it, of the UI's colours."""
    steps = int(np.count_nonzero(np.abs(np.diff(line)) > _FLAT_STEP))
    return steps < _PLAIN_SHARE * len(line) and bool(
        palette.shares(line[np.newaxis])[0] >= _SURROUND_SHARE
    )


def _surrounded_by_flat_ui(pixels: _Pixels, palette: _Palette, box: _Box, within: _Box) -> bool:
    """Whether flat UI lies just outside ``box`` on two opposite sides (top and bottom, or
    left and right), and on every side that is not on ``within``'s edge: a line of one
    colour (:func:`_ui_line`), or above and below a plain line of the UI's colours (the
    wallpaper and the edge of the next message, which can start right below a picture:
    messages stack vertically, never side by side)."""
    left, top, right, bottom = box
    min_left, min_top, max_right, max_bottom = within
    reach = _SURROUND_REACH
    above = range(top - 1, max(min_top, top - reach) - 1, -1)
    before = range(left - 1, max(min_left, left - reach) - 1, -1)
    outside = {
        "top": [pixels[y, left:right] for y in above],
        "bottom": [pixels[y, left:right] for y in range(bottom, min(max_bottom, bottom + reach))],
        "left": [pixels[top:bottom, x] for x in before],
        "right": [pixels[top:bottom, x] for x in range(right, min(max_right, right + reach))],
    }
    flat: dict[str, bool] = {}
    for side, lines in outside.items():
        if lines:  # on the search area's edge there is nothing outside to judge
            flat[side] = any(
                _ui_line(line) or (side in _STACKED and _plain_ui_line(line, palette))
                for line in lines
            )
            if not flat[side]:
                return False
    return (flat.get("top", False) and flat.get("bottom", False)) or (
        flat.get("left", False) and flat.get("right", False)
    )
