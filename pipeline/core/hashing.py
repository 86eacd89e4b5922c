"""One decode, all hashes: exact digests of the bytes and perceptual hashes of the picture.

Owns how each algorithm's value is computed and how it is laid out as an int. Perceptual hashes
are imagehash's own functions applied to the guarded, reduced, upright grayscale image, and the
int is read exactly as imagehash's hex string reads (first array bit = most significant bit), so
``HashValue(alg, value).hex == str(imagehash.phash(img))`` and lists made with plain imagehash
match. For JPEGs the reduced-scale decode shifts pHash by a bit or two at most (measured by
``pipeline bench hashing``); other formats are hashed from the full image and agree exactly.
PDQ (:mod:`pipeline.core.pdq`) is read as ThreatExchange's hex reads; it is not in the default
set (:data:`DEFAULT_ALGORITHMS`): callers ask for it when a list uses it.

Must not: read files, log, or keep the bytes after returning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import imagehash
import numpy as np
import numpy.typing as npt

from pipeline.core.guard import DecodedImage, GuardLimits, decode
from pipeline.core.pdq import PdqHashes, pdq_hashes, upright_full_size
from pipeline.core.types import (
    BASELINE_PERCEPTUAL,
    EXACT_ALGORITHMS,
    PERCEPTUAL_ALGORITHMS,
    Algorithm,
    HashValue,
)

#: Every algorithm, in the canonical order hashes are reported in.
ALL_ALGORITHMS: tuple[Algorithm, ...] = EXACT_ALGORITHMS + PERCEPTUAL_ALGORITHMS
#: What is computed when a caller names nothing: all but PDQ (see :data:`BASELINE_PERCEPTUAL`).
DEFAULT_ALGORITHMS: tuple[Algorithm, ...] = EXACT_ALGORITHMS + BASELINE_PERCEPTUAL

_DIGESTS: dict[Algorithm, Callable[[bytes], hashlib._Hash]] = {
    Algorithm.MD5: lambda data: hashlib.md5(data, usedforsecurity=False),
    Algorithm.SHA1: lambda data: hashlib.sha1(data, usedforsecurity=False),
    Algorithm.SHA256: hashlib.sha256,
}


def bits_to_int(bits: npt.NDArray[np.bool_]) -> int:
    """A boolean array as an int, first element most significant (imagehash's hex order)."""
    flat = np.asarray(bits, dtype=np.bool_).ravel()
    padded = np.concatenate([np.zeros((-flat.size) % 8, dtype=np.bool_), flat])
    return int.from_bytes(np.packbits(padded).tobytes(), "big")


def _phash(decoded: DecodedImage) -> int:
    return bits_to_int(imagehash.phash(decoded.image).hash)


def _dhash(decoded: DecodedImage) -> int:
    return bits_to_int(imagehash.dhash(decoded.image).hash)


def decoded_pdq(decoded: DecodedImage) -> PdqHashes:
    """PDQ of a guarded decode: every orientation and the quality, computed as if from the
    full-size picture (the JPEG draft is carried over; see :mod:`pipeline.core.pdq`)."""
    image = decoded.image
    return pdq_hashes(image, upright_full_size(image.size, (decoded.width, decoded.height)))


def _pdq(decoded: DecodedImage) -> int:
    return decoded_pdq(decoded).identity


_PERCEPTUAL: dict[Algorithm, Callable[[DecodedImage], int]] = {
    Algorithm.PHASH: _phash,
    Algorithm.DHASH: _dhash,
    Algorithm.PDQ: _pdq,
}


@dataclass(frozen=True, slots=True)
class ImageHashes:
    """Every hash computed for one upload, with the decoded image's facts."""

    hashes: Mapping[Algorithm, int]
    format: str
    width: int
    height: int

    def values(self) -> tuple[HashValue, ...]:
        """The hashes as tagged values, in algorithm order."""
        return tuple(HashValue(alg, value) for alg, value in self.hashes.items())

    def hex(self) -> dict[str, str]:
        """``{algorithm: canonical hex}``, the form verdicts carry."""
        return {str(v.algorithm): v.hex for v in self.values()}


def exact_hashes(
    data: bytes, algorithms: Iterable[Algorithm] = EXACT_ALGORITHMS
) -> dict[Algorithm, int]:
    """Digests of the original bytes as ints (big-endian, as their hex reads)."""
    return {
        alg: int.from_bytes(_DIGESTS[alg](data).digest(), "big")
        for alg in algorithms
        if not alg.is_perceptual
    }


def perceptual_hashes(
    decoded: DecodedImage, algorithms: Iterable[Algorithm] = BASELINE_PERCEPTUAL
) -> dict[Algorithm, int]:
    """Perceptual hashes (pHash, dHash: 64 bits; PDQ: 256) of the decoded image as ints."""
    return {alg: _PERCEPTUAL[alg](decoded) for alg in algorithms if alg.is_perceptual}


def upload_hashes(
    data: bytes, decoded: DecodedImage, algorithms: Iterable[Algorithm] = DEFAULT_ALGORITHMS
) -> dict[Algorithm, int]:
    """``algorithms`` of one upload, in :data:`ALL_ALGORITHMS` order: exact digests of ``data``
    (the original bytes) and perceptual hashes of ``decoded`` (their guarded decode).

    The one place an upload's hashes are computed: the worker's and the CLI's hashing job
    (:func:`pipeline.hashprocess.hash_job`) and :func:`hash_image` both call it."""
    wanted = tuple(algorithms)
    hashes = {**exact_hashes(data, wanted), **perceptual_hashes(decoded, wanted)}
    return {alg: hashes[alg] for alg in ALL_ALGORITHMS if alg in hashes}


def hash_image(
    data: bytes, limits: GuardLimits, algorithms: Iterable[Algorithm] = DEFAULT_ALGORITHMS
) -> ImageHashes:
    """Guard, decode once and compute ``algorithms`` (the hashing job without its timings).

    Raises :class:`pipeline.core.guard.ImageRejected` when the guard refuses the bytes. Exact
    digests are only computed for images the guard accepts, so a refusal costs no hashing.
    """
    decoded = decode(data, limits)
    return ImageHashes(
        hashes=MappingProxyType(upload_hashes(data, decoded, algorithms)),
        format=decoded.format,
        width=decoded.width,
        height=decoded.height,
    )
