"""HEIF (HEIC) and AVIF stills from phones: recognised by their ftyp brands, guarded like every
other format (header sizes checked before their libraries decode anything, cuts called
truncated), turned upright by their orientation and hashed like the same picture as PNG."""

from __future__ import annotations

import io
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.core.guard import GuardLimits, GuardReason, ImageRejected, decode, sniff_format
from pipeline.core.hashing import hash_image
from pipeline.core.types import Algorithm
from tests.imagegen import encode, sample_photo, synthetic_image

LIMITS = GuardLimits()
PHONE_FORMATS = ("HEIF", "AVIF")
ALGORITHMS = (Algorithm.PHASH, Algorithm.DHASH, Algorithm.PDQ)
#: Most bits a lossy HEIF or AVIF copy (quality 90) may differ from the PNG of the same picture
#: (measured: pHash and dHash 0, PDQ 0-2 on these photos and orientations).
MAX_DISTANCE = {Algorithm.PHASH: 2, Algorithm.DHASH: 2, Algorithm.PDQ: 8}
_EXIF_ORIENTATION = 0x0112


def phone_encode(image: Image.Image, fmt: str, orientation: int | None = None) -> bytes:
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[_EXIF_ORIENTATION] = orientation
    image.save(buffer, format=fmt, quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def reason_of(data: bytes, limits: GuardLimits = LIMITS) -> GuardReason:
    with pytest.raises(ImageRejected) as caught:
        decode(data, limits)
    return caught.value.guard_reason


def with_declared_size(data: bytes, width: int, height: int) -> bytes:
    """``data`` with its first image spatial extent (``ispe``) property saying ``width`` x
    ``height``: a header that lies about the picture's size."""
    at = data.index(b"ispe") + 8  # past the type and the full box's version and flags
    return data[:at] + width.to_bytes(4, "big") + height.to_bytes(4, "big") + data[at + 8 :]


SEEDS = {fmt: encode(synthetic_image(11, 64, 48), fmt) for fmt in PHONE_FORMATS}


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_phone_formats_are_allowed_and_decode(fmt: str) -> None:
    data = encode(synthetic_image(3, 200, 150), fmt)
    assert sniff_format(data) == fmt
    decoded = decode(data, LIMITS)
    assert (decoded.format, decoded.width, decoded.height, decoded.frames) == (fmt, 200, 150, 1)
    assert decoded.image.mode == "L"
    assert decoded.image.size == (200, 150)


@pytest.mark.parametrize(
    ("brands", "fmt"),
    [
        (b"heic\x00\x00\x00\x00mif1heic", "HEIF"),
        (b"mif1\x00\x00\x00\x00mif1heic", "HEIF"),
        (b"avif\x00\x00\x00\x00avifmif1", "AVIF"),
        (b"mif1\x00\x00\x00\x00mif1avif", "AVIF"),
        (b"avis\x00\x00\x00\x00avismsf1", "AVIF"),
        (b"isom\x00\x00\x02\x00isomiso2", "MP4"),
        (b"qt  \x00\x00\x02\x00qt  ", "MOV"),
        (b"3gp4\x00\x00\x00\x00isom3gp4", "3GP"),
        (b"M4V \x00\x00\x00\x01M4V M4A ", "M4V"),
    ],
)
def test_iso_media_files_are_named_by_their_brands(brands: bytes, fmt: str) -> None:
    ftyp = (8 + len(brands)).to_bytes(4, "big") + b"ftyp" + brands
    assert sniff_format(ftyp + bytes(16)) == fmt


def test_videos_and_unknown_brands_are_not_still_pictures() -> None:
    for brands in (b"isom\x00\x00\x02\x00isomiso2avc1mp41", b"qt  \x00\x00\x02\x00qt  "):
        ftyp = (8 + len(brands)).to_bytes(4, "big") + b"ftyp" + brands
        assert reason_of(ftyp + bytes(64)) is GuardReason.FORMAT_NOT_ALLOWED


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_allowlist_applies(fmt: str) -> None:
    others = GuardLimits(allowed_formats=frozenset({"JPEG", "PNG"}))
    assert reason_of(SEEDS[fmt], others) is GuardReason.FORMAT_NOT_ALLOWED


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
@pytest.mark.parametrize("photo", ["astronaut", "chelsea", "coffee", "rocket"])
def test_hashes_agree_with_the_same_picture_as_png(fmt: str, photo: str) -> None:
    picture = sample_photo(photo)
    reference = hash_image(encode(picture, "PNG"), LIMITS, ALGORITHMS).hashes
    phone = hash_image(phone_encode(picture, fmt), LIMITS, ALGORITHMS).hashes
    for algorithm in ALGORITHMS:
        distance = (reference[algorithm] ^ phone[algorithm]).bit_count()
        assert distance <= MAX_DISTANCE[algorithm], (algorithm, distance)


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_is_applied_as_for_jpeg(fmt: str, orientation: int) -> None:
    """HEIF stores rotation and mirroring as irot/imir properties, which libheif applies;
    Pillow hands AVIF's to the guard as an EXIF orientation, which it applies as for a JPEG.
    Either way the upload is hashed upright: as the PNG of the same picture with the same EXIF
    orientation is."""
    picture = sample_photo("astronaut").resize((240, 160))
    png = decode(phone_encode(picture, "PNG", orientation), LIMITS)
    phone = decode(phone_encode(picture, fmt, orientation), LIMITS)
    assert phone.image.size == png.image.size
    upright = hash_image(phone_encode(picture, fmt, orientation), LIMITS, ALGORITHMS).hashes
    expected = hash_image(phone_encode(picture, "PNG", orientation), LIMITS, ALGORITHMS).hashes
    for algorithm in ALGORITHMS:
        distance = (upright[algorithm] ^ expected[algorithm]).bit_count()
        assert distance <= MAX_DISTANCE[algorithm], (algorithm, distance)


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_absurd_declared_size_is_refused_from_the_header(fmt: str) -> None:
    hostile = with_declared_size(SEEDS[fmt], 100_000, 100_000)
    start = time.perf_counter()
    with pytest.raises(ImageRejected) as caught:
        decode(hostile, LIMITS)
    assert time.perf_counter() - start < 0.1
    assert caught.value.guard_reason is GuardReason.DECOMPRESSION_BOMB
    assert "100000x100000" in str(caught.value)


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_pixel_cap_applies_to_real_pictures(fmt: str) -> None:
    data = phone_encode(sample_photo("astronaut"), fmt)  # 512x512
    assert reason_of(data, GuardLimits(max_pixels=500 * 500)) is GuardReason.TOO_MANY_PIXELS


def test_heif_whose_header_disagrees_with_its_picture_is_undecodable() -> None:
    hostile = with_declared_size(SEEDS["HEIF"], 2000, 2000)
    with pytest.raises(ImageRejected) as caught:
        decode(hostile, LIMITS)
    assert caught.value.guard_reason is GuardReason.UNDECODABLE
    assert "size" in str(caught.value)


@settings(max_examples=120, deadline=None)
@given(fmt=st.sampled_from(PHONE_FORMATS), data=st.data())
def test_every_cut_is_truncated(fmt: str, data: st.DataObject) -> None:
    whole = SEEDS[fmt]
    cut = data.draw(st.integers(12, len(whole) - 1))  # past ftyp's major brand
    assert reason_of(whole[:cut]) is GuardReason.TRUNCATED


@settings(max_examples=150, deadline=None)
@given(fmt=st.sampled_from(PHONE_FORMATS), data=st.data())
def test_mutated_files_are_refused_for_their_content(fmt: str, data: st.DataObject) -> None:
    """Damaged phone pictures end in a guard reason, never a crash of the decoding libraries."""
    mutated = bytearray(SEEDS[fmt])
    for _ in range(data.draw(st.integers(1, 12))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    reason = None
    try:
        decode(bytes(mutated), LIMITS)
    except ImageRejected as exc:
        reason = exc.guard_reason
    assert reason not in {GuardReason.EMPTY, GuardReason.TOO_LARGE_BYTES}
