"""Actions, hash algorithms and hash values shared by every part of the core.

Owns the vocabulary: what may be done with an upload (:class:`Action`), which algorithms exist,
how wide each hash is, and how a hash is written as hex on the wire and in hash lists. Hashes
are plain ``int`` values tagged with their algorithm; nothing in the pipeline keys dictionaries
by imagehash objects.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from pipeline.errors import InputRejected


class Action(enum.StrEnum):
    """What the platform should do with an upload: the one vocabulary of list configs,
    decisions, verdicts and the fail-closed setting. ``error``: it could not be screened."""

    ALLOW = "allow"
    REVIEW = "review"
    BLOCK = "block"
    ERROR = "error"


#: What a match on a deny list may ask for, and what an unscreenable upload may be marked as.
LIST_ACTIONS: frozenset[Action] = frozenset({Action.REVIEW, Action.BLOCK})


class Algorithm(enum.StrEnum):
    """A hash algorithm, named as hash lists and the wire format name it."""

    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"
    PHASH = "phash"
    DHASH = "dhash"
    PDQ = "pdq"

    @property
    def bits(self) -> int:
        """Width of the hash in bits."""
        return _BITS[self]

    @property
    def is_perceptual(self) -> bool:
        """True for hashes compared by Hamming distance, False for exact digests."""
        return self in PERCEPTUAL_ALGORITHMS

    @property
    def hex_digits(self) -> int:
        """Number of hex digits in the canonical (zero-padded, lower-case) form."""
        return self.bits // 4


_BITS: dict[Algorithm, int] = {
    Algorithm.MD5: 128,
    Algorithm.SHA1: 160,
    Algorithm.SHA256: 256,
    Algorithm.PHASH: 64,
    Algorithm.DHASH: 64,
    Algorithm.PDQ: 256,
}

EXACT_ALGORITHMS: tuple[Algorithm, ...] = (Algorithm.MD5, Algorithm.SHA1, Algorithm.SHA256)
PERCEPTUAL_ALGORITHMS: tuple[Algorithm, ...] = (Algorithm.PHASH, Algorithm.DHASH, Algorithm.PDQ)
#: Perceptual hashes computed for every upload, whatever the lists hold (verdicts carry them):
#: the cheap 64-bit pair. PDQ (256 bits, Meta's) costs more and is computed only when an
#: enabled list has PDQ entries (:meth:`pipeline.core.matching.Matcher.algorithms_in_use`).
BASELINE_PERCEPTUAL: tuple[Algorithm, ...] = (Algorithm.PHASH, Algorithm.DHASH)


@dataclass(frozen=True, slots=True)
class HashValue:
    """One hash: its algorithm and its value as a non-negative int of ``algorithm.bits`` bits."""

    algorithm: Algorithm
    value: int

    def __post_init__(self) -> None:
        if not 0 <= self.value < (1 << self.algorithm.bits):
            raise InputRejected(
                f"{self.algorithm} value does not fit in {self.algorithm.bits} bits",
                reason="hash_out_of_range",
            )

    @property
    def hex(self) -> str:
        """Canonical lower-case hex, zero-padded to the algorithm's width."""
        return format(self.value, f"0{self.algorithm.hex_digits}x")

    @classmethod
    def from_hex(cls, algorithm: Algorithm, text: str) -> HashValue:
        """Parse hex as hash lists carry it (case-insensitive, optional ``0x``, surrounding space).

        Raises :class:`InputRejected` (reason ``bad_hash``) when the text is not hex of exactly
        the algorithm's width.
        """
        value = hex_value(algorithm, text)
        if value is None:
            cleaned = text.strip().lower().removeprefix("0x")
            raise InputRejected(
                f"{algorithm} hash must be {algorithm.hex_digits} hex digits, got {len(cleaned)}"
                " characters",
                reason="bad_hash",
            )
        return cls(algorithm, value)


#: Lower-case hex digits only (``int(text, 16)`` alone would take "+", "_" and spaces).
_HEX = re.compile(r"[0-9a-f]+")


def hex_value(algorithm: Algorithm, text: str) -> int | None:
    """The value of ``text`` by :meth:`HashValue.from_hex`'s rules, or None where it refuses it
    (the bulk path of a list load, which makes no object per hash)."""
    cleaned = text.strip().lower().removeprefix("0x")
    if len(cleaned) != algorithm.hex_digits or _HEX.fullmatch(cleaned) is None:
        return None
    return int(cleaned, 16)


def hamming_distance(a: int, b: int) -> int:
    """Number of differing bits between two hashes of the same algorithm."""
    return (a ^ b).bit_count()
