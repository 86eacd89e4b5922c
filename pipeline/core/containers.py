"""Reading the structure of media containers from their bytes: ISO base media files (MP4, MOV,
3GP, HEIF, AVIF: boxes and ftyp brands) and Matroska/WebM (EBML elements).

Owns the byte-level walks the guards need before any library parses a file: what format a file
claims, where its boxes or elements are and how large they say they are, how many tracks it
declares. Every walk is bounded by the data and tolerates anything: sizes are reported as
declared (a cut file's last box ends past the data), and a walk stops at the first size the
format forbids.

Must not: decode media, raise on malformed input (callers judge), or read anything but ``data``.
"""

from __future__ import annotations

from collections.abc import Iterator

#: ISO base media file format (ftyp) brands of still pictures: AVIF (AV1 Image File Format) and
#: HEIF (ISO/IEC 23008-12; HEIC is its HEVC-coded form, what phones write). A file whose major
#: brand is generic HEIF (mif1, msf1) but which lists an AVIF brand is AVIF.
AVIF_BRANDS = frozenset({b"avif", b"avis"})
HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)
#: ftyp brands of the video containers, by the name the pipeline gives them.
_QUICKTIME_BRANDS = frozenset({b"qt  "})
_M4V_BRANDS = frozenset({b"M4V ", b"M4VH", b"M4VP"})
_3GPP_BRAND_PREFIXES = (b"3gp", b"3g2", b"3ge", b"3gg", b"3gs")

#: The EBML header's ID: the first four bytes of every Matroska and WebM file.
EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_EBML_DOCTYPE = 0x4282
_MATROSKA_SEGMENT = 0x18538067
_MATROSKA_TRACKS = 0x1654AE6B
_MATROSKA_TRACK_ENTRY = 0xAE
_MATROSKA_CLUSTER = 0x1F43B675
#: An EBML size of all ones: "unknown" (a live stream's segment or cluster runs to the end).
_UNKNOWN = -1


def u32be(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "big")


def _iso_brands(data: bytes) -> tuple[bytes, frozenset[bytes]]:
    """The major brand and the compatible brands of an ISO base media file's ftyp box (the
    ones present, when the data stops inside it)."""
    end = min(max(u32be(data, 0), 16), len(data))
    compatible = frozenset(data[at : at + 4] for at in range(16, end - 3, 4))
    return data[8:12], compatible


def iso_media_format(data: bytes) -> str:
    """The format an ISO base media file (``ftyp`` at bytes 4-7) claims by its brands: AVIF or
    HEIF for still pictures; MOV, M4V, 3GP or MP4 for videos; ISOBMFF before the major brand."""
    if len(data) < 12:
        return "ISOBMFF"
    major, compatible = _iso_brands(data)
    if major in AVIF_BRANDS or (major in HEIF_BRANDS and compatible & AVIF_BRANDS):
        return "AVIF"
    if major in HEIF_BRANDS:
        return "HEIF"
    if major in _QUICKTIME_BRANDS:
        return "MOV"
    if major in _M4V_BRANDS:
        return "M4V"
    if major.startswith(_3GPP_BRAND_PREFIXES):
        return "3GP"
    return "MP4"


def iso_boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, offset of the payload, declared end) of each ISO base media box whose header lies
    within ``data[start:end]``. Declared ends are as the boxes say, not clipped to the data;
    stops at a size the format forbids (smaller than the box's own header)."""
    position = start
    while position + 8 <= min(end, len(data)):
        size, kind, header = u32be(data, position), data[position + 4 : position + 8], 8
        if size == 1:  # a 64-bit size follows the type
            if position + 16 > len(data):
                return
            size, header = int.from_bytes(data[position + 8 : position + 16], "big"), 16
        elif size == 0:  # the box runs to the end of its parent
            size = end - position
        if size < header:
            return
        yield kind, position + header, position + size
        position += size


def iso_child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    """(payload offset, declared end) of the first ``kind`` box in ``data[start:end]``."""
    for found, payload, box_end in iso_boxes(data, start, end):
        if found == kind:
            return payload, box_end
    return None


def iso_cut_short(data: bytes) -> bool:
    """Whether an ISO base media file's top-level boxes run past the end of ``data`` (a box
    declared longer than what is left, or a box header cut)."""
    position = 0
    for _, _, end in iso_boxes(data, 0, len(data)):
        if end > len(data):
            return True
        position = end
    return position < len(data) and len(data) - position < 8


def _count_upto(kinds: Iterator[bool], most: int) -> int:
    """How many of ``kinds`` are true, counting no further than ``most``."""
    count = 0
    for hit in kinds:
        count += hit
        if count >= most:
            break
    return count


def iso_track_count(data: bytes, most: int) -> int | None:
    """How many tracks (``trak`` boxes) an ISO base media file's movie box declares, counted
    up to ``most``; None when no movie box header is present."""
    moov = iso_child(data, 0, len(data), b"moov")
    if moov is None:
        return None
    return _count_upto((kind == b"trak" for kind, _, _ in iso_boxes(data, *moov)), most)


def _ebml_vint(data: bytes, at: int, keep_marker: bool) -> tuple[int, int] | None:
    """An EBML variable-length integer at ``at``: (value, offset after it), the length marker
    kept for element IDs; a size of all ones is :data:`_UNKNOWN`. None when cut or invalid."""
    if at >= len(data) or data[at] == 0:
        return None
    length = 9 - data[at].bit_length()
    if at + length > len(data):
        return None
    value = int.from_bytes(data[at : at + length], "big")
    if keep_marker:
        return value, at + length
    value &= (1 << (7 * length)) - 1
    if value == (1 << (7 * length)) - 1:
        value = _UNKNOWN
    return value, at + length


def ebml_elements(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(ID, offset of the payload, declared end) of each EBML element whose header lies within
    ``data[start:end]``; an unknown size runs to ``end``. Declared ends are not clipped."""
    position = start
    while position < min(end, len(data)):
        element = _ebml_vint(data, position, keep_marker=True)
        if element is None:
            return
        size = _ebml_vint(data, element[1], keep_marker=False)
        if size is None:
            return
        payload = size[1]
        declared_end = end if size[0] == _UNKNOWN else payload + size[0]
        yield element[0], payload, declared_end
        if declared_end <= position:
            return
        position = declared_end


def matroska_format(data: bytes) -> str:
    """WEBM or MKV, by the DocType of a Matroska file's EBML header (MKV when it has none)."""
    header = next(ebml_elements(data, 0, len(data)), None)
    if header is not None:
        for element, payload, end in ebml_elements(data, header[1], min(header[2], len(data))):
            if element == _EBML_DOCTYPE:
                return "WEBM" if data[payload:end] == b"webm" else "MKV"
    return "MKV"


def _matroska_segment(data: bytes) -> tuple[int, int] | None:
    for element, payload, end in ebml_elements(data, 0, len(data)):
        if element == _MATROSKA_SEGMENT:
            return payload, end
    return None


def matroska_cut_short(data: bytes) -> bool:
    """Whether a Matroska file's segment declares more bytes than arrived (a segment of
    unknown size, as live recordings write, cannot be judged and is not)."""
    segment = _matroska_segment(data)
    return segment is None or segment[1] > len(data)


def matroska_track_count(data: bytes, most: int) -> int | None:
    """How many TrackEntry elements a Matroska file's Tracks element holds, counted up to
    ``most``; None before one is found (the walk stops at the first cluster: tracks are
    declared before the media)."""
    segment = _matroska_segment(data)
    if segment is None:
        return None
    for element, payload, end in ebml_elements(data, *segment):
        if element == _MATROSKA_TRACKS:
            children = ebml_elements(data, payload, end)
            return _count_upto((child == _MATROSKA_TRACK_ENTRY for child, _, _ in children), most)
        if element == _MATROSKA_CLUSTER:
            return None
    return None
