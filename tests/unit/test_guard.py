"""The guard refuses every kind of unfit upload with its named reason, and nothing else."""

from __future__ import annotations

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


def outcome(data: bytes, limits: GuardLimits = LIMITS) -> GuardReason | None:
    """The refusal reason, or None when the bytes decode (only ImageRejected may escape)."""
    try:
        decode(data, limits)
    except ImageRejected as exc:
        return exc.guard_reason
    return None


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


MUTATION_SEEDS = {
    fmt: encode(synthetic_image(11, 64, 48), fmt) for fmt in ["JPEG", "PNG", "WEBP", "GIF", "BMP"]
}
#: How many leading bytes name each allowed format (RIFF's form type ends at byte 12).
SIGNATURE_LENGTH = {"JPEG": 3, "PNG": 8, "WEBP": 12, "GIF": 6, "BMP": 2}
#: Leading bytes of formats that are never allowed (the spec of format_not_allowed).
NOT_ALLOWED_PREFIXES = [
    b"%PDF-1.7",
    b"PK\x03\x04",
    b"II*\x00",
    b"MM\x00*",
    b"8BPS",
    b"\x00\x00\x01\x00",
    b"RIFF\x24\x00\x00\x00WAVEfmt ",
    b"\x00\x00\x00\x18ftypisom",  # MP4: a video, not a still picture
    b"\x1a\x45\xdf\xa3",  # Matroska/WebM (EBML): a video, not a still picture
    b"  <?xml version='1.0'?>",
    b"<svg xmlns='http://www.w3.org/2000/svg'/>",
]
#: Reasons a damaged file of an allowed format can get: about its content, never its format.
CONTENT_REASONS = {
    GuardReason.TRUNCATED,
    GuardReason.UNDECODABLE,
    GuardReason.DECOMPRESSION_BOMB,
    GuardReason.TOO_MANY_PIXELS,
    GuardReason.TOO_MANY_FRAMES,
}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xd8\xff" + b"garbage" * 10, GuardReason.UNDECODABLE),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", GuardReason.TRUNCATED),
        (b"GIF89a\x01\x02\x03", GuardReason.TRUNCATED),
        (b"\x89PNG\r\n\x1a\n\x00\x00", GuardReason.TRUNCATED),
        (b"RIFF\x40\x00\x00\x00WEBPVP8 ", GuardReason.TRUNCATED),
        (b"BM" + bytes(10), GuardReason.TRUNCATED),
    ],
    ids=["corrupt-jpeg", "cut-jpeg", "gif-stub", "png-stub", "webp-stub", "bmp-stub"],
)
def test_damaged_files_of_allowed_formats_are_not_format_refusals(
    payload: bytes, reason: GuardReason
) -> None:
    assert reason_of(payload) is reason
    # The same bytes when their format is off the allowlist: that is the refusal then.
    other = frozenset({"PNG"}) if payload.startswith(b"RIFF") else frozenset({"WEBP"})
    assert reason_of(payload, GuardLimits(allowed_formats=other)) is GuardReason.FORMAT_NOT_ALLOWED


def test_riff_that_is_not_webp_and_mp4_are_not_allowed_pictures() -> None:
    for payload in (b"RIFF\x24\x00\x00\x00WAVEfmt ", b"\x00\x00\x00\x18ftypisom"):
        assert reason_of(payload + bytes(40)) is GuardReason.FORMAT_NOT_ALLOWED


def test_multi_picture_jpeg_decodes_as_a_reduced_jpeg() -> None:
    photo = synthetic_image(4, 1024, 768)
    buffer = io.BytesIO()
    photo.save(buffer, "MPO", save_all=True, append_images=[photo])
    decoded = decode(buffer.getvalue(), LIMITS)
    assert (decoded.format, decoded.width, decoded.frames) == ("JPEG", 1024, 2)
    assert decoded.image.size[0] <= 1024 // 4  # draft mode applied, as for any JPEG


@settings(max_examples=200, deadline=None)
@given(fmt=st.sampled_from(sorted(MUTATION_SEEDS)), data=st.data())
def test_every_cut_of_a_valid_image_is_truncated(fmt: str, data: st.DataObject) -> None:
    whole = MUTATION_SEEDS[fmt]
    cut = data.draw(st.integers(SIGNATURE_LENGTH[fmt], len(whole) - 1))
    reason = outcome(whole[:cut])
    if reason is None:
        # Only a PNG missing its IEND chunk (or a GIF its trailer) still decodes.
        assert fmt in {"PNG", "GIF"}
        assert cut >= len(whole) - 12
    else:
        assert reason is GuardReason.TRUNCATED


#: The signatures of the allowed formats (WebP: RIFF with the form type WEBP at bytes 8-11;
#: HEIF and AVIF: an ISO media file whose ftyp box names a still-picture brand).
ALLOWED_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")
PICTURE_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1")
PICTURE_BRANDS += (b"msf1", b"avif", b"avis")


def starts_an_allowed_format(data: bytes) -> bool:
    """A full allowed signature, or 3+ bytes of one (a cut that short is still recognisable)."""
    if data.startswith(b"RIFF"):
        return b"WEBP".startswith(data[8:12])
    if data[4:8] == b"ftyp":
        return data[8:12] in PICTURE_BRANDS
    return any(
        data.startswith(signature)
        or (3 <= len(data) < len(signature) and signature.startswith(data))
        for signature in ALLOWED_SIGNATURES
    )


def starts_another_format(data: bytes) -> bool:
    return (
        any(data.startswith(prefix[:4]) for prefix in NOT_ALLOWED_PREFIXES[:6])
        or data.startswith(b"RIFF")
        or data.startswith(b"\x1a\x45\xdf\xa3")  # EBML: Matroska/WebM
        or data[4:8] == b"ftyp"
        or data.lstrip().startswith((b"<?xml", b"<svg"))
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_are_refused_by_what_they_claim_to_be(data: bytes) -> None:
    reason = outcome(data)
    if not data:
        assert reason is GuardReason.EMPTY
    elif starts_an_allowed_format(data):
        assert reason in CONTENT_REASONS
    elif starts_another_format(data):
        assert reason is GuardReason.FORMAT_NOT_ALLOWED
    else:
        assert reason is GuardReason.UNDECODABLE


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from(NOT_ALLOWED_PREFIXES), tail=st.binary(max_size=512))
def test_other_formats_are_not_allowed_whatever_follows(prefix: bytes, tail: bytes) -> None:
    assert reason_of(prefix + tail) is GuardReason.FORMAT_NOT_ALLOWED


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(MUTATION_SEEDS)), tail=st.binary(max_size=512))
def test_allowed_signature_then_garbage_is_a_content_refusal(fmt: str, tail: bytes) -> None:
    assert reason_of(MUTATION_SEEDS[fmt][: SIGNATURE_LENGTH[fmt]] + tail) in CONTENT_REASONS


@settings(max_examples=150, deadline=None)
@given(fmt=st.sampled_from(sorted(MUTATION_SEEDS)), data=st.data())
def test_mutated_valid_images_are_refused_for_their_content(fmt: str, data: st.DataObject) -> None:
    original = bytearray(MUTATION_SEEDS[fmt])
    for _ in range(data.draw(st.integers(1, 12))):
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] = data.draw(st.integers(0, 255))
    mutated = bytes(original[: data.draw(st.integers(1, len(original)))])
    reason = outcome(mutated)
    if mutated.startswith(MUTATION_SEEDS[fmt][: SIGNATURE_LENGTH[fmt]]):
        assert reason is None or reason in CONTENT_REASONS
    else:  # the signature itself was hit: anything but a size or emptiness refusal
        assert reason not in {GuardReason.EMPTY, GuardReason.TOO_LARGE_BYTES}
