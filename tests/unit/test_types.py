"""Hash values parse from list hex strictly and print canonically."""

from __future__ import annotations

import pytest

from pipeline.core.types import Algorithm, HashValue, hamming_distance
from pipeline.errors import InputRejected


def test_hex_round_trip_and_normalisation() -> None:
    value = HashValue.from_hex(Algorithm.PHASH, "  0xABCDEF0123456789 ")
    assert value.hex == "abcdef0123456789"
    assert HashValue.from_hex(Algorithm.MD5, "0" * 32).hex == "0" * 32


@pytest.mark.parametrize(
    ("algorithm", "text"),
    [
        (Algorithm.PHASH, "abc"),
        (Algorithm.PHASH, "g" * 16),
        (Algorithm.MD5, "a" * 40),
        (Algorithm.SHA256, ""),
    ],
)
def test_bad_hex_is_rejected_with_a_reason(algorithm: Algorithm, text: str) -> None:
    with pytest.raises(InputRejected) as caught:
        HashValue.from_hex(algorithm, text)
    assert caught.value.reason == "bad_hash"


def test_value_must_fit_the_width() -> None:
    with pytest.raises(InputRejected):
        HashValue(Algorithm.PHASH, 1 << 64)


def test_bits_and_distance() -> None:
    assert [a.bits for a in Algorithm] == [128, 160, 256, 64, 64, 256]
    assert Algorithm.PDQ.hex_digits == 64
    assert Algorithm.PDQ.is_perceptual
    assert hamming_distance(0b1011, 0b0001) == 2
