"""``pipeline bench hashing``: images/s per upload size against same-run baselines.

On one pinned core, for photographic JPEGs from 640x480 to 12 MP and a 1080p PNG, measures in
interleaved rounds: our perceptual path (guarded reduced decode + pHash + dHash), our full path
(plus MD5, SHA-1 and SHA-256 of the bytes), plain ``imagehash.phash(Image.open(...))`` as-is,
and the floor: a bare reduced-scale grayscale decode at the same DCT scale, nothing else.
Prints ratios ours/plain and ours/floor, MB/s of compressed input, and the drift (mean and max
bits) of our pHash and dHash against plain imagehash on the same bytes.

Test pictures are scikit-image's bundled photos, resized to each size with mild noise so the
JPEG entropy decode (the real cost) sees photographic content. Nothing is written to disk.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from collections.abc import Callable
from typing import Any

from pipeline.config import Settings

SIZES: dict[str, tuple[int, int, str]] = {
    "640x480": (640, 480, "JPEG"),
    "1280x720": (1280, 720, "JPEG"),
    "1920x1080": (1920, 1080, "JPEG"),
    "12MP": (4000, 3000, "JPEG"),
    "1920x1080-png": (1920, 1080, "PNG"),
}
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pipeline bench hashing``."""
    parser.add_argument(
        "--sizes", default=",".join(SIZES), help="upload sizes to measure (default %(default)s)"
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="time per path and size (default %(default)s)"
    )


def make_uploads(width: int, height: int, fmt: str) -> list[bytes]:
    """One upload per bundled photo at this size, encoded in memory (JPEG quality 90)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(width * height)
    uploads = []
    for name in PHOTOS:
        pixels = np.asarray(getattr(data, name)())[..., :3]
        image = (
            Image.fromarray(pixels).convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
        )
        noisy = np.asarray(image, dtype=np.int16) + rng.integers(-4, 5, (height, width, 3))
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        uploads.append(buffer.getvalue())
    return uploads


def measure(
    paths: dict[str, Callable[[bytes], object]], uploads: list[bytes], seconds: float
) -> dict[str, float]:
    """Images/s per path, measured in alternating rounds so drift in machine speed is shared."""
    counts = dict.fromkeys(paths, 0)
    spent = dict.fromkeys(paths, 0.0)
    for fn in paths.values():  # warm-up: imports, numba/scipy first calls
        fn(uploads[0])
    rounds = 0
    while min(spent.values()) < seconds:
        for name, fn in paths.items():
            start = time.perf_counter()
            for data in uploads:
                fn(data)
            spent[name] += time.perf_counter() - start
            counts[name] += len(uploads)
        rounds += 1
    return {name: counts[name] / spent[name] for name in paths}


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the benchmark; print the table and write JSON."""
    import imagehash
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from pipeline.bench.report import format_table, write_json
    from pipeline.core.guard import GuardLimits, decode
    from pipeline.core.hashing import hash_image, perceptual_hashes
    from pipeline.core.types import Algorithm, hamming_distance

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    limits = GuardLimits(
        max_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_pixels,
        max_frames=settings.max_frames,
        allowed_formats=settings.allowed_formats,
        draft_size=settings.draft_size,
    )
    draft = (settings.draft_size, settings.draft_size)

    def plain(data: bytes) -> object:
        return imagehash.phash(Image.open(io.BytesIO(data)))

    def ours_perceptual(data: bytes) -> object:
        return perceptual_hashes(decode(data, limits))

    def ours_all(data: bytes) -> object:
        return hash_image(data, limits)

    def floor(data: bytes) -> object:
        image = Image.open(io.BytesIO(data))
        image.draft("L", draft)
        image.load()
        return image

    rows: list[list[Any]] = []
    results: dict[str, Any] = {}
    names = [s.strip() for s in args.sizes.split(",") if s.strip()]
    for name in tqdm(names, desc="bench hashing", unit="size", leave=False):
        width, height, fmt = SIZES[name]
        uploads = make_uploads(width, height, fmt)
        paths: dict[str, Callable[[bytes], object]] = {
            "ours (pHash+dHash)": ours_perceptual,
            "ours (all 5 hashes)": ours_all,
            "plain imagehash pHash": plain,
        }
        if fmt == "JPEG":
            paths["floor (bare reduced decode)"] = floor
        rates = measure(paths, uploads, args.seconds)
        mean_mb = sum(len(u) for u in uploads) / len(uploads) / 1e6
        drift_p = [
            hamming_distance(
                hash_image(u, limits).hashes[Algorithm.PHASH],
                int(str(imagehash.phash(Image.open(io.BytesIO(u)))), 16),
            )
            for u in uploads
        ]
        drift_d = [
            hamming_distance(
                hash_image(u, limits).hashes[Algorithm.DHASH],
                int(str(imagehash.dhash(Image.open(io.BytesIO(u)))), 16),
            )
            for u in uploads
        ]
        ours = rates["ours (pHash+dHash)"]
        floor_rate = rates.get("floor (bare reduced decode)", float("nan"))
        for path, rate in rates.items():
            rows.append([
                name, path, rate, rate * mean_mb, rate / rates["plain imagehash pHash"],
                rate / floor_rate if fmt == "JPEG" else float("nan"),
            ])  # fmt: skip
        results[name] = {
            "width": width,
            "height": height,
            "format": fmt,
            "mean_upload_mb": mean_mb,
            "images_per_s": rates,
            "ours_vs_plain": ours / rates["plain imagehash pHash"],
            "ours_all_vs_plain": rates["ours (all 5 hashes)"] / rates["plain imagehash pHash"],
            "ours_vs_floor": ours / floor_rate if fmt == "JPEG" else None,
            "ours_all_vs_floor": rates["ours (all 5 hashes)"] / floor_rate
            if fmt == "JPEG"
            else None,
            "phash_drift_bits": {"mean": float(np.mean(drift_p)), "max": int(max(drift_p))},
            "dhash_drift_bits": {"mean": float(np.mean(drift_d)), "max": int(max(drift_d))},
        }
    print(format_table(["size", "path", "images/s", "MB/s", "x plain", "x floor"], rows))
    print("\ndrift against plain imagehash on the same bytes (bits):")
    for name, result in results.items():
        p, d = result["phash_drift_bits"], result["dhash_drift_bits"]
        print(
            f"  {name:>14}: pHash mean {p['mean']:.2f} max {p['max']}, "
            f"dHash mean {d['mean']:.2f} max {d['max']}"
        )
    written = write_json(
        args.json, "hashing", {"sizes": results, "draft_size": settings.draft_size}
    )
    print(f"\nwrote {written}")
    return 0
