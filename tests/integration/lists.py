"""Hash-list entries for integration tests, made from generated images in memory."""

from __future__ import annotations

from pipeline.core.guard import GuardLimits
from pipeline.core.hashing import hash_image
from pipeline.core.hashlist import Category, HashListEntry
from pipeline.core.types import Algorithm, HashValue
from tests.imagegen import encode, synthetic_image


def entries_for(
    list_name: str,
    seed: int,
    algorithms: tuple[Algorithm, ...] = (Algorithm.PHASH, Algorithm.DHASH),
    category: Category = Category.CSAM,
) -> list[HashListEntry]:
    """Entries ``<seed>-<algorithm>`` for the 640x480 JPEG of ``synthetic_image(seed)``."""
    hashes = hash_image(encode(synthetic_image(seed)), GuardLimits()).hashes
    return [
        HashListEntry(
            list_name=list_name,
            entry_id=f"{seed}-{algorithm}",
            hash=HashValue(algorithm, hashes[algorithm]),
            category=category,
            source="integration test",
        )
        for algorithm in algorithms
    ]
