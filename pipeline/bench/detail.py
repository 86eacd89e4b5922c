"""``pipeline bench detail``: the low-information gate and list-entry flag, measured.

Generates low-information pictures of 37 kinds (uniform in six colours, with sensor noise and
JPEG noise; linear gradients in six directions and a faint one; radial vignettes, inverse,
off-centre, soft, spotlight, with grain; square and sine stripes of six periods at four angles;
checkerboards of four cell sizes; rings; polka dots; two-tone halves; faint noise and clouds) at
five sizes, each as decoded and after JPEG quality 75, and benign pictures: scikit-image's
bundled photos and drawings, each also at JPEG q10, blurred, at half contrast, darkened 30% and
in four crops; the demo's synthetic pictures; and any image files under ``--photos`` folders
(default: the Debian wallpaper folders, when installed).

Prints the decided pHash bits (:func:`pipeline.core.detail.decided_bits`) per family (min,
median, max) and how many of each the gate refuses; the benign pictures the gate refuses (must
be ~0), with the lowest counts; whether the gate can be switched on over a photo whose pHash
still matches (:data:`OVERLAYS` at three strengths, contrast cut to 50% down to 3%, blurs),
through the upload path; false matches of the low-information pictures (all eight orientations)
against a list made of the benign pictures' pHash and dHash at pHash 8 / dHash 10, by plain
radius without and with the gate and by the matcher's own rules (gate, dHash rule); how many
benign hashes :func:`low_information_hash` flags; and the cost of one
:func:`is_low_information` call. Nothing is written but the JSON.
"""

from __future__ import annotations

import argparse
import io
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageEnhance, ImageFilter

from pipeline.config import Settings

SIZES: tuple[tuple[int, int], ...] = (
    (320, 240),
    (640, 480),
    (1920, 1080),
    (1080, 1920),
    (512, 512),
)
PHOTO_DIRS = ("/usr/share/backgrounds", "/usr/share/wallpapers", "/usr/share/images/desktop-base")
SKIMAGE_PICTURES = (
    "astronaut",
    "camera",
    "cat",
    "chelsea",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
    "logo",
    "brick",
    "clock",
    "colorwheel",
    "cell",
    "shepp_logan_phantom",
    "binary_blobs",
    "checkerboard",
)
#: Drawings that are low-information patterns themselves (gated on purpose, reported apart).
PATTERN_DRAWINGS = ("colorwheel", "checkerboard")
PHASH_RADIUS, DHASH_RADIUS = 8, 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pipeline bench detail``."""
    parser.add_argument(
        "--photos",
        action="append",
        type=Path,
        help=f"folder of benign image files to add (repeatable; default: {', '.join(PHOTO_DIRS)}"
        " where present)",
    )
    parser.add_argument("--max-files", type=int, default=400, help="files read per folder")


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("L")


def _grey(values: npt.NDArray[np.float64]) -> Image.Image:
    return Image.fromarray(np.clip(values * 255, 0, 255).astype(np.uint8), "L")


def _gradient(
    width: int, height: int, low: tuple[int, ...], high: tuple[int, ...], degrees: float
) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    t = np.cos(np.radians(degrees)) * x / width + np.sin(np.radians(degrees)) * y / height
    t = (t - t.min()) / (np.ptp(t) or 1.0)
    rgb = (1 - t)[..., None] * np.array(low) + t[..., None] * np.array(high)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def low_information_family(
    width: int, height: int, rng: np.random.Generator
) -> Iterator[tuple[str, str, Image.Image]]:
    """(family, variant, picture) of every low-information kind at one size."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / width, y / height
    for colour in (
        (0, 0, 0),
        (255, 255, 255),
        (128, 128, 128),
        (200, 30, 30),
        (20, 40, 160),
        (230, 190, 160),
    ):
        yield "uniform", str(colour), Image.new("RGB", (width, height), colour)
    yield "uniform+sensor_noise", "", _grey(0.5 + rng.normal(0, 2 / 255, (height, width)))
    for degrees in (0, 90, 180, 30, 45, 135):
        yield (
            "gradient",
            f"{degrees}deg",
            _gradient(width, height, (10, 20, 60), (240, 200, 120), degrees),
        )
    yield "gradient_faint", "", _gradient(width, height, (100, 100, 110), (140, 140, 150), 17)
    grad = np.asarray(_gradient(width, height, (40, 40, 40), (200, 200, 200), 29).convert("L"))
    yield "gradient+grain", "", _grey(grad / 255 + rng.normal(0, 4 / 255, (height, width)))
    r = np.hypot((u - 0.5) * width / height, v - 0.5)
    yield "vignette", "", _grey(1 - 1.2 * r)
    yield "vignette_inverse", "", _grey(0.2 + 1.2 * r)
    yield "vignette_offcentre", "", _grey(1 - np.hypot((u - 0.3) * width / height, v - 0.6))
    yield "vignette_soft", "", _grey(0.6 - 0.3 * r**2)
    yield "vignette+grain", "", _grey(1 - 1.2 * r + rng.normal(0, 6 / 255, (height, width)))
    yield "spotlight", "", _grey(np.exp(-((r / 0.25) ** 2)))
    for period in (4, 8, 16, 32, 64, 128):
        for degrees in (0, 90, 45, 20):
            phase = (np.cos(np.radians(degrees)) * x + np.sin(np.radians(degrees)) * y) / period
            yield (
                "stripes_square",
                f"p{period}/{degrees}deg",
                _grey(0.2 + 0.6 * (np.floor(2 * phase) % 2)),
            )
        yield "stripes_sine", f"p{period}", _grey(0.5 + 0.4 * np.sin(2 * np.pi * x / period))
    for cell in (8, 32, 64, 160):
        yield (
            "checkerboard",
            f"cell{cell}",
            _grey(0.1 + 0.8 * ((np.floor(x / cell) + np.floor(y / cell)) % 2)),
        )
    yield "rings", "", _grey(0.5 + 0.4 * np.sin(2 * np.pi * r * 8))
    yield "polka", "", _grey(0.8 - 0.6 * (((x % 40 - 20) ** 2 + (y % 40 - 20) ** 2) < 64))
    yield "two_tone_halves", "", _grey(0.1 + 0.8 * (u > 0.5))
    yield "faint_noise", "", _grey(0.5 + rng.normal(0, 3 / 255, (height, width)))
    coarse = Image.fromarray((rng.random((6, 8)) * 255).astype(np.uint8))
    clouds = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), np.float64)
    yield "faint_clouds", "", _grey(0.5 + 0.03 * (clouds / 255 - 0.5))


def low_information_pictures(seed: int = 0) -> Iterator[tuple[str, str, Image.Image]]:
    """Every family at every size, as decoded and after JPEG q75 (grayscale, as hashed)."""
    rng = np.random.default_rng(seed)
    for width, height in SIZES:
        for family, variant, image in low_information_family(width, height, rng):
            label = f"{variant} {width}x{height}".strip()
            yield family, label, image.convert("L")
            yield family, f"{label} q75", _jpeg(image, 75)


#: The overlays an outside review used to switch the old gate on over a real photo, each a
#: texture added at +-strength grey levels (``pipeline bench detail`` and the tests measure them).
#: Sizes are in pixels of pHash's 32-pixel thumbnail, so they hold at any picture size:
#: ``stripes`` vertical square stripes of period 2.2 (just under the thumbnail's Nyquist limit),
#: ``stripes_h`` the same turned, ``checker`` a checkerboard of 1.5-pixel cells, ``noise``
#: random blocks of one thumbnail pixel.
OVERLAYS = ("stripes", "stripes_h", "checker", "noise")


def overlay(image: Image.Image, pattern: str, strength: float, seed: int = 0) -> Image.Image:
    """``image`` in grayscale with ``pattern`` (one of :data:`OVERLAYS`) added at +-``strength``
    grey levels, clipped to 0-255. Deterministic for a given ``seed``."""
    pixels = np.asarray(image.convert("L"), dtype=np.float64)
    height, width = pixels.shape
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    cell_x, cell_y = width / 32, height / 32  # one pixel of pHash's thumbnail
    if pattern == "stripes":
        texture = np.sign(np.sin(2 * np.pi * x / (2.2 * cell_x)))
    elif pattern == "stripes_h":
        texture = np.sign(np.sin(2 * np.pi * y / (2.2 * cell_y)))
    elif pattern == "checker":
        texture = 2 * ((np.floor(x / (1.5 * cell_x)) + np.floor(y / (1.5 * cell_y))) % 2) - 1
    elif pattern == "noise":
        blocks = np.random.default_rng(seed).choice([-1.0, 1.0], size=(33, 33))
        texture = blocks[(y / cell_y).astype(int), (x / cell_x).astype(int)]
    else:
        raise ValueError(f"unknown overlay {pattern!r}; known: {', '.join(OVERLAYS)}")
    return Image.fromarray(np.clip(pixels + strength * texture, 0, 255).astype(np.uint8), "L")


def skimage_picture(name: str) -> Image.Image | None:
    """A bundled scikit-image picture in grayscale (None when it needs a download)."""
    from skimage import data

    try:
        pixels = np.asarray(getattr(data, name)())
    except Exception:  # a picture scikit-image would have to download
        return None
    if pixels.dtype == np.bool_:
        pixels = pixels.astype(np.uint8) * 255
    if pixels.dtype != np.uint8:
        pixels = pixels.astype(np.float64)
        pixels = ((pixels - pixels.min()) / (np.ptp(pixels) or 1.0) * 255).astype(np.uint8)
    if pixels.ndim == 3:
        pixels = pixels[..., :3]
    return Image.fromarray(pixels).convert("L")


def edits(name: str, image: Image.Image) -> Iterator[tuple[str, Image.Image]]:
    """A benign picture, four edits of it and four crops."""
    width, height = image.size
    yield name, image
    yield f"{name}/q10", _jpeg(image, 10)
    yield f"{name}/blur", image.filter(ImageFilter.GaussianBlur(max(width, height) / 200))
    yield f"{name}/contrast-50%", ImageEnhance.Contrast(image).enhance(0.5)
    yield f"{name}/darker-30%", ImageEnhance.Brightness(image).enhance(0.7)
    boxes = (
        (0, 0, width // 2, height // 2),
        (width // 2, height // 2, width, height),
        (width // 4, height // 4, 3 * width // 4, 3 * height // 4),
        (0, height // 3, width, 2 * height // 3),
    )
    for number, box in enumerate(boxes):
        yield f"{name}/crop{number}", image.crop(box)


def benign_pictures(folders: list[Path], max_files: int) -> Iterator[tuple[str, str, Image.Image]]:
    """(source, name, grayscale picture) of every benign picture measured."""
    from pipeline.demo.images import synthetic_image

    for name in SKIMAGE_PICTURES:
        image = skimage_picture(name)
        if image is not None:
            source = "pattern_drawing" if name in PATTERN_DRAWINGS else "skimage"
            for label, edited in edits(name, image):
                yield source, label, edited
    for seed in range(40):
        yield "demo_synthetic", f"seed{seed}", synthetic_image(seed).convert("L")
    for folder in folders:
        files = sorted(
            p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"}
        )
        for path in files[:max_files]:
            try:
                with Image.open(path) as opened:
                    opened.draft("L", (256, 256))
                    image = opened.convert("L")
            except (OSError, ValueError):
                continue
            yield f"files:{folder}", str(path.relative_to(folder)), image


#: Contrast factors and blur radii (in pixels of pHash's 32-pixel thumbnail) the evasion table
#: applies besides the overlays.
CONTRASTS = (0.5, 0.25, 0.12, 0.06, 0.03)
BLURS = (1.0, 2.0, 3.0, 4.0)


def _treated(picture: Image.Image) -> Iterator[tuple[str, str, Image.Image]]:
    """(treatment, strength, picture) of every evasion attempt on one photo."""
    for pattern in OVERLAYS:
        for strength in (24, 48, 96):
            yield f"overlay {pattern}", f"+-{strength}", overlay(picture, pattern, strength)
    pixels = np.asarray(picture, dtype=np.float64)
    for factor in CONTRASTS:
        cut = pixels.mean() + (pixels - pixels.mean()) * factor
        yield "contrast cut", f"x{factor}", Image.fromarray(np.clip(cut, 0, 255).astype(np.uint8))
    for radius in BLURS:
        blurred = picture.filter(ImageFilter.GaussianBlur(radius * max(picture.size) / 32))
        yield "blur", f"{radius:g} thumbnail px", blurred


def evasion_rows(threshold: int = PHASH_RADIUS) -> list[list[str]]:
    """Per treatment of scikit-image's photos: uploads (JPEG q92, the production hashing path)
    whose pHash is still within ``threshold`` of the photo's own, and how many of those the gate
    refuses (an evasion, unless the treatment destroyed the picture: a blur to a blob)."""
    import imagehash

    from pipeline.core.guard import GuardLimits
    from pipeline.core.hashing import bits_to_int, hash_image
    from pipeline.core.types import Algorithm

    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for name in SKIMAGE_PICTURES:
        picture = skimage_picture(name)
        if picture is None or name in PATTERN_DRAWINGS:
            continue
        listed = bits_to_int(imagehash.phash(picture).hash)
        for treatment, strength, treated in _treated(picture):
            buffer = io.BytesIO()
            treated.convert("RGB").save(buffer, "JPEG", quality=92)
            upload = hash_image(buffer.getvalue(), GuardLimits())
            row = counts[(treatment, strength)]
            row[0] += 1
            if (upload.hashes[Algorithm.PHASH] ^ listed).bit_count() <= threshold:
                row[1] += 1
                row[2] += upload.views[0].low_information
    return [
        [t, s, str(n), str(matching), str(gated)] for (t, s), (n, matching, gated) in counts.items()
    ]


def _views(hashes: Any, gated: bool) -> list[Any]:
    from pipeline.core.hashing import View
    from pipeline.core.regions import Region

    return [View(Region.whole(100, 100), hashes, low_information=gated)]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the measurement; print the tables and write JSON."""
    from pipeline.application.tables import format_table
    from pipeline.bench.report import write_json
    from pipeline.core.detail import (
        MIN_DECIDED_BITS,
        decided_bits,
        is_low_information,
        low_information_hash,
    )
    from pipeline.core.hashlist import Category, HashListEntry, ListConfig
    from pipeline.core.matching import Matcher
    from pipeline.core.orientation import oriented_perceptual_hashes
    from pipeline.core.types import Algorithm, HashValue

    folders = args.photos or [Path(p) for p in PHOTO_DIRS if Path(p).is_dir()]
    low: list[tuple[str, str, int, bool, Any]] = []
    for family, label, image in low_information_pictures():
        hashes = oriented_perceptual_hashes(image)
        low.append((family, label, decided_bits(image), is_low_information(image), hashes))
    benign: list[tuple[str, str, int, bool, Any]] = []
    for source, name, image in benign_pictures(folders, args.max_files):
        hashes = oriented_perceptual_hashes(image)
        benign.append((source, name, decided_bits(image), is_low_information(image), hashes))

    by_family: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for family, _, bits, gated, _ in low:
        by_family[family].append((bits, gated))
    family_rows = [
        [
            family,
            str(len(rows)),
            str(min(b for b, _ in rows)),
            f"{float(np.median([b for b, _ in rows])):.0f}",
            str(max(b for b, _ in rows)),
            f"{sum(g for _, g in rows)}/{len(rows)}",
        ]
        for family, rows in by_family.items()
    ]
    print(
        f"Low-information pictures: pHash bits decided (gate below {MIN_DECIDED_BITS} of 64,"
        " or tied coefficients) and gated"
    )
    print(format_table(["family", "n", "min", "median", "max", "gated"], family_rows))

    sources: dict[str, list[tuple[str, int, bool]]] = defaultdict(list)
    for source, name, bits, gated, _ in benign:
        sources[source].append((name, bits, gated))
    source_rows = []
    for source, rows in sources.items():
        counts = [b for _, b, _ in rows]
        lowest = sorted(rows, key=lambda r: r[1])[:3]
        source_rows.append(
            [
                source,
                str(len(rows)),
                str(min(counts)),
                f"{float(np.percentile(counts, 5)):.0f}",
                f"{float(np.median(counts)):.0f}",
                f"{sum(g for _, _, g in rows)}",
                ", ".join(f"{n} {b}" for n, b, _ in lowest),
            ]
        )
    print("\nBenign pictures: pHash bits decided and wrongly gated")
    print(format_table(["source", "n", "min", "p5", "median", "gated", "lowest"], source_rows))

    evasion = evasion_rows()
    print(
        f"\nscikit-image photos treated, uploaded (JPEG q92): pHash still within {PHASH_RADIUS}"
        " of the photo's, and of those gated (must be 0 unless the picture is destroyed)"
    )
    print(format_table(["treatment", "strength", "photos", "pHash matching", "gated"], evasion))

    # False matches: low-information uploads (all orientations) against the benign list.
    entries = [
        (name, alg, hashes[alg].identity)
        for _, name, _, _, hashes in benign
        for alg in (Algorithm.PHASH, Algorithm.DHASH)
    ]
    radius = {Algorithm.PHASH: PHASH_RADIUS, Algorithm.DHASH: DHASH_RADIUS}
    flagged = {(name, alg) for name, alg, value in entries if low_information_hash(alg, value)}
    values = {
        alg: np.array([v for _, a, v in entries if a is alg], dtype=np.uint64) for alg in radius
    }
    matcher = Matcher()
    matcher.set_list(ListConfig.create("benign", thresholds={"phash": 8, "dhash": 10}))
    matcher.upsert(
        HashListEntry("benign", f"{i}", HashValue(alg, value), Category.OTHER)
        for i, (_, alg, value) in enumerate(entries)
    )
    outcome: Counter[str] = Counter()
    matched_families: dict[str, Counter[str]] = defaultdict(Counter)
    rules = ("plain radius, no gate", "plain radius, gate", "matcher, no gate", "matcher")
    for family, _, _, gated, hashes in low:
        plain = any(
            bool((np.bitwise_count(values[alg] ^ np.uint64(value)) <= limit).any())
            for alg, limit in radius.items()
            for value in hashes[alg].distinct()
        )
        upright = {alg: oriented.identity for alg, oriented in hashes.items()}
        hit = {
            rules[0]: plain,
            rules[1]: plain and not gated,
            rules[2]: bool(matcher.match(upright, _views(hashes, False))),
            rules[3]: bool(matcher.match(upright, _views(hashes, gated))),
        }
        for rule, matched in hit.items():
            if matched:
                outcome[rule] += 1
                matched_families[rule][family] += 1
    print(
        f"\nLow-information pictures ({len(low)}) matching a list of {len(benign)} benign"
        f" pictures' pHash and dHash (pHash <= {PHASH_RADIUS} or dHash <= {DHASH_RADIUS} by"
        " plain radius, or the matcher's rules; any orientation)"
    )
    rule_rows = [
        [
            rule,
            str(outcome[rule]),
            ", ".join(f"{f} {n}" for f, n in matched_families[rule].most_common(6)),
        ]
        for rule in rules
    ]
    print(format_table(["rule", "pictures matching", "families"], rule_rows))

    flag_rows = []
    for source, rows in sources.items():
        names_here = {n for n, _, _ in rows}
        for alg in radius:
            count = sum(1 for n, a in flagged if a is alg and n in names_here)
            flag_rows.append([source, str(alg), f"{count}/{len(rows)}"])
    low_flags = {
        str(alg): sum(low_information_hash(alg, h[alg].identity) for *_, h in low) for alg in radius
    }
    print("\nList entries low_information_hash flags (benign pictures' own hashes)")
    print(format_table(["source", "algorithm", "flagged"], flag_rows))
    print(f"low-information pictures' hashes flagged: {low_flags} of {len(low)} each")

    cost = _cost(is_low_information)
    cost.update(_cost(is_low_information, dct_only=True))
    print(
        "\nis_low_information per call (one core, median of 5 x 200):"
        + "".join(f"  {k}: {v * 1e6:.0f} us" for k, v in cost.items())
    )
    write_json(
        args.json,
        "detail",
        {
            "min_decided_bits": MIN_DECIDED_BITS,
            "families": family_rows,
            "benign": source_rows,
            "evasion": evasion,
            "false_matches": dict(outcome),
            "flags": flag_rows,
            "cost_seconds": cost,
        },
    )
    return 0


def _cost(check: Any, *, dct_only: bool = False) -> dict[str, float]:
    """Seconds per call on the sizes the guard hands over: a 1080p JPEG's 1/8 draft decode
    (240x135) and a full-size 1080p decode (what a PNG gets). With ``dct_only``: the part left
    when the caller already has pHash's 32x32 DCT (the check applied to it alone)."""
    from pipeline.core.detail import is_low_information_dct, thumbnail_dct

    rng = np.random.default_rng(1)
    out = {}
    sizes = (("240x135 (1080p JPEG draft)", (240, 135)), ("1920x1080", (1920, 1080)))
    for label, (width, height) in sizes[:1] if dct_only else sizes:
        image = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8), "L")
        coefficients = thumbnail_dct(image)
        rounds = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(200):
                if dct_only:
                    is_low_information_dct(coefficients)
                else:
                    check(image)
            rounds.append((time.perf_counter() - start) / 200)
        out["given pHash's DCT" if dct_only else label] = float(np.median(rounds))
    return out
