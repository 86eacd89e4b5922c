"""Hashes are pinned for committed fixtures and agree with plain imagehash.

The golden values pin :func:`pipeline.hashprocess.hash_job`, the function the hashing processes run
for every upload (worker and CLI); :func:`hash_image` (lists built in code: the demo's) must
agree with it.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

from pipeline.core.guard import GuardLimits
from pipeline.core.hashing import ALL_ALGORITHMS, DEFAULT_ALGORITHMS, bits_to_int, hash_image
from pipeline.core.types import Algorithm, HashValue, hamming_distance
from pipeline.hashprocess import hash_job
from tests.imagegen import encode, sample_photo, synthetic_image

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "images"
GOLDEN: dict[str, dict[str, str]] = json.loads((FIXTURES / "golden-hashes.json").read_text())
LIMITS = GuardLimits()


def production_hex(data: bytes) -> dict[str, str]:
    """Every hash of ``data`` as canonical hex, hashed as production hashes uploads."""
    result = hash_job(data, LIMITS, DEFAULT_ALGORITHMS)
    return {str(alg): HashValue(alg, value).hex for alg, value in result.hashes.items()}


def test_golden_fixtures_are_all_checked() -> None:
    files = {p.name for p in FIXTURES.glob("synthetic-*")}
    assert files == set(GOLDEN)
    assert len(files) >= 5


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_hash_values(name: str) -> None:
    # A library upgrade that shifts any hash of these fixed files must fail here.
    assert production_hex((FIXTURES / name).read_bytes()) == GOLDEN[name]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_hash_image_agrees_with_the_production_job(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    assert hash_image(data, LIMITS).hex() == production_hex(data)
    only = (Algorithm.SHA256, Algorithm.DHASH)
    assert dict(hash_image(data, LIMITS, only).hashes) == hash_job(data, LIMITS, only).hashes


def test_exif_orientation_is_applied_before_perceptual_hashing() -> None:
    rotated = GOLDEN["synthetic-b-exif6.jpg"]
    upright = GOLDEN["synthetic-b-upright.jpg"]
    assert rotated["phash"] == upright["phash"]
    assert rotated["md5"] != upright["md5"]


def test_exact_hashes_are_the_digests_of_the_bytes() -> None:
    data = (FIXTURES / "synthetic-a.jpg").read_bytes()
    result = hash_job(data, LIMITS, DEFAULT_ALGORITHMS)
    assert result.hashes[Algorithm.MD5] == int(hashlib.md5(data).hexdigest(), 16)
    assert result.hashes[Algorithm.SHA1] == int(hashlib.sha1(data).hexdigest(), 16)
    assert result.hashes[Algorithm.SHA256] == int(hashlib.sha256(data).hexdigest(), 16)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "WEBP"])
def test_full_decode_formats_match_plain_imagehash_exactly(fmt: str) -> None:
    data = encode(sample_photo("coffee"), fmt)
    ours = hash_image(data, LIMITS).hex()
    plain = Image.open(io.BytesIO(data))
    assert ours["phash"] == str(imagehash.phash(plain))
    assert ours["dhash"] == str(imagehash.dhash(plain))


@pytest.mark.parametrize("photo", ["astronaut", "coffee", "chelsea", "rocket"])
def test_reduced_jpeg_decode_stays_close_to_plain_imagehash(photo: str) -> None:
    image = sample_photo(photo).resize((1920, 1080), Image.Resampling.BICUBIC)
    data = encode(image, quality=90)
    ours = hash_image(data, LIMITS).hashes
    plain = Image.open(io.BytesIO(data))
    expected_p = int(str(imagehash.phash(plain)), 16)
    expected_d = int(str(imagehash.dhash(plain)), 16)
    assert hamming_distance(ours[Algorithm.PHASH], expected_p) <= 4
    assert hamming_distance(ours[Algorithm.DHASH], expected_d) <= 6


def test_only_requested_algorithms_are_computed() -> None:
    data = (FIXTURES / "synthetic-a.jpg").read_bytes()
    result = hash_job(data, LIMITS, (Algorithm.PHASH, Algorithm.SHA256))
    assert list(result.hashes) == [Algorithm.SHA256, Algorithm.PHASH]  # canonical order
    assert list(hash_job(data, LIMITS, ALL_ALGORITHMS).hashes) == list(ALL_ALGORITHMS)


def test_bits_to_int_reads_like_imagehash_hex() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        bits = rng.random((8, 8)) > 0.5
        assert HashValue(Algorithm.PHASH, bits_to_int(bits)).hex == str(imagehash.ImageHash(bits))


def test_near_copies_stay_near_and_strangers_stay_far() -> None:
    original = synthetic_image(21)
    base = hash_image(encode(original), LIMITS).hashes[Algorithm.PHASH]
    smaller = hash_image(encode(original.resize((320, 240))), LIMITS).hashes[Algorithm.PHASH]
    stranger = hash_image(encode(synthetic_image(22)), LIMITS).hashes[Algorithm.PHASH]
    assert hamming_distance(base, smaller) <= 4
    assert hamming_distance(base, stranger) > 10
