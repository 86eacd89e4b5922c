"""The benign pictures ``pipeline bench quality`` measures on, and the low-information set.

Owns where the photos come from and which side of the list they fall on. Two corpora:

* ``debian`` (the default): wallpapers and backgrounds that Debian packages install under
  ``/usr/share`` (all under free licences, see each package's copyright file), plus
  scikit-image's bundled photos. Every package is wholly a *member* source (its pictures are
  the hotline's "known" list) or wholly a *non-member* source (pictures that must never
  match), so two variants of one picture (light/dark, several resolutions, with and without a
  logo) never end up on both sides. Within a package one file per picture name is kept
  (``Elephants.jpg`` / ``Elephants_3840x2160.jpg``, ``wood-l`` / ``wood-d``, a Plasma
  wallpaper's dozen sizes): the size closest above ``max_side``.
* ``skimage``: scikit-image's bundled photos only, split between members and non-members by
  the seed (no package needed; what the tests run).

Each picture is normalised once, in memory: RGB (transparency flattened onto white, as a
viewer shows it), at most ``max_side`` pixels on its longer side (a platform-sized copy; the
big wallpapers would otherwise dominate the run time) and JPEG-encoded at quality 95. Those
bytes are "the original file" the hotline lists and the benchmark transforms.

It also generates the low-information pictures (uniform, near-uniform, gradients, vignettes,
stripes: :func:`low_information_pictures`), which must never match anything.

Must not: write anything to disk, or download anything (a missing package is reported with the
``apt-get install`` line that provides it).
"""

from __future__ import annotations

import io
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

MEMBER = "member"
NON_MEMBER = "non-member"

#: The JPEG quality of the normalised "original file".
ORIGINAL_QUALITY = 95


@dataclass(frozen=True, slots=True)
class Source:
    """Pictures one Debian package installs: ``patterns`` globbed under ``directory``."""

    package: str
    directory: str
    patterns: tuple[str, ...]
    role: str
    #: Pictures whose shorter side is below this are skipped (icons, thumbnails).
    min_side: int = 256
    #: Relative paths matching this regular expression are skipped.
    exclude: str | None = None


_IMAGES = ("**/*.jpg", "**/*.jpeg", "**/*.png", "**/*.webp", "**/*.gif")

#: The four pictures lomiri-wallpapers-20.04 adds beside 16.04's in the same directory.
_LOMIRI_2004_NAMES = ("Fossa", "Infinite-Sea", "Kleiber", "Painting-Colors")
_LOMIRI_2004 = "^(" + "|".join(_LOMIRI_2004_NAMES) + ")_by_"

#: The Debian sources, members first. Members: photos and wallpapers of six packages plus
#: scikit-image's photos. Non-members: Plasma's wallpapers, Scratch's photo backgrounds, Tux
#: Paint's photo templates and its stamps (photos and drawings of objects, animals, food, on
#: white; symbols and letters left out).
DEBIAN_SOURCES: tuple[Source, ...] = (
    Source("mate-backgrounds", "/usr/share/backgrounds/mate", _IMAGES, MEMBER),
    Source(
        "lomiri-wallpapers-16.04",
        "/usr/share/backgrounds",
        ("*_by_*.jpg",),
        MEMBER,
        exclude=_LOMIRI_2004,
    ),
    Source(
        "lomiri-wallpapers-20.04",
        "/usr/share/backgrounds",
        tuple(f"{name}_by_*.jpg" for name in _LOMIRI_2004_NAMES),
        MEMBER,
    ),
    Source("lxqt-themes", "/usr/share/lxqt/wallpapers", _IMAGES, MEMBER),
    Source(
        "ukui-wallpapers", "/usr/share/backgrounds", ("*.jpg", "*.png"), MEMBER, exclude=r"_by_"
    ),
    Source("gnome-backgrounds", "/usr/share/backgrounds/gnome", _IMAGES, MEMBER),
    Source(
        "plasma-workspace-wallpapers",
        "/usr/share/wallpapers",
        _IMAGES,
        NON_MEMBER,
        exclude=r"/screenshot\.",
    ),
    Source("scratch", "/usr/share/scratch/Media/Backgrounds", _IMAGES, NON_MEMBER),
    Source("tuxpaint-data", "/usr/share/tuxpaint/templates", _IMAGES, NON_MEMBER),
    Source(
        "tuxpaint-stamps-default",
        "/usr/share/tuxpaint/stamps",
        ("**/*.png",),
        NON_MEMBER,
        min_side=100,
        exclude=r"^symbols/|_mirror|_flip",
    ),
)

#: Every picture scikit-image bundles (no download), as ``pipeline bench hashing`` uses them.
SKIMAGE_PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page", "text",
    "horse", "hubble_deep_field", "immunohistochemistry", "retina", "logo", "brick", "grass",
    "gravel", "colorwheel", "cell", "clock",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Picture:
    """One normalised picture: where it came from and its "original file" bytes."""

    source: str
    name: str
    original: bytes
    width: int
    height: int

    @property
    def label(self) -> str:
        """``source:name``, unique in a corpus: the list entry id."""
        return f"{self.source}:{self.name}"

    def image(self) -> Image.Image:
        """The decoded original (RGB)."""
        with Image.open(io.BytesIO(self.original)) as image:
            return image.convert("RGB")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file a source offers, before it is decoded."""

    source: str
    name: str
    load: Callable[[], Image.Image]


@dataclass
class Survey:
    """What the sources offer: candidates per role, and the packages that are not installed."""

    members: list[Candidate] = field(default_factory=list)
    non_members: list[Candidate] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def apt_line(self) -> str:
        """The command that installs the missing packages."""
        return "apt-get install --no-install-recommends " + " ".join(self.missing)


_RESOLUTION = re.compile(r"[_-]\d{3,5}x\d{3,5}$")
_VARIANT = re.compile(r"-[dl]$")
_PLASMA = re.compile(r"^([^/]+)/contents/images(?:_dark)?/\d+x\d+\.\w+$")


def picture_key(relative: str) -> str:
    """The picture a file is a copy of: several files with one key are one picture.

    ``Next/contents/images/1920x1080.png`` -> ``Next`` (a Plasma wallpaper's sizes and dark
    variant); ``Elephants_3840x2160.jpg`` -> ``Elephants``; ``wood-d.webp`` -> ``wood`` (GNOME's
    dark/light pairs); otherwise the path without its extension.
    """
    plasma = _PLASMA.match(relative)
    if plasma:
        return plasma.group(1)
    stem = relative.rsplit(".", 1)[0]
    return _VARIANT.sub("", _RESOLUTION.sub("", stem))


def _open_rgb(path: Path, max_side: int) -> Image.Image:
    with Image.open(path) as image:
        if image.format == "JPEG":
            image.draft("RGB", (max_side, max_side))  # decode big JPEGs reduced: much faster
        return flatten(image)


def flatten(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, (0, 0), rgba)
        return canvas
    return image.convert("RGB")


def _source_files(source: Source, max_side: int) -> list[Candidate]:
    root = Path(source.directory)
    exclude = re.compile(source.exclude) if source.exclude else None
    best: dict[str, tuple[tuple[int, int], Path]] = {}
    for pattern in source.patterns:
        for path in root.glob(pattern):
            relative = path.relative_to(root).as_posix()
            if exclude and exclude.search(relative):
                continue
            try:
                with Image.open(path) as probe:
                    width, height = probe.size
            except (OSError, ValueError):
                continue  # not a picture Pillow reads: not part of the corpus
            if min(width, height) < source.min_side:
                continue
            key = picture_key(relative)
            # One file per picture: the smallest at least max_side long, else the largest.
            rank = (0, max(width, height)) if max(width, height) >= max_side else (1, -width)
            if key not in best or rank < best[key][0]:
                best[key] = (rank, path)
    return [
        Candidate(source.package, key, partial(_open_rgb, path, max_side))
        for key, (_, path) in sorted(best.items())
    ]


def _skimage_photo(name: str) -> Image.Image:
    from skimage import data

    pixels = np.asarray(getattr(data, name)())
    if pixels.dtype != np.uint8:  # a few are bool or float
        pixels = (pixels * 255 if pixels.max() <= 1 else pixels).astype(np.uint8)
    return flatten(Image.fromarray(pixels))


def _skimage_candidates() -> list[Candidate]:
    return [Candidate("skimage", name, partial(_skimage_photo, name)) for name in SKIMAGE_PHOTOS]


def survey(corpus: str, max_side: int, seed: int) -> Survey:
    """The candidates of ``corpus`` ("debian" or "skimage"); see the module docstring."""
    found = Survey()
    if corpus == "skimage":
        photos = _skimage_candidates()
        random.Random(seed).shuffle(photos)  # noqa: S311 - a reproducible split
        half = len(photos) // 2
        found.members, found.non_members = photos[:half], photos[half:]
        return found
    if corpus != "debian":
        raise ValueError(f"unknown corpus {corpus!r}: debian or skimage")
    found.members.extend(_skimage_candidates())
    for source in DEBIAN_SOURCES:
        if not Path(source.directory).is_dir():
            found.missing.append(source.package)
            continue
        files = _source_files(source, max_side)
        if not files:
            found.missing.append(source.package)
        (found.members if source.role == MEMBER else found.non_members).extend(files)
    return found


def shuffled(candidates: list[Candidate], seed: int) -> list[Candidate]:
    """The candidates in an order fixed by the seed: the first ``n`` that load are the sample."""
    order = list(candidates)
    random.Random(seed).shuffle(order)  # noqa: S311 - a reproducible sample
    return order


#: A picture whose 64x64 greyscale thumbnail varies less than this (standard deviation, of
#: 255) has no picture of its own: a transparent overlay the desktop colours (MATE's Silk,
#: Waves, ...), a tiny tile, a blank. Such pictures are left out of the photo corpus on both
#: sides; the low-information set measures them on purpose.
BLANK_STD = 2.0


def is_blank(image: Image.Image) -> bool:
    """Whether ``image`` has no detail of its own (see :data:`BLANK_STD`)."""
    thumbnail = image.convert("L").resize((64, 64), Image.Resampling.BOX)
    return float(np.asarray(thumbnail, dtype=np.float64).std()) < BLANK_STD


def encode_original(image: Image.Image, max_side: int) -> tuple[bytes, int, int]:
    """The normalised original file: at most ``max_side`` long, JPEG quality 95."""
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=ORIGINAL_QUALITY)
    return buffer.getvalue(), image.width, image.height


def load(
    candidates: Iterable[Candidate], count: int, max_side: int, skipped: list[str] | None = None
) -> Iterator[Picture]:
    """Decode and normalise candidates in order until ``count`` pictures were yielded, one at a
    time (only the JPEG bytes are kept). Blank pictures (:func:`is_blank`) are passed over and
    their labels appended to ``skipped``."""
    yielded = 0
    for candidate in candidates:
        if yielded >= count:
            return
        image = candidate.load()
        if is_blank(image):
            if skipped is not None:
                skipped.append(f"{candidate.source}:{candidate.name}")
            continue
        original, width, height = encode_original(image, max_side)
        yield Picture(candidate.source, candidate.name, original, width, height)
        yielded += 1


# -- low-information pictures ------------------------------------------------------------------

Pixels = npt.NDArray[np.float64]


def _grid(width: int, height: int) -> tuple[Pixels, Pixels]:
    """x and y in [0, 1], shaped (height, width)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    return x / (width - 1), y / (height - 1)


def _rgb(channels: Pixels) -> Image.Image:
    array = np.clip(np.rint(channels * 255), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return Image.fromarray(array, "RGB")


def _tint(value: Pixels, low: tuple[int, int, int], high: tuple[int, int, int]) -> Pixels:
    low_a, high_a = np.array(low) / 255, np.array(high) / 255
    result: Pixels = low_a + value[..., None] * (high_a - low_a)
    return result


def low_information_pictures(width: int = 1280, height: int = 720, seed: int = 0) -> list[
    tuple[str, str, Image.Image]
]:  # fmt: skip
    """(family, kind, picture) for 22 pictures with no photographic detail.

    Families as the issue names them: uniform (flat colours, faint noise), gradient (linear,
    diagonal, two-colour, banded, sky), vignette (radial, inverted, off-centre), stripes
    (vertical, horizontal, fine, diagonal, checkerboard, rings), plus two-tone splits and a
    heavily blurred blob field.
    """
    rng = np.random.default_rng(seed)
    x, y = _grid(width, height)
    r = np.hypot(x - 0.5, (y - 0.5) * height / width) / 0.5
    noise = rng.normal(0.0, 3 / 255, (height, width))
    blobs = np.asarray(
        Image.fromarray((rng.random((6, 10)) * 255).astype(np.uint8)).resize(
            (width, height), Image.Resampling.BICUBIC
        ),
        dtype=np.float64,
    ) / 255  # fmt: skip
    pictures: list[tuple[str, str, Pixels]] = [
        ("uniform", "black", np.zeros((height, width))),
        ("uniform", "white", np.ones((height, width))),
        ("uniform", "mid grey", np.full((height, width), 0.5)),
        ("uniform", "blue", _tint(np.zeros((height, width)), (30, 90, 200), (0, 0, 0))),
        ("uniform", "grey + faint noise", 0.5 + noise),
        ("gradient", "horizontal", x),
        ("gradient", "vertical", y),
        ("gradient", "diagonal", (x + y) / 2),
        ("gradient", "two-colour", _tint(x, (200, 40, 90), (30, 60, 200))),
        ("gradient", "banded (8 levels)", np.floor(y * 8) / 7),
        ("gradient", "sky", _tint(y**0.7, (40, 110, 220), (250, 200, 150)) + noise[..., None]),
        ("vignette", "radial", 1 - np.clip(r, 0, 1) ** 1.5),
        ("vignette", "inverted", np.clip(r, 0, 1) ** 1.5),
        ("vignette", "off-centre", 1 - np.clip(np.hypot(x - 0.3, y - 0.35), 0, 1)),
        ("stripes", "vertical (8)", (np.floor(x * 8) % 2)),
        ("stripes", "horizontal (8)", (np.floor(y * 8) % 2)),
        ("stripes", "fine vertical (64)", (np.floor(x * 64) % 2)),
        ("stripes", "diagonal", (np.floor((x + y) * 6) % 2)),
        ("stripes", "checkerboard", (np.floor(x * 8) + np.floor(y * 8)) % 2),
        ("stripes", "rings", 0.5 + 0.5 * np.cos(r * 6 * np.pi)),
        ("two-tone", "split", (x > 0.5).astype(np.float64) * 0.6 + 0.2),
        ("blobs", "blurred blob field", blobs),
    ]
    return [(family, kind, _rgb(channels)) for family, kind, channels in pictures]
