"""One decode, all hashes: exact digests of the bytes and perceptual hashes of the picture.

Owns how each algorithm's value is computed and how it is laid out as an int, and the
:class:`View`: the perceptual hashes of one region of the upload (the whole picture first) in
every orientation (:mod:`pipeline.core.orientation`), all from the one reduced decode.

The upright perceptual hashes equal imagehash's own functions applied to the guarded, reduced,
grayscale image bit for bit (the orientation module derives all eight from imagehash's steps,
pinned by golden tests), and the int is read exactly as imagehash's hex string reads (first
array bit = most significant bit), so ``HashValue(alg, value).hex == str(imagehash.phash(img))``
and lists made with plain imagehash match. For JPEGs the reduced-scale decode shifts pHash by a
bit or two at most (measured by ``pipeline bench hashing``); other formats are hashed from the
full image and agree exactly.
PDQ (:mod:`pipeline.core.pdq`) is read as ThreatExchange's hex reads; it is not in the default
set (:data:`DEFAULT_ALGORITHMS`): callers ask for it when a list uses it. A view's PDQ carries
its quality; :data:`pipeline.core.hashlist.PDQ_MIN_QUALITY` is the floor below which the
matcher does not search it.

Must not: read files, log, or keep the bytes after returning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import imagehash
import numpy as np
import numpy.typing as npt
from PIL import Image

from pipeline.core.detail import is_low_information_dct, thumbnail_dct
from pipeline.core.guard import DecodedImage, GuardLimits, decode
from pipeline.core.orientation import (
    OrientationHashes,
    UprightHash,
    dhash_orientations,
    phash_orientations_of,
)
from pipeline.core.pdq import PdqHashes, pdq_hashes, upright_full_size
from pipeline.core.reframe import reframings
from pipeline.core.regions import Region, content_regions
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
    return pdq_hashes(decoded.image, upright_size(decoded))


def _pdq(decoded: DecodedImage) -> int:
    return decoded_pdq(decoded).identity


_PERCEPTUAL: dict[Algorithm, Callable[[DecodedImage], int]] = {
    Algorithm.PHASH: _phash,
    Algorithm.DHASH: _dhash,
    Algorithm.PDQ: _pdq,
}


@dataclass(frozen=True, slots=True)
class View:
    """The perceptual hashes of one region of an upload, in every orientation.

    ``region`` is in the upload's pixels (the whole picture for the first view of an upload).
    ``hashes`` maps each perceptual algorithm computed to its eight orientations; the identity
    values of the whole-picture view are the upload's perceptual hashes. Plain dicts, so a view
    pickles across the hashing process pool.
    """

    region: Region
    hashes: Mapping[Algorithm, OrientationHashes | UprightHash]
    low_information: bool = False
    """Too little detail for a perceptual match to mean anything
    (:func:`pipeline.core.detail.is_low_information`): the matcher does not search it."""
    pdq_quality: int | None = None
    """PDQ's quality score (0-100) of this view, when PDQ was computed."""

    @property
    def upright_only(self) -> bool:
        """Hashed, and so searched, in the upright orientation only (:class:`UprightHash`): a
        reframed view (:mod:`pipeline.core.reframe`) is a guess at the listed picture's frame,
        and its seven turns would be seven more chances for an unrelated picture to come near
        an entry."""
        return any(isinstance(value, UprightHash) for value in self.hashes.values())


@dataclass(frozen=True, slots=True)
class ImageHashes:
    """Every hash computed for one upload, with the decoded image's facts."""

    hashes: Mapping[Algorithm, int]
    format: str
    width: int
    height: int
    views: tuple[View, ...] = ()

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


def upload_views(
    decoded: DecodedImage, algorithms: Iterable[Algorithm] = PERCEPTUAL_ALGORITHMS
) -> tuple[View, ...]:
    """The views of one decoded upload: the whole picture, then each content region
    (:func:`pipeline.core.regions.content_regions`: without uniform borders, or the picture
    inside a screenshot or meme), each in every orientation, then the reframed pictures
    (:func:`pipeline.core.reframe.reframings`: straightened, uncropped; pHash and dHash
    upright only, their region the whole upload), all from the one reduced decode.

    Regions are reported in the upright upload's pixels. Empty when ``algorithms`` holds no
    perceptual algorithm (nothing to search by distance).
    """
    wanted = [alg for alg in algorithms if alg.is_perceptual]
    if not wanted:
        return ()
    image = decoded.image
    width, height = upright_size(decoded)
    views = [_view(Region.whole(width, height), image, wanted)]
    scale_x, scale_y = width / image.width, height / image.height
    for found in content_regions(image):
        box = (found.x, found.y, found.x + found.width, found.y + found.height)
        region = Region(
            x=round(found.x * scale_x),
            y=round(found.y * scale_y),
            width=max(1, round(found.width * scale_x)),
            height=max(1, round(found.height * scale_y)),
            kind=found.kind,
        )
        views.append(_view(region, image.crop(box), wanted))
    # Reframed views: pHash and dHash only (PDQ adds little there and costs as much as the
    # rest of the view), searched upright only.
    if Algorithm.PHASH in wanted or Algorithm.DHASH in wanted:
        for kind, reframed in reframings(image):
            views.append(_upright_view(Region(0, 0, width, height, kind), reframed, wanted))
    return tuple(views)


def _upright_view(region: Region, image: Image.Image, algorithms: Sequence[Algorithm]) -> View:
    """A reframed view: pHash and dHash of ``image``, upright only (:class:`UprightHash`), the
    low-information gate judged as for any view."""
    coefficients = thumbnail_dct(image)
    hashes: dict[Algorithm, OrientationHashes | UprightHash] = {}
    if Algorithm.PHASH in algorithms:
        hashes[Algorithm.PHASH] = UprightHash(phash_orientations_of(coefficients).identity)
    if Algorithm.DHASH in algorithms:
        hashes[Algorithm.DHASH] = UprightHash(bits_to_int(imagehash.dhash(image).hash))
    return View(region, hashes, low_information=is_low_information_dct(coefficients))


def _view(region: Region, image: Image.Image, algorithms: Sequence[Algorithm]) -> View:
    """One view: ``image`` (the region's pixels of a decode, grayscale; ``region`` is where
    they are in the upright upload, full size) hashed in every orientation, and the
    low-information gate judged on pHash's own thumbnail DCT (one resize and one DCT serve
    both). PDQ is computed as if from the region at full size (see :mod:`pipeline.core.pdq`)."""
    coefficients = thumbnail_dct(image)
    hashes: dict[Algorithm, OrientationHashes | UprightHash] = {}
    if Algorithm.PHASH in algorithms:
        hashes[Algorithm.PHASH] = phash_orientations_of(coefficients)
    if Algorithm.DHASH in algorithms:
        hashes[Algorithm.DHASH] = dhash_orientations(image)
    quality = None
    if Algorithm.PDQ in algorithms:
        pdq = pdq_hashes(image, (region.width, region.height))
        hashes[Algorithm.PDQ], quality = pdq.orientations, pdq.quality
    return View(
        region,
        hashes,
        low_information=is_low_information_dct(coefficients),
        pdq_quality=quality,
    )


def upright_size(decoded: DecodedImage) -> tuple[int, int]:
    """The upload's size in pixels as it is seen upright (after its EXIF orientation).

    ``decoded.width``/``height`` are the stored size; a quarter-turn EXIF orientation swaps
    them. Whether it did is read off the decoded (upright, maybe reduced) picture's shape, by
    the rule PDQ's full-size resampling uses too (:func:`~pipeline.core.pdq.upright_full_size`)."""
    return upright_full_size(decoded.image.size, (decoded.width, decoded.height))


def upload_hashes(
    data: bytes, decoded: DecodedImage, algorithms: Iterable[Algorithm] = DEFAULT_ALGORITHMS
) -> tuple[dict[Algorithm, int], tuple[View, ...]]:
    """``algorithms`` of one upload: exact digests of ``data`` (the original bytes) and the
    perceptual hashes of ``decoded`` (their guarded decode), in :data:`ALL_ALGORITHMS` order,
    with the views they come from (see :func:`upload_views`).

    The one place an upload's hashes are computed: the worker's and the CLI's hashing job
    (:func:`pipeline.hashprocess.hash_job`) and :func:`hash_image` both call it. The upload's
    perceptual hashes are the whole-picture view's identity values, so they are computed once.
    """
    wanted = tuple(algorithms)
    views = upload_views(decoded, wanted)
    upright = {alg: oriented.identity for alg, oriented in views[0].hashes.items()} if views else {}
    hashes = {**exact_hashes(data, wanted), **upright}
    return {alg: hashes[alg] for alg in ALL_ALGORITHMS if alg in hashes}, views


def hash_image(
    data: bytes, limits: GuardLimits, algorithms: Iterable[Algorithm] = DEFAULT_ALGORITHMS
) -> ImageHashes:
    """Guard, decode once and compute ``algorithms`` (the hashing job without its timings).

    Raises :class:`pipeline.core.guard.ImageRejected` when the guard refuses the bytes. Exact
    digests are only computed for images the guard accepts, so a refusal costs no hashing.
    """
    decoded = decode(data, limits)
    hashes, views = upload_hashes(data, decoded, algorithms)
    return ImageHashes(
        hashes=MappingProxyType(hashes),
        format=decoded.format,
        width=decoded.width,
        height=decoded.height,
        views=views,
    )
