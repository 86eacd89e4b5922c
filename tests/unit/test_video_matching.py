"""Video matching: vPDQ's rule (checked against a port of ThreatExchange's brute-force matcher),
its list format, frame entries matched through sampled frames with their times, and recall of
edited copies of a listed clip with no match on unrelated clips."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from pipeline.core.hashlist import (
    Category,
    CompactFeature,
    HashListEntry,
    ListConfig,
    VpdqEntry,
    parse_vpdq,
)
from pipeline.core.matching import Matcher
from pipeline.core.orientation import Orientation
from pipeline.core.types import Algorithm, HashValue
from pipeline.core.videolimits import VideoLimits
from pipeline.core.videomatch import (
    UploadFrame,
    VpdqRule,
    compare_vpdq,
    format_vpdq,
    match_video,
    match_vpdq_entries,
    upload_frames,
)
from pipeline.videodecode import hash_video, open_video, vpdq_features
from tests.videogen import encode_clip, slideshow

LIMITS = VideoLimits()
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]
FRAMES = list(slideshow(PHOTOS, seconds_each=2.0))
ORIGINAL = encode_clip(FRAMES, gop=25)
ALGORITHMS = (Algorithm.SHA256, Algorithm.PHASH, Algorithm.PDQ)


def listed_vpdq(data: bytes) -> tuple[CompactFeature, ...]:
    """The vPDQ hash a list would hold for ``data``, through its own format."""
    container, _, video = open_video(data, LIMITS)
    with container:
        return parse_vpdq(format_vpdq(vpdq_features(container, video, LIMITS)))


ENTRY = listed_vpdq(ORIGINAL)


def usable(features):
    seen, kept = set(), []
    for f in features:
        if f.pdq not in seen:
            seen.add(f.pdq)
            kept.append(f)
    return [f for f in kept if f.quality >= 50]


def reference_match(query: list[CompactFeature], compared: list[CompactFeature]):
    """python-threatexchange's match_VPDQ_hash_brute, ported as it is (dedupe by hash, drop
    quality < 50, a frame matches within 31 bits inclusive); None where it would divide by
    zero (no usable frame on a side)."""
    q, c = usable(query), usable(compared)
    if not q or not c:
        return None

    def count(a, b):
        return sum(any((x.pdq ^ y.pdq).bit_count() <= 31 for y in b) for x in a)

    return count(q, c) * 100 / len(q), count(c, q) * 100 / len(c)


def near(value: int, rng: random.Random, bits: int) -> int:
    for bit in rng.sample(range(256), bits):
        value ^= 1 << bit
    return value


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), sizes=st.tuples(st.integers(1, 12), st.integers(1, 12)))
def test_comparison_agrees_with_threatexchange_brute_force(
    seed: int, sizes: tuple[int, int]
) -> None:
    rng = random.Random(seed)
    bases = [rng.getrandbits(256) for _ in range(4)]

    def feature(t: float) -> CompactFeature:
        value = near(rng.choice(bases), rng, rng.choice([0, 5, 25, 31, 32, 60]))
        return CompactFeature(value, rng.choice([0, 49, 50, 100]), t)

    query = [feature(float(i)) for i in range(sizes[0])]
    listed = [feature(float(i)) for i in range(sizes[1])]
    if rng.random() < 0.3:
        query.append(query[0])  # a repeated frame: vPDQ counts it once
    got = compare_vpdq(
        [UploadFrame(f.seconds, (f,), (Orientation.IDENTITY,)) for f in query], listed
    )
    want = reference_match(query, listed)
    if want is None:
        assert got is None
        return
    assert got is not None
    assert (got.query_percent, got.entry_percent) == pytest.approx(want)


def test_list_format_is_python_threatexchanges() -> None:
    text = json.dumps([f"{'ab' * 32},100,0.0", f"{'cd' * 32},73,1.03"])
    assert parse_vpdq(text) == (
        CompactFeature(int("ab" * 32, 16), 100, 0.0),
        CompactFeature(int("cd" * 32, 16), 73, 1.03),
    )
    assert json.loads(format_vpdq(parse_vpdq(text))) == [
        f"{'ab' * 32},100,0.0",
        f"{'cd' * 32},73,1.03",
    ]


@pytest.mark.parametrize(
    "text",
    ['["abc,100,0.0"]', f'["{"ab" * 32},101,0.0"]', f'["{"ab" * 32},50,-1"]', '{"a": 1}', "[1]"],
)
def test_malformed_vpdq_hashes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="vPDQ"):
        parse_vpdq(text)


def watermark(frame: np.ndarray) -> np.ndarray:
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), "forwarded many times", fill=(255, 255, 255))
    draw.rectangle((280, 215, 310, 230), fill=(255, 0, 0))
    return np.asarray(image)


def letterbox(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    out = np.zeros((height, height * 16 // 9 // 2 * 2, 3), np.uint8)
    left = (out.shape[1] - width) // 2
    out[:, left : left + width] = frame
    return out


def resized(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))


COPIES = {
    "reencoded-vp9": lambda: encode_clip(
        FRAMES,
        codec="libvpx-vp9",
        container="WEBM",
        options={"deadline": "realtime", "cpu-used": "8", "crf": "45", "b:v": "0"},
    ),
    "reencoded-crf40": lambda: encode_clip(FRAMES, options={"crf": "40"}),
    "half-size": lambda: encode_clip([resized(f, (160, 120)) for f in FRAMES]),
    "watermarked": lambda: encode_clip([watermark(f) for f in FRAMES]),
    "letterboxed": lambda: encode_clip([letterbox(f) for f in FRAMES]),
    "trimmed-30-percent": lambda: encode_clip(FRAMES[37:86]),
    "mirrored": lambda: encode_clip([np.ascontiguousarray(f[:, ::-1]) for f in FRAMES]),
}


@pytest.mark.parametrize("name", sorted(COPIES))
def test_edited_copies_of_a_listed_video_match(name: str) -> None:
    copy = hash_video(COPIES[name](), LIMITS, (Algorithm.PDQ,))
    comparison = compare_vpdq(upload_frames(copy), ENTRY)
    assert comparison is not None
    assert comparison.matches(), (comparison.query_percent, comparison.entry_percent)
    expected = Orientation.MIRROR if name == "mirrored" else Orientation.IDENTITY
    assert comparison.orientations[0] is expected


def test_unrelated_clips_do_not_match() -> None:
    others = [["camera", "coins"], ["moon", "brick"], ["grass", "gravel"], ["clock", "cell"]]
    for photos in others:
        clip = encode_clip(list(slideshow(photos, seconds_each=2.0)))
        comparison = compare_vpdq(upload_frames(hash_video(clip, LIMITS, (Algorithm.PDQ,))), ENTRY)
        assert comparison is None or not comparison.seconds


def test_frame_entries_match_through_sampled_frames_with_their_times() -> None:
    upload = hash_video(ORIGINAL, LIMITS, ALGORITHMS)
    coffee = upload.frames[2].views[0].hashes[Algorithm.PDQ].identity  # shown at 2-4 s
    matcher = Matcher()
    matcher.set_list(ListConfig.create("l"))
    matcher.upsert(
        [
            HashListEntry("l", "coffee-still", HashValue(Algorithm.PDQ, coffee), Category.CSAM),
            HashListEntry(
                "l",
                "the-file",
                HashValue(Algorithm.SHA256, upload.hashes[Algorithm.SHA256]),
                Category.CSAM,
            ),
        ]
    )
    found = {m.match.entry_id: m for m in match_video(matcher, upload.hashes, upload.frames)}
    assert set(found) == {"coffee-still", "the-file"}
    assert found["the-file"].seconds == ()
    seconds = found["coffee-still"].seconds
    assert seconds[0] == 2.0
    assert all(2.0 <= t < 4.0 for t in seconds)  # while the coffee photo is shown
    assert found["coffee-still"].match.distance == 0
    assert found["coffee-still"].match.frame_seconds == seconds


def test_a_video_verdict_names_the_media_and_the_matching_frames() -> None:
    from pathlib import Path

    from pipeline.application.screen_files import file_verdict
    from pipeline.config import Settings
    from pipeline.core.guard import GuardLimits
    from pipeline.hashprocess import hash_job

    outcome = hash_job(ORIGINAL, GuardLimits(video=LIMITS), ALGORITHMS)
    chelsea = outcome.frames[4].views[0].hashes[Algorithm.PDQ].identity  # shown at 4-6 s
    matcher = Matcher()
    matcher.set_list(ListConfig.create("l"))
    matcher.upsert([HashListEntry("l", "cat", HashValue(Algorithm.PDQ, chelsea), Category.CSAM)])
    verdict = file_verdict(Path("clip.mp4"), outcome, matcher, Settings())
    assert verdict.image is not None
    assert (verdict.image.media, verdict.image.duration_seconds) == ("video", 8.0)
    (record,) = verdict.matches
    assert record.entry_id == "cat"
    assert record.frame_seconds is not None
    assert record.frame_seconds[0] == 4.0
    assert all(4.0 <= t < 6.0 for t in record.frame_seconds)


# -- vPDQ entries held by the matcher, as list files and the topic give them ---------------------


def vpdq_matcher(**config: object) -> Matcher:
    matcher = Matcher()
    matcher.set_list(ListConfig.create("videos", action="block", **config))  # type: ignore[arg-type]
    matcher.upsert_videos([VpdqEntry("videos", "listed-clip", ENTRY, Category.TERROR)])
    return matcher


def test_a_vpdq_entry_asks_for_pdq_and_blocks_a_reencoded_copy_naming_frames_and_shares() -> None:
    from pathlib import Path

    from pipeline.application.screen_files import file_verdict
    from pipeline.config import Settings
    from pipeline.core.guard import GuardLimits
    from pipeline.hashprocess import hash_job
    from pipeline.verdicts import verdict_algorithms

    matcher = vpdq_matcher()
    algorithms = verdict_algorithms(matcher.algorithms_in_use())
    assert Algorithm.PDQ in algorithms  # no PDQ entry: the vPDQ entry asks for it
    outcome = hash_job(COPIES["reencoded-crf40"](), GuardLimits(video=LIMITS), algorithms)
    verdict = file_verdict(Path("copy.mp4"), outcome, matcher, Settings())
    assert verdict.action == "block"
    (record,) = verdict.matches
    assert (record.list, record.entry_id, record.algorithm) == ("videos", "listed-clip", "pdq")
    assert record.vpdq is not None
    assert record.vpdq.query_percent >= 80.0
    assert (record.vpdq.query_threshold, record.vpdq.entry_threshold) == (80.0, 0.0)
    assert record.distance <= record.threshold == 31
    assert record.frame_seconds is not None
    assert record.frame_seconds[0] == 0.0


def test_an_unrelated_clip_does_not_match_a_vpdq_entry() -> None:
    matcher = vpdq_matcher()
    clip = encode_clip(list(slideshow(["camera", "coins"], seconds_each=2.0)))
    upload = hash_video(clip, LIMITS, (Algorithm.PDQ,))
    assert match_vpdq_entries(matcher.view, upload.frames) == []


def test_vpdq_entries_follow_the_list_policy_and_the_rule() -> None:
    upload = hash_video(COPIES["reencoded-crf40"](), LIMITS, (Algorithm.PDQ,))
    assert len(match_vpdq_entries(vpdq_matcher().view, upload.frames)) == 1
    held = Matcher()  # a list with no config: held, never matched
    held.upsert_videos([VpdqEntry("videos", "listed-clip", ENTRY, Category.TERROR)])
    assert held.held_counts() == {"videos": 1}
    assert match_vpdq_entries(held.view, upload.frames) == []
    assert match_vpdq_entries(vpdq_matcher(enabled=False).view, upload.frames) == []
    # The frame distance is the list's PDQ threshold: at 0 bits a re-encode no longer matches.
    assert match_vpdq_entries(vpdq_matcher(thresholds={"pdq": 0}).view, upload.frames) == []
    # An entry share of 100% asks for the whole listed video: a trimmed copy falls short.
    trimmed = hash_video(COPIES["trimmed-30-percent"](), LIMITS, (Algorithm.PDQ,))
    assert len(match_vpdq_entries(vpdq_matcher().view, trimmed.frames)) == 1
    whole = VpdqRule(query_percent=80.0, entry_percent=100.0)
    assert match_vpdq_entries(vpdq_matcher().view, trimmed.frames, whole) == []
    retracting = vpdq_matcher()
    assert retracting.retract_videos([("videos", "listed-clip")]) == 1
    assert match_vpdq_entries(retracting.view, upload.frames) == []
    assert retracting.algorithms_in_use() == ()


def test_a_republished_vpdq_entry_changes_nothing_and_a_changed_one_replaces_it() -> None:
    matcher = vpdq_matcher()
    same = VpdqEntry("videos", "listed-clip", ENTRY, Category.TERROR)
    assert matcher.upsert_videos([same]) == 0
    assert matcher.upsert_videos([VpdqEntry("videos", "listed-clip", ENTRY[:2], Category.TERROR)])
    (words,) = matcher.view.video_words
    assert len(words) <= 2
