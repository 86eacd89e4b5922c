"""Matching a video upload: its sampled frames against single-frame list entries, and its
frames as a whole against vPDQ video hashes (the format of HMA and ThreatExchange video lists).

Owns the two rules. A **frame entry** (a pHash, dHash or PDQ of one picture, as image lists
hold) matches when any sampled frame matches it under the image rules
(:meth:`pipeline.core.matching.Matcher.match`: every view and orientation, the same thresholds,
gates and corroboration); the file's exact digests are looked up like an image's. A **vPDQ
entry** matches by ThreatExchange's convention (``python-threatexchange``'s vPDQ signal):
frames below quality :data:`VPDQ_QUALITY_THRESHOLD` are dropped on both sides and duplicates
removed; a frame matches when some frame of the other side is within
:data:`VPDQ_DISTANCE_THRESHOLD` bits (inclusive); the video matches when the share of the
upload's frames that match reaches ``query_percent`` (default 80) and the share of the entry's
frames matched reaches ``entry_percent`` (default 0: a clip trimmed out of a listed video
matches). The upload's frames here are its sampled frames, each searched by all its views
(whole frame and content regions such as the picture inside letterbox bars) in all eight
orientations, so a letterboxed, cropped or mirrored copy still finds the listed frames.

Every match names the times (seconds into the upload) of the frames that matched; nothing else
of the video is kept. Must not do I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from pipeline.core.hashlist import PDQ_MIN_QUALITY, CompactFeature
from pipeline.core.matching import (
    Match,
    Matcher,
    MatcherView,
    VpdqShares,
    pdq_words,
    usable_features,
)
from pipeline.core.orientation import ORIENTATIONS, Orientation, OrientationHashes
from pipeline.core.types import Algorithm
from pipeline.core.video import FrameHashes, VideoHashes, VpdqFeature

#: vPDQ's conventions (python-threatexchange, extensions/vpdq/vpdq_util.py).
VPDQ_QUALITY_THRESHOLD = PDQ_MIN_QUALITY  # 50, the floor of single PDQ hashes too
VPDQ_DISTANCE_THRESHOLD = 31
VPDQ_QUERY_MATCH_PERCENT = 80.0
VPDQ_ENTRY_MATCH_PERCENT = 0.0


def format_vpdq(features: Iterable[CompactFeature | VpdqFeature]) -> str:
    """Features in python-threatexchange's signal format (the text
    :func:`pipeline.core.hashlist.parse_vpdq` reads)."""
    return json.dumps(
        [
            str(CompactFeature(f.pdq, f.quality, f.seconds) if isinstance(f, VpdqFeature) else f)
            for f in features
        ]
    )


def _within(
    left: npt.NDArray[np.uint64], right: npt.NDArray[np.uint64], distance: int
) -> tuple[npt.NDArray[np.bool_], int]:
    """(len(left), len(right)): whether each pair is within ``distance`` bits (inclusive), and
    the smallest distance of a pair within it (``distance + 1`` when none is)."""
    out = np.zeros((len(left), len(right)), dtype=np.bool_)
    nearest = distance + 1
    columns = np.ascontiguousarray(right.T)  # word-major: each word's column is contiguous
    for start in range(0, len(left), 256):  # bounds the (rows x right) temporaries
        rows = left[start : start + 256]
        # Word by word (uint16: 256 differing bits do not fit a uint8): ~10x faster than one
        # (rows x right x 4) XOR summed over its last axis.
        bits = np.bitwise_count(rows[:, 0, None] ^ columns[0][None, :]).astype(np.uint16)
        for word in range(1, 4):
            bits += np.bitwise_count(rows[:, word, None] ^ columns[word][None, :])
        out[start : start + 256] = bits <= distance
        if bits.size:
            nearest = min(nearest, int(bits.min()))
    return out, nearest


@dataclass(frozen=True, slots=True)
class UploadFrame:
    """One sampled frame of an upload as vPDQ compares it: its time and the PDQ features of
    its views (whole frame, then content regions), each in every orientation; ``orientations``
    says how each feature is turned (parallel to ``features``)."""

    seconds: float
    features: tuple[CompactFeature, ...]
    orientations: tuple[Orientation, ...]


@dataclass(frozen=True, slots=True)
class VpdqComparison:
    """How much of an upload and a listed video match: the share (percent) of the upload's
    usable frames matching some entry frame, the share of the entry's usable frames matched,
    the upload times (seconds) of its matching frames, and how they were turned (identity for
    an upright copy, ``mirror`` for a mirrored one; the most frequent first)."""

    query_percent: float
    entry_percent: float
    seconds: tuple[float, ...]
    orientations: tuple[Orientation, ...] = ()
    nearest: int = 0
    """The smallest distance (bits) between a frame of the upload and one of the entry."""

    def matches(
        self,
        query_percent: float = VPDQ_QUERY_MATCH_PERCENT,
        entry_percent: float = VPDQ_ENTRY_MATCH_PERCENT,
    ) -> bool:
        """vPDQ's verdict: both shares reach their thresholds (and something matched)."""
        return (
            bool(self.seconds)
            and self.query_percent >= query_percent
            and self.entry_percent >= entry_percent
        )


def upload_frames(
    video: VideoHashes | Sequence[FrameHashes], turned: bool = True
) -> list[UploadFrame]:
    """The sampled frames of an upload that vPDQ compares, as the PDQ features of their views,
    in every orientation (upright only when not ``turned``).

    Frames sampled for a cut seen only by its coded size are left out: vPDQ lists hash one
    frame a second from the first, and the interval and keyframe samples stand where those do,
    while an off-grid frame in moving content can be far from every listed one and would count
    against the upload's share (measured: VP9 realtime encodes code periodic large frames that
    read as cuts, and took 2 of 3 re-encoded copies below 80%)."""
    orientations = ORIENTATIONS if turned else (Orientation.IDENTITY,)
    frames = []
    for frame in video.frames if isinstance(video, VideoHashes) else video:
        if frame.cut:
            continue
        features: list[CompactFeature] = []
        turns: list[Orientation] = []
        for view in frame.views:
            if Algorithm.PDQ not in view.hashes or view.pdq_quality is None:
                continue
            pdq = view.hashes[Algorithm.PDQ]
            # A view hashed upright only (a reframed one) has no turned values to compare.
            turned_values = isinstance(pdq, OrientationHashes)
            for orientation in orientations if turned_values else (Orientation.IDENTITY,):
                value = pdq[orientation] if isinstance(pdq, OrientationHashes) else pdq.identity
                features.append(CompactFeature(value, view.pdq_quality, frame.seconds))
                turns.append(orientation)
        frames.append(UploadFrame(frame.seconds, tuple(features), tuple(turns)))
    return frames


@dataclass(frozen=True, slots=True)
class PreparedUpload:
    """An upload's frames as vPDQ compares them with every entry, computed once: its usable
    features as rows of 64-bit words, the frame (index into ``times``) and orientation of
    each row, and the time of each frame with a usable feature."""

    words: npt.NDArray[np.uint64]
    owner: tuple[int, ...]
    turns: tuple[Orientation, ...]
    times: tuple[float, ...]


def prepare_upload(
    upload: Sequence[UploadFrame], quality: int = VPDQ_QUALITY_THRESHOLD
) -> PreparedUpload:
    """The upload's features deduplicated as vPDQ does (a hash seen before is dropped, so a
    frame whose every feature repeats an earlier one's is not counted again), then those
    below ``quality`` dropped."""
    seen: set[int] = set()
    rows: list[int] = []
    owner: list[int] = []
    turns: list[Orientation] = []
    times: list[float] = []
    for frame in upload:
        usable = []
        for feature, turn in zip(frame.features, frame.orientations, strict=True):
            if feature.pdq not in seen:  # vPDQ's dedupe, then its quality filter
                seen.add(feature.pdq)
                if feature.quality >= quality:
                    usable.append((feature, turn))
        if not usable:
            continue
        for feature, turn in usable:
            rows.append(feature.pdq)
            owner.append(len(times))
            turns.append(turn)
        times.append(frame.seconds)
    return PreparedUpload(pdq_words(rows), tuple(owner), tuple(turns), tuple(times))


def compare_vpdq(
    upload: Sequence[UploadFrame] | PreparedUpload,
    entry: Sequence[CompactFeature],
    distance: int = VPDQ_DISTANCE_THRESHOLD,
    quality: int = VPDQ_QUALITY_THRESHOLD,
) -> VpdqComparison | None:
    """Compare an upload's frames (a frame matches when any of its features does; see
    :func:`prepare_upload`, which a caller comparing many entries does once) with a listed
    vPDQ hash. None when either side has no usable frame (nothing to judge: vPDQ's
    percentages would divide by zero)."""
    prepared = upload if isinstance(upload, PreparedUpload) else prepare_upload(upload, quality)
    listed = pdq_words([f.pdq for f in usable_features(entry, quality)])
    return compare_prepared(prepared, listed, distance)


def compare_prepared(
    prepared: PreparedUpload,
    listed: npt.NDArray[np.uint64],
    distance: int = VPDQ_DISTANCE_THRESHOLD,
) -> VpdqComparison | None:
    """:func:`compare_vpdq` of a prepared upload and an entry's usable frames as words
    (:func:`pipeline.core.matching.usable_features`, :func:`pipeline.core.matching.pdq_words`:
    the matcher keeps them so, computed once per entry)."""
    times = prepared.times
    if not len(listed) or not times:
        return None
    near, nearest = _within(prepared.words, listed, distance)
    row_any: npt.NDArray[np.bool_] = np.asarray(near.any(axis=1), dtype=np.bool_)
    column_any: npt.NDArray[np.bool_] = np.asarray(near.any(axis=0), dtype=np.bool_)
    row_hits = [bool(hit) for hit in row_any]
    frame_hits = [False] * len(times)
    for frame_index, hit in zip(prepared.owner, row_hits, strict=True):
        frame_hits[frame_index] = frame_hits[frame_index] or hit
    counts: dict[Orientation, int] = {}
    for turn, hit in zip(prepared.turns, row_hits, strict=True):
        if hit:
            counts[turn] = counts.get(turn, 0) + 1
    return VpdqComparison(
        query_percent=100.0 * sum(frame_hits) / len(frame_hits),
        entry_percent=100.0 * float(column_any.mean()),
        seconds=tuple(t for t, hit in zip(times, frame_hits, strict=True) if hit),
        orientations=tuple(sorted(counts, key=lambda turn: -counts[turn])),
        nearest=nearest,
    )


@dataclass(frozen=True, slots=True)
class VideoFrameMatch:
    """A list entry a video matched through its frames or file digest: the nearest match (its
    distance, orientation and region, as an image's), and the times of every sampled frame
    that matched the entry (empty for a file-digest match)."""

    match: Match
    seconds: tuple[float, ...]


def match_video(
    matcher: Matcher, hashes: Mapping[Algorithm, int], frames: Sequence[FrameHashes]
) -> list[VideoFrameMatch]:
    """Every entry of ``matcher``'s lists that a video matches: its exact file digests
    (``hashes``), and each sampled frame's views under the image rules. One result per entry,
    by its nearest match (the earliest frame on a tie; its ``frame_seconds`` set to every
    matching frame's time), nearest first."""
    found: dict[tuple[str, str], tuple[Match, list[float]]] = {}
    for match in matcher.match({alg: v for alg, v in hashes.items() if not alg.is_perceptual}):
        found[(match.list_name, match.entry_id)] = (match, [])
    for frame in frames:
        for match in matcher.match({}, frame.views):
            key = (match.list_name, match.entry_id)
            best, seconds = found.setdefault(key, (match, []))
            seconds.append(frame.seconds)
            if match.distance < best.distance:
                found[key] = (match, seconds)
    results = [
        VideoFrameMatch(replace(match, frame_seconds=tuple(seconds)), tuple(seconds))
        for match, seconds in found.values()
    ]
    results.sort(key=lambda r: (r.match.distance, r.match.list_name, r.match.entry_id))
    return results


@dataclass(frozen=True, slots=True)
class VpdqRule:
    """The shares a video must reach to match a vPDQ entry (percent, inclusive): of its own
    usable frames that match (``query_percent``) and of the entry's frames matched
    (``entry_percent``). The frame distance is each list's PDQ threshold (default 31) and the
    quality floor :data:`VPDQ_QUALITY_THRESHOLD`, vPDQ's convention."""

    query_percent: float = VPDQ_QUERY_MATCH_PERCENT
    entry_percent: float = VPDQ_ENTRY_MATCH_PERCENT


#: vPDQ's own shares: 80% of the upload's frames, any share of the entry's.
VPDQ_RULE = VpdqRule()


def match_vpdq_entries(
    view: MatcherView, frames: Sequence[FrameHashes], rule: VpdqRule = VPDQ_RULE
) -> list[Match]:
    """Every vPDQ entry of ``view`` (enabled, configured lists) that a video's sampled frames
    match by :func:`compare_vpdq` and ``rule``, at each list's PDQ threshold. Each match is a
    ``pdq`` match whose distance is the nearest frame pair's, whose ``frame_seconds`` are the
    upload's matching frames and whose ``vpdq`` gives the shares; nearest first.

    A linear comparison: each entry is compared with every usable frame feature of the upload
    (``pipeline bench video`` measures the cost per entry)."""
    if not view.videos:
        return []
    upload = prepare_upload(upload_frames(frames))
    found = []
    for entry, listed in zip(view.videos, view.video_words, strict=True):
        config = view.configs[entry.list_name]
        distance = config.threshold(Algorithm.PDQ)
        if distance is None:
            continue
        comparison = compare_prepared(upload, listed, distance)
        if comparison is None or not comparison.matches(rule.query_percent, rule.entry_percent):
            continue
        found.append(
            Match(
                list_name=config.name,
                list_version=config.version,
                list_kind=config.kind,
                list_action=config.action,
                entry_id=entry.entry_id,
                category=entry.category,
                algorithm=Algorithm.PDQ,
                distance=comparison.nearest,
                threshold=distance,
                orientation=comparison.orientations[0]
                if comparison.orientations
                else Orientation.IDENTITY,
                frame_seconds=comparison.seconds,
                vpdq=VpdqShares(
                    query_percent=round(comparison.query_percent, 2),
                    entry_percent=round(comparison.entry_percent, 2),
                    query_threshold=rule.query_percent,
                    entry_threshold=rule.entry_percent,
                ),
            )
        )
    found.sort(key=lambda m: (m.distance, m.list_name, m.entry_id))
    return found
