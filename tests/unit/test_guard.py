"""The guard refuses every kind of unfit upload with its named reason, and nothing else."""

from __future__ import annotations

import contextlib
import io
import pickle
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.guard import GuardLimits, GuardReason, ImageRejected, decode
from tests.imagegen import encode, gif_with_frames, png_declaring, synthetic_image

LIMITS = GuardLimits()
PHOTO_JPEG = encode(synthetic_image(7, 320, 240))


def reason_of(data: bytes, limits: GuardLimits = LIMITS) -> GuardReason:
    with pytest.raises(ImageRejected) as caught:
        decode(data, limits)
    return caught.value.guard_reason


def test_accepts_each_allowed_format() -> None:
    image = synthetic_image(3, 200, 150)
    for fmt in ["JPEG", "PNG", "WEBP", "GIF", "BMP"]:
        decoded = decode(encode(image, fmt), LIMITS)
        assert (decoded.format, decoded.width, decoded.height) == (fmt, 200, 150)
        assert decoded.image.mode == "L"


def test_jpeg_is_decoded_at_reduced_scale_but_reports_original_size() -> None:
    big = encode(synthetic_image(5, 2048, 1536))
    decoded = decode(big, LIMITS)
    assert (decoded.width, decoded.height) == (2048, 1536)
    assert min(decoded.image.size) >= LIMITS.draft_size
    assert decoded.image.size[0] <= 2048 // 4


def test_empty() -> None:
    assert reason_of(b"") is GuardReason.EMPTY


def test_byte_cap() -> None:
    assert reason_of(PHOTO_JPEG, GuardLimits(max_bytes=1000)) is GuardReason.TOO_LARGE_BYTES


@pytest.mark.parametrize(
    "payload",
    [b"%PDF-1.7\n%...", b"<?xml version='1.0'?><svg/>", b"II*\x00\x08\x00\x00\x00"],
    ids=["pdf", "svg", "tiff"],
)
def test_formats_outside_the_allowlist(payload: bytes) -> None:
    assert reason_of(payload) is GuardReason.FORMAT_NOT_ALLOWED


def test_zip_is_not_allowed() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "hello")
    assert reason_of(buffer.getvalue()) is GuardReason.FORMAT_NOT_ALLOWED


def test_allowlist_is_applied_to_real_images() -> None:
    only_png = GuardLimits(allowed_formats=frozenset({"PNG"}))
    assert reason_of(PHOTO_JPEG, only_png) is GuardReason.FORMAT_NOT_ALLOWED


def test_random_bytes_are_undecodable() -> None:
    assert reason_of(bytes(range(256)) * 4) is GuardReason.UNDECODABLE


def test_truncated_jpeg() -> None:
    assert reason_of(PHOTO_JPEG[: len(PHOTO_JPEG) // 2]) is GuardReason.TRUNCATED


def test_pixel_cap_on_a_real_image() -> None:
    limits = GuardLimits(max_pixels=100 * 100)
    assert reason_of(PHOTO_JPEG, limits) is GuardReason.TOO_MANY_PIXELS


def test_tiny_file_declaring_huge_dimensions_is_a_bomb() -> None:
    assert reason_of(png_declaring(30_000, 30_000)) is GuardReason.DECOMPRESSION_BOMB


def test_png_without_image_data_is_refused_not_crashed() -> None:
    assert reason_of(png_declaring(4000, 3000, rows=0)) in {
        GuardReason.TRUNCATED,
        GuardReason.UNDECODABLE,
    }


def test_frame_cap() -> None:
    assert reason_of(gif_with_frames(12), GuardLimits(max_frames=10)) is (
        GuardReason.TOO_MANY_FRAMES
    )
    assert decode(gif_with_frames(12), LIMITS).frames == 12


def test_rejection_survives_pickling_for_process_pools() -> None:
    with pytest.raises(ImageRejected) as caught:
        decode(b"", LIMITS)
    clone = pickle.loads(pickle.dumps(caught.value))
    assert (clone.guard_reason, clone.reason, str(clone)) == (
        GuardReason.EMPTY,
        "empty",
        str(caught.value),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_only_ever_raise_image_rejected(data: bytes) -> None:
    with contextlib.suppress(ImageRejected):
        decode(data, LIMITS)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_valid_images_only_ever_raise_image_rejected(data: st.DataObject) -> None:
    original = bytearray(data.draw(st.sampled_from(MUTATION_SEEDS)))
    for _ in range(data.draw(st.integers(1, 12))):
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(original)))
    with contextlib.suppress(ImageRejected):
        decode(bytes(original[:cut]), LIMITS)


MUTATION_SEEDS = [
    encode(synthetic_image(11, 64, 48), fmt) for fmt in ["JPEG", "PNG", "WEBP", "GIF", "BMP"]
]
