"""The guard bounds what an image decodes to, not just its pixel count, and refuses files whose
header declares more image than the file holds.

Hostile files are built in memory with little memory: the 512 MB PNG bomb is made by repeating
the deflate output of one block of zero rows, never by inflating or holding 512 MB.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFile

from pipeline.core.guard import GuardLimits, GuardReason, ImageRejected, decode
from tests.imagegen import encode, png_declaring, sample_photo

LIMITS = GuardLimits()

#: PNG colour type -> samples per pixel.
PNG_SAMPLES = {0: 1, 2: 3, 4: 2, 6: 4}
#: Largest block of zero rows compressed at once by zero_rows_png (its memory high-water mark).
ZERO_BLOCK_BYTES = 1 << 20


def reason_of(data: bytes, limits: GuardLimits = LIMITS) -> GuardReason:
    with pytest.raises(ImageRejected) as caught:
        decode(data, limits)
    return caught.value.guard_reason


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png(width: int, height: int, bit_depth: int, colour_type: int, zlib_stream: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib_stream)
        + png_chunk(b"IEND", b"")
    )


def png_row_bytes(width: int, bit_depth: int, colour_type: int) -> int:
    """Bytes of one filtered row: the filter-type byte, then the packed samples."""
    return 1 + -(-width * PNG_SAMPLES[colour_type] * bit_depth // 8)


def zero_rows_png(width: int, height: int, bit_depth: int = 8, colour_type: int = 6) -> bytes:
    """A valid PNG of all-zero rows, deflated close to deflate's 1032:1 ceiling, built without
    ever holding more than ZERO_BLOCK_BYTES of rows.

    A full flush makes deflate forget everything before it, so every block of zero rows
    compresses to the same bytes: compress one block, repeat its output, finish with a final
    block, and append the zlib checksum of that many zero bytes (adler32 of n zeros is
    n mod 65521 in the high half and 1 in the low half).
    """
    row = png_row_bytes(width, bit_depth, colour_type)
    rows_per_block = max(1, ZERO_BLOCK_BYTES // row)
    blocks, rest = divmod(height, rows_per_block)

    def raw_deflate(rows: int, flush: int) -> bytes:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        return compressor.compress(bytes(row * rows)) + compressor.flush(flush)

    body = raw_deflate(rows_per_block, zlib.Z_FULL_FLUSH) * blocks
    body += raw_deflate(rest, zlib.Z_FINISH)
    checksum = ((row * height) % 65521) << 16 | 1
    return png(
        width, height, bit_depth, colour_type, b"\x78\xda" + body + struct.pack(">I", checksum)
    )


def png_of_rows(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG of the given filtered rows, compressed by zlib at its best level."""
    return png(width, height, bit_depth, colour_type, zlib.compress(rows, 9))


def photo_png_16_bit(width: int, height: int) -> bytes:
    """A 16-bit RGB PNG of a real photo with sensor-like noise in the low byte."""
    photo = np.asarray(sample_photo("coffee").resize((width, height)), dtype=np.uint16)
    noise = np.random.default_rng(0).integers(0, 256, photo.shape, dtype=np.uint16)
    samples = (photo * 256 + noise).astype(">u2")
    rows = b"".join(b"\x00" + samples[y].tobytes() for y in range(height))
    return png_of_rows(width, height, 16, 2, rows)


def screenshot_png(width: int, height: int) -> bytes:
    """A flat-coloured RGBA screenshot: title bar, sidebar and lines of text on white."""
    image = Image.new("RGBA", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, height // 30), fill=(235, 235, 240))
    draw.rectangle((0, height // 30, width // 6, height), fill=(245, 246, 248))
    for line, y in enumerate(range(height // 30 + 10, height - 30, height // 55)):
        words = " ".join(f"word{(line * 7 + i) % 23}" for i in range(4 + line % 11))
        draw.text((width // 6 + 20, y), words, fill=(20, 20, 20), font_size=height // 80)
    return encode(image, "PNG")


def jpeg_declaring(width: int, height: int, mode: str = "RGB", **options: object) -> bytes:
    """A real 16x16 JPEG whose frame header (SOF) is patched to declare width x height."""
    buffer = io.BytesIO()
    Image.new(mode, (16, 16), "red" if mode == "RGB" else 90).save(buffer, "JPEG", **options)
    data = bytearray(buffer.getvalue())
    position = 2
    while data[position + 1] not in (0xC0, 0xC1, 0xC2):
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    data[position + 5 : position + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_declaring(width: int, height: int) -> bytes:
    """A 16x16 one-colour lossless WebP with its header patched to declare width x height.

    Lossless WebP codes a one-colour image in zero bits a pixel, so this is a valid image of
    that size, a few dozen bytes long, that libwebp decodes in full.
    """
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, "WEBP", lossless=True)
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"VP8L"
    assert data[20] == 0x2F  # the lossless signature, then 14 bits each of width-1, height-1
    kept = int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1)
    declared = kept | (width - 1) | (height - 1) << 14
    data[21:25] = declared.to_bytes(4, "little")
    return bytes(data)


def refuse_to_open(*args: object, **kwargs: object) -> Image.Image:
    raise AssertionError("Pillow was asked to open a file the guard should have refused first")


def refuse_to_decode(*args: object, **kwargs: object) -> None:
    raise AssertionError("Pillow was asked to decode pixels the guard should have refused first")


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any pixel decode fail, so a test shows a refusal came from the header alone (the
    guard turns the failure into another reason, which the test's assertion then rejects)."""
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse_to_decode)


# --- The builders make what they claim ---------------------------------------------------------


def test_zero_rows_png_is_a_valid_png_of_zero_pixels() -> None:
    # The bomb tests prove nothing unless the bomb is a real PNG: a valid zlib stream (its
    # checksum included) that inflates to exactly the rows the header declares.
    data = zero_rows_png(700, 600, bit_depth=16, colour_type=6)  # several blocks and a rest
    assert len(data) * 900 < 700 * 600 * 8  # close to deflate's 1032:1 ceiling
    stream = data[33 + 8 : -12 - 4]  # IDAT payload: after signature+IHDR and its own head
    assert zlib.decompress(stream) == bytes(png_row_bytes(700, 16, 6) * 600)
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.size == (700, 600)
    assert image.getextrema() == ((0, 0),) * 4


def test_patched_webp_is_a_valid_image_of_the_declared_size() -> None:
    image = Image.open(io.BytesIO(webp_declaring(300, 200)))
    image.load()
    assert image.size == (300, 200)
    assert image.getextrema() == ((255, 255), (0, 0), (0, 0))


# --- Item 10: decompression bombs under the pixel cap ------------------------------------------


@pytest.mark.usefixtures("no_pixel_decoding")
def test_16_bit_png_bomb_under_the_pixel_cap_is_refused_before_decoding() -> None:
    # The audit's file: 8000x8000 16-bit RGBA, ~500 KB, inflating to 512 MB. Its pixel count is
    # within the cap; only its bit depth makes it a bomb.
    bomb = zero_rows_png(8000, 8000, bit_depth=16, colour_type=6)
    assert len(bomb) < 600_000
    assert LIMITS.max_pixels >= 8000 * 8000
    assert reason_of(bomb) is GuardReason.DECOMPRESSION_BOMB
    # The decoded-bytes cap refuses it on its own, whatever the ratio cap says.
    no_ratio_cap = GuardLimits(max_compression_ratio=math.inf)
    assert reason_of(bomb, no_ratio_cap) is GuardReason.DECOMPRESSION_BOMB


@pytest.mark.usefixtures("no_pixel_decoding")
def test_8_bit_png_bomb_within_the_decoded_bytes_cap_is_refused_for_its_ratio() -> None:
    bomb = zero_rows_png(8000, 8000, bit_depth=8, colour_type=6)  # 256 MB from ~250 KB
    assert LIMITS.max_decoded_bytes >= 8000 * 8000 * 4
    assert reason_of(bomb) is GuardReason.DECOMPRESSION_BOMB


def test_bit_depth_counts_toward_decoded_bytes() -> None:
    limits = GuardLimits(max_decoded_bytes=100 * 100 * 4)
    decode(zero_rows_png(100, 100, bit_depth=8), limits)
    assert reason_of(zero_rows_png(100, 100, bit_depth=16), limits) is (
        GuardReason.DECOMPRESSION_BOMB
    )


def test_ratio_is_only_capped_above_the_exempt_size() -> None:
    # 1 MiB of blank RGBA at ~1000:1, like a blank screenshot: cheap, so not a bomb by default.
    blank = zero_rows_png(512, 512)
    decode(blank, LIMITS)
    just_under = GuardLimits(ratio_exempt_decoded_bytes=512 * 512 * 4 - 1)
    assert reason_of(blank, just_under) is GuardReason.DECOMPRESSION_BOMB
    decode(blank, GuardLimits(ratio_exempt_decoded_bytes=0, max_compression_ratio=2000))


def test_webp_canvas_is_bounded_before_pillow_allocates_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # libwebp allocates the whole canvas (4 bytes a pixel) while Pillow opens the file, so the
    # caps must be applied from the header before Image.open is ever called.
    bomb = webp_declaring(5000, 5000)  # 100 MB of canvas from a few dozen bytes
    assert reason_of(bomb) is GuardReason.DECOMPRESSION_BOMB
    monkeypatch.setattr(Image, "open", refuse_to_open)
    assert reason_of(bomb) is GuardReason.DECOMPRESSION_BOMB


def blank_jpeg(width: int, height: int) -> bytes:
    """A one-colour JPEG with optimised Huffman tables: ~510:1 at full scale."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, "JPEG", optimize=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(
            lambda: encode(sample_photo("chelsea").resize((4000, 3000), Image.Resampling.NEAREST)),
            id="12MP-8-bit-RGB-JPEG",
        ),
        # JPEGs are counted at their draft scale, so even a blank 24 MP one is a small decode.
        pytest.param(lambda: blank_jpeg(6000, 4000), id="blank-24MP-JPEG"),
        # ~900:1, far over the ratio cap, but 33 MB: under the exempt size, so not a bomb.
        pytest.param(lambda: zero_rows_png(3840, 2160), id="blank-4K-RGBA-PNG-screenshot"),
        pytest.param(lambda: screenshot_png(1920, 1080), id="1080p-RGBA-PNG-screenshot"),
        pytest.param(lambda: photo_png_16_bit(1200, 900), id="16-bit-RGB-photo-PNG"),
    ],
)
def test_ordinary_images_pass_the_decoded_size_caps(build: Callable[[], bytes]) -> None:
    decode(build(), LIMITS)


# --- Item 12: headers that declare more image than the file holds ------------------------------


@pytest.mark.usefixtures("no_pixel_decoding")
@pytest.mark.parametrize(
    ("mode", "options"),
    [
        ("RGB", {}),
        ("RGB", {"progressive": True}),
        ("RGB", {"subsampling": 0}),
        ("L", {"optimize": True}),
    ],
    ids=["baseline", "progressive", "4:4:4", "grayscale"],
)
def test_jpeg_declaring_more_than_it_holds_is_truncated(
    mode: str, options: dict[str, object]
) -> None:
    # libjpeg fills the missing blocks with grey and only warns, which Pillow silences: without
    # the guard this 16x16 file hashes as an 8000x8000 grey picture.
    assert reason_of(jpeg_declaring(8000, 8000, mode, **options)) is GuardReason.TRUNCATED


@pytest.mark.usefixtures("no_pixel_decoding")
def test_png_whose_image_data_ends_before_its_rows_is_truncated() -> None:
    # A complete zlib stream of 4 rows under a header of 3000: Pillow leaves the rest zero.
    assert reason_of(png_declaring(4000, 3000, rows=4)) is GuardReason.TRUNCATED


def test_most_compressible_png_is_not_mistaken_for_truncated() -> None:
    # zlib's best level on zero rows is as close to deflate's ceiling as real files get.
    width, height = 2000, 1500
    rows = bytes(png_row_bytes(width, 8, 0) * height)
    decode(png_of_rows(width, height, 8, 0, rows), LIMITS)
    decode(zero_rows_png(width, height, bit_depth=1, colour_type=0), LIMITS)


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(1, 1200),
    height=st.integers(1, 1200),
    mode=st.sampled_from(["L", "RGB"]),
    subsampling=st.sampled_from([0, 1, 2]),
    progressive=st.booleans(),
    restart_rows=st.sampled_from([0, 1]),
)
def test_most_compressible_jpegs_are_not_mistaken_for_truncated(
    width: int, height: int, mode: str, subsampling: int, progressive: bool, restart_rows: int
) -> None:
    # A one-colour picture at the lowest quality with optimised Huffman tables is the least
    # data a real JPEG of that size holds.
    flat = Image.new(mode, (width, height), "white" if mode == "RGB" else 255)
    buffer = io.BytesIO()
    flat.save(
        buffer,
        "JPEG",
        quality=1,
        optimize=True,
        subsampling=subsampling,
        progressive=progressive,
        restart_marker_rows=restart_rows,
    )
    decoded = decode(buffer.getvalue(), LIMITS)
    assert (decoded.width, decoded.height) == (width, height)
