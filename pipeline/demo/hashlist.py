"""The demo hash list and demo uploads, all made from generated images (see images.py).

Known pictures are seeds 0-5; the list holds their pHash, dHash and MD5. Demo uploads are an
identical copy, near-copies (re-encoded, resized, brightened) of known pictures, and pictures
from other seeds that must not match.
"""

from __future__ import annotations

from pipeline.core.guard import GuardLimits
from pipeline.core.hashing import hash_image
from pipeline.core.hashlist import Category, HashListEntry, ListConfig
from pipeline.core.types import Algorithm, HashValue
from pipeline.demo.images import encode, near_copies, synthetic_image

KNOWN_SEEDS = range(6)
DEMO_LIST = ListConfig.create(
    "demo-known", kind="deny", action="block", thresholds={"phash": 8, "dhash": 10}, version="1"
)


def demo_entries() -> list[HashListEntry]:
    """pHash, dHash and MD5 entries for each known picture (JPEG quality 90, 640x480)."""
    entries = []
    for seed in KNOWN_SEEDS:
        hashes = hash_image(encode(synthetic_image(seed)), GuardLimits()).hashes
        for algorithm in (Algorithm.PHASH, Algorithm.DHASH, Algorithm.MD5):
            entries.append(
                HashListEntry(
                    list_name=DEMO_LIST.name,
                    entry_id=f"known-{seed}-{algorithm}",
                    hash=HashValue(algorithm, hashes[algorithm]),
                    category=Category.OTHER,
                    source="generated demo image",
                )
            )
    return entries


def demo_uploads() -> list[tuple[str, bytes]]:
    """(name, bytes) of uploads: 4 that match the list and 3 that do not."""
    copies = near_copies(synthetic_image(1))
    return [
        ("known-0-identical.jpg", encode(synthetic_image(0))),
        ("known-1-reencoded.jpg", copies["reencoded"]),
        ("known-1-resized.jpg", copies["resized"]),
        ("known-2-brightened.jpg", near_copies(synthetic_image(2))["brightened"]),
        ("unrelated-100.jpg", encode(synthetic_image(100))),
        ("unrelated-101.png", encode(synthetic_image(101), "PNG")),
        ("unrelated-102.webp", encode(synthetic_image(102), "WEBP")),
    ]
