"""Matching by views: every orientation of every region is searched, each entry reported once.

The rule: an entry is reported by its nearest hit; ties go to the earlier view (the whole
picture first), then the earlier orientation (identity first). The reported orientation is how
the upload is turned relative to the listed picture, the inverse of the query's.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import imagehash
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.commands.uploads import verdict_line
from pipeline.core.decision import decide
from pipeline.core.detail import DHASH_MIN_TRANSITIONS, dhash_transitions
from pipeline.core.guard import GuardLimits
from pipeline.core.hashing import ALL_ALGORITHMS, View, bits_to_int, hash_image
from pipeline.core.hashlist import PDQ_MIN_QUALITY, Category, HashListEntry, ListConfig
from pipeline.core.matching import CORROBORATION, DHASH_ALONE, TURNED_MARGIN, Match, Matcher
from pipeline.core.orientation import ORIENTATIONS, Orientation, OrientationHashes, orient
from pipeline.core.pdq import pdq_hash
from pipeline.core.regions import Region, RegionKind
from pipeline.core.types import Algorithm, HashValue, hamming_distance
from pipeline.hashprocess import hash_job
from pipeline.models import ImageFacts
from pipeline.verdicts import image_facts, screened_verdict
from tests.framing import BLACK, WHITE, Framed, chat_screenshot, letterbox, meme, pad
from tests.imagegen import encode, sample_photo
from tests.unit.test_matching import transitions

LIST = ListConfig.create("eokm", action="block", thresholds={"phash": 8, "dhash": 10})
REGIONS = (
    Region.whole(1000, 800),
    Region(100, 80, 800, 640, RegionKind.TRIMMED),
    Region(300, 200, 400, 300, RegionKind.EMBEDDED),
)


def reference(
    entries: list[HashListEntry], views: list[View], config: ListConfig = LIST
) -> list[Match]:
    """The rule written out: for each entry, the smallest (distance, view, orientation) among
    its hits that count."""
    out = []
    for e in entries:
        algorithm = e.hash.algorithm
        threshold = config.thresholds[algorithm]
        turned = threshold - TURNED_MARGIN.get(algorithm, 0)
        counting = [
            (distance, position, rank, o, view, limit)
            for position, view in enumerate(views)
            if algorithm in view.hashes
            for rank, o in enumerate(ORIENTATIONS)
            for distance in [hamming_distance(view.hashes[algorithm][o], e.hash.value)]
            for limit in [threshold if o is Orientation.IDENTITY else turned]
            if distance <= limit and counts(e, entries, view, o, distance, config)
        ]
        if not counting:
            continue
        distance, _, _, orientation, view, limit = min(counting, key=lambda c: c[:3])
        out.append(Match(e.list_name, config.version, config.kind, config.action, e.entry_id,
                         e.category, algorithm, distance, limit,
                         orientation.inverse, view.region))  # fmt: skip
    return sorted(out, key=lambda m: (m.distance, m.list_name, m.entry_id, m.algorithm))


def counts(
    e: HashListEntry,
    entries: list[HashListEntry],
    view: View,
    orientation: Orientation,
    distance: int,
    config: ListConfig,
) -> bool:
    """Whether a hit within its threshold counts: every algorithm's but dHash's does; a dHash
    hit within DHASH_ALONE between detailed hashes does; any other dHash hit only upright and
    corroborated (see test_matching.corroborated): the same view, upright, a near miss of a
    pHash entry of the list (beyond its pHash threshold)."""
    if e.hash.algorithm is not Algorithm.DHASH:
        return True
    query = view.hashes[Algorithm.DHASH][orientation]
    if (
        distance <= DHASH_ALONE
        and min(transitions(query), transitions(e.hash.value)) >= DHASH_MIN_TRANSITIONS
    ):
        return True
    mine = view.hashes.get(Algorithm.PHASH)
    return (
        orientation is Orientation.IDENTITY
        and mine is not None
        and any(
            p.hash.algorithm is Algorithm.PHASH
            and config.thresholds[Algorithm.PHASH]
            < hamming_distance(mine.identity, p.hash.value)
            <= CORROBORATION[Algorithm.PHASH]
            for p in entries
        )
    )


values = st.integers(0, (1 << 64) - 1)
#: Hashes drawn around: any value, or the dHash of a smooth picture (uniform, gradient,
#: vignette), so the dHash rule's smooth side is exercised too.
centres = values | st.sampled_from([0, (1 << 64) - 1, 0xF0F0F0F0F0F0F0F0])


def near(base: int) -> st.SearchStrategy[int]:
    return st.lists(st.integers(0, 63), max_size=12).map(
        lambda bits: base ^ sum(1 << b for b in set(bits))
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_views_match_like_the_rule(data: st.DataObject) -> None:
    centre = data.draw(centres)
    view_count = data.draw(st.integers(1, len(REGIONS)))
    views = [
        View(
            region=REGIONS[i],
            hashes={
                alg: OrientationHashes(tuple(data.draw(near(centre)) for _ in ORIENTATIONS))
                for alg in (Algorithm.PHASH, Algorithm.DHASH)
            },
        )
        for i in range(view_count)
    ]
    entries = [
        HashListEntry("eokm", f"e{i}", HashValue(alg, data.draw(near(centre))), Category.CSAM)
        for i, alg in enumerate(data.draw(st.lists(st.sampled_from(list(LIST.thresholds)))))
    ]
    matcher = Matcher()
    matcher.set_list(LIST)
    matcher.upsert(entries)
    upright = {alg: value.identity for alg, value in views[0].hashes.items()}
    assert matcher.match(upright, views) == reference(entries, views)


def test_an_upright_match_is_reported_upright_and_whole_when_variants_tie() -> None:
    # A symmetric picture: every orientation hashes alike, and a trimmed region too.
    same = OrientationHashes((0x0F0F,) * len(ORIENTATIONS))
    views = [View(REGIONS[0], {Algorithm.PHASH: same}), View(REGIONS[1], {Algorithm.PHASH: same})]
    matcher = Matcher()
    matcher.set_list(LIST)
    matcher.upsert([HashListEntry("eokm", "e", HashValue(Algorithm.PHASH, 0x0F0F), Category.CSAM)])
    (match,) = matcher.match({Algorithm.PHASH: 0x0F0F}, views)
    assert (match.orientation, match.region) == (Orientation.IDENTITY, REGIONS[0])


#: A dHash with as many transitions as a photo's (see pipeline.core.detail).
PHOTO_DHASH = 0x3A5C96E10F2DB487


def test_a_low_information_view_is_not_searched_but_exact_digests_still_are() -> None:
    photo = OrientationHashes((PHOTO_DHASH,) * len(ORIENTATIONS))
    views = [View(REGIONS[0], {Algorithm.DHASH: photo}, low_information=True)]
    matcher = Matcher()
    matcher.set_list(LIST)
    matcher.upsert(
        [
            HashListEntry("eokm", "d", HashValue(Algorithm.DHASH, PHOTO_DHASH), Category.CSAM),
            HashListEntry("eokm", "m", HashValue(Algorithm.MD5, 7), Category.CSAM),
        ]
    )
    hashes = {Algorithm.DHASH: PHOTO_DHASH, Algorithm.MD5: 7}
    assert [m.entry_id for m in matcher.match(hashes, views)] == ["m"]
    detailed = [View(REGIONS[0], {Algorithm.DHASH: photo})]
    assert [m.entry_id for m in matcher.match(hashes, detailed)] == ["d", "m"]


def _view(phash: int, dhash: int) -> View:
    return View(
        REGIONS[0],
        {
            Algorithm.PHASH: OrientationHashes((phash,) * len(ORIENTATIONS)),
            Algorithm.DHASH: OrientationHashes((dhash,) * len(ORIENTATIONS)),
        },
    )


def _flip(value: int, bits: int) -> int:
    return value ^ ((1 << bits) - 1)


def test_a_smooth_dhash_matches_only_with_a_phash_near_miss() -> None:
    """Two smooth pictures' dHashes (a vignette's runs of equal bits) lie within a few bits of
    each other whatever the pictures: even at distance 0 such a match needs the upload's pHash
    to nearly match a pHash entry of the list."""
    vignette = 0xF0F0F0F0F0F0F0F0
    assert dhash_transitions(vignette) < DHASH_MIN_TRANSITIONS <= dhash_transitions(PHOTO_DHASH)
    matcher = Matcher()
    matcher.set_list(LIST)
    matcher.upsert(
        [HashListEntry("eokm", "d", HashValue(Algorithm.DHASH, vignette), Category.CSAM)]
    )
    upload_phash = 0x0123456789ABCDEF
    assert matcher.match({}, [_view(upload_phash, vignette)]) == []
    near_miss = _flip(upload_phash, 10)  # beyond the list's pHash threshold of 8, within 12
    matcher.upsert(
        [HashListEntry("eokm", "p", HashValue(Algorithm.PHASH, near_miss), Category.CSAM)]
    )
    assert [m.entry_id for m in matcher.match({}, [_view(upload_phash, vignette)])] == ["d"]
    # A photo-like dHash within DHASH_ALONE counts on its own.
    lone = Matcher()
    lone.set_list(LIST)
    lone.upsert(
        [HashListEntry("eokm", "d", HashValue(Algorithm.DHASH, PHOTO_DHASH), Category.CSAM)]
    )
    assert [m.entry_id for m in lone.match({}, [_view(upload_phash, _flip(PHOTO_DHASH, 4))])] == [
        "d"
    ]
    assert lone.match({}, [_view(upload_phash, _flip(PHOTO_DHASH, 5))]) == []


def test_a_phash_match_vouches_for_no_other_entry() -> None:
    """A true copy of A matches A's pHash entry; that hit is A's match and does not corroborate
    B's dHash entry 7 bits away (it did: every entry near a listed picture's dHash came along
    with a true match)."""
    upload_phash, upload_dhash = 0x0123456789ABCDEF, PHOTO_DHASH
    matcher = Matcher()
    matcher.set_list(LIST)
    matcher.upsert(
        [
            HashListEntry("eokm", "A", HashValue(Algorithm.PHASH, upload_phash), Category.CSAM),
            HashListEntry("eokm", "B", HashValue(Algorithm.DHASH, _flip(upload_dhash, 7)),
                          Category.CSAM),
        ]
    )  # fmt: skip
    assert [m.entry_id for m in matcher.match({}, [_view(upload_phash, upload_dhash)])] == ["A"]
    # A copy that only nearly matches a pHash entry (a crop, a small turn) lets the dHash hit
    # count: entries do not say which picture they are of, so any near miss on the list does.
    cropped = _flip(upload_phash, 10)
    found = matcher.match({}, [_view(cropped, upload_dhash)])
    assert [m.entry_id for m in found] == ["B"]


def _turned_view(phash: tuple[int, int], dhash: tuple[int, int]) -> View:
    """A view whose upright hashes are the first of each pair and whose seven turned ones are
    all the second."""
    return View(
        REGIONS[0],
        {
            Algorithm.PHASH: OrientationHashes((phash[0],) + (phash[1],) * 7),
            Algorithm.DHASH: OrientationHashes((dhash[0],) + (dhash[1],) * 7),
        },
    )


def _one_entry(algorithm: Algorithm, value: int, *more: HashListEntry) -> Matcher:
    matcher = Matcher()
    matcher.set_list(LIST)
    matcher.upsert([HashListEntry("eokm", "e", HashValue(algorithm, value), Category.CSAM), *more])
    return matcher


def test_a_turned_hit_counts_only_within_the_threshold_less_the_margin() -> None:
    """Seven turned orientations are seven more chances to come near an unrelated entry: a
    turned pHash hit counts within 8 - TURNED_MARGIN = 6 bits, an upright one within 8."""
    assert TURNED_MARGIN[Algorithm.PHASH] == 2
    entry = 0x0123456789ABCDEF
    elsewhere = _flip(entry, 40)
    at_8 = _one_entry(Algorithm.PHASH, entry)
    assert at_8.match({}, [_turned_view((elsewhere, _flip(entry, 8)), (0, 0))]) == []
    (upright,) = at_8.match({}, [_turned_view((_flip(entry, 8), elsewhere), (0, 0))])
    assert (upright.distance, upright.threshold, upright.orientation) == (
        8, 8, Orientation.IDENTITY,
    )  # fmt: skip
    (turned,) = at_8.match({}, [_turned_view((elsewhere, _flip(entry, 6)), (0, 0))])
    assert (turned.distance, turned.threshold) == (6, 6)
    assert turned.orientation is not Orientation.IDENTITY


def test_a_turned_dhash_hit_counts_only_on_its_own() -> None:
    """Corroboration rescues upright edits (crops, small turns); a turned copy is an exact
    transpose and needs none. A turned dHash hit at 7 bits with a pHash near miss in the same
    turned orientation does not count; the same hit upright does."""
    near_miss_of = _flip(0x0123456789ABCDEF, 10)
    phash_entry = HashListEntry("eokm", "p", HashValue(Algorithm.PHASH, near_miss_of),
                                Category.CSAM)  # fmt: skip
    matcher = _one_entry(Algorithm.DHASH, PHOTO_DHASH, phash_entry)
    upload_phash, far = 0x0123456789ABCDEF, _flip(0x0123456789ABCDEF, 40)
    turned = _turned_view((far, upload_phash), (_flip(PHOTO_DHASH, 30), _flip(PHOTO_DHASH, 7)))
    assert matcher.match({}, [turned]) == []
    upright = _turned_view((upload_phash, far), (_flip(PHOTO_DHASH, 7), _flip(PHOTO_DHASH, 30)))
    assert [(m.entry_id, m.distance) for m in matcher.match({}, [upright])] == [("e", 7)]


def test_an_entry_is_reported_by_its_nearest_hit_that_counts() -> None:
    """A nearer hit that does not count (turned dHash at 5, beyond DHASH_ALONE) does not hide a
    farther one that does (upright dHash at 7, corroborated)."""
    near_miss_of = _flip(0x0123456789ABCDEF, 10)
    phash_entry = HashListEntry("eokm", "p", HashValue(Algorithm.PHASH, near_miss_of),
                                Category.CSAM)  # fmt: skip
    matcher = _one_entry(Algorithm.DHASH, PHOTO_DHASH, phash_entry)
    view = _turned_view(
        (0x0123456789ABCDEF, _flip(0x0123456789ABCDEF, 40)),
        (_flip(PHOTO_DHASH, 7), _flip(PHOTO_DHASH, 5)),
    )
    (match,) = matcher.match({}, [view])
    assert (match.distance, match.orientation) == (7, Orientation.IDENTITY)


def test_a_vignette_upload_matches_nothing_and_its_verdict_says_why() -> None:
    size = 256
    yy, xx = np.mgrid[0:size, 0:size]
    radius = np.hypot(xx - size / 2, yy - size / 2) / (size / 2)
    vignette = Image.fromarray(np.clip(255 * (1 - radius), 0, 255).astype(np.uint8), "L")
    upload = hash_job(jpeg(vignette.convert("RGB")), GuardLimits(), ALL_ALGORITHMS)
    # A list entry sitting exactly on the vignette's own hashes: the worst case.
    matcher = Matcher()
    matcher.set_list(LIST)
    matcher.upsert(
        HashListEntry("eokm", str(alg), HashValue(alg, value), Category.CSAM)
        for alg, value in upload.hashes.items()
        if alg.is_perceptual
    )
    assert matcher.match(upload.hashes) != [], "the entry does sit on the vignette's hashes"
    assert matcher.match(upload.hashes, upload.views) == []
    assert image_facts(upload).low_information


def test_without_views_the_upload_hashes_are_searched_upright() -> None:
    matcher = Matcher()
    matcher.set_list(LIST)
    matcher.upsert([HashListEntry("eokm", "e", HashValue(Algorithm.PHASH, 0xFF), Category.CSAM)])
    (match,) = matcher.match({Algorithm.PHASH: 0xFE})
    assert (match.distance, match.orientation, match.region) == (1, Orientation.IDENTITY, None)


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


@pytest.mark.parametrize("turned", [o for o in ORIENTATIONS if o is not Orientation.IDENTITY])
def test_a_turned_copy_matches_a_plain_imagehash_list_and_says_how_it_is_turned(
    turned: Orientation,
) -> None:
    original = sample_photo("astronaut")
    # The list is made the way a hotline makes it: plain imagehash over the original file.
    listed = Image.open(io.BytesIO(encode(original)))
    matcher = Matcher()
    matcher.set_list(LIST)
    plain = {"p": (Algorithm.PHASH, imagehash.phash), "d": (Algorithm.DHASH, imagehash.dhash)}
    matcher.upsert(
        HashListEntry("eokm", key, HashValue(alg, bits_to_int(fn(listed).hash)), Category.CSAM)
        for key, (alg, fn) in plain.items()
    )
    upload = hash_image(jpeg(orient(original, turned)), GuardLimits())
    matches = matcher.match(upload.hashes, upload.views)
    assert {m.entry_id for m in matches} == {"p", "d"}
    assert {m.orientation for m in matches} == {turned}
    # Searched upright only, as before views, the copy goes unnoticed.
    assert matcher.match(upload.hashes) == []


def test_the_verdict_names_the_orientation_and_region_and_its_line_says_so() -> None:
    match = Match("eokm", "v1", LIST.kind, LIST.action, "p", Category.CSAM, Algorithm.PHASH,
                  3, 8, Orientation.ROTATE_90, REGIONS[2])  # fmt: skip
    verdict = screened_verdict(
        upload_id="u1",
        hashes={Algorithm.PHASH: 0},
        image=ImageFacts(format="JPEG", width=1000, height=800),
        decision=decide([match]),
        worker_id="w",
        decided_at=datetime.now(UTC),
    )
    record = verdict.model_dump(mode="json")
    (matched,) = record["matches"]
    assert matched["orientation"] == "rotate_90"
    assert matched["region"] == {"x": 300, "y": 200, "width": 400, "height": 300,
                                 "kind": "embedded"}  # fmt: skip
    assert "p phash 3/8 rotate_90, embedded 400x300 at 300,200" in verdict_line(record)


@pytest.mark.parametrize(
    "framing",
    [
        lambda photo: pad(photo, 0.2, BLACK),
        lambda photo: pad(photo, 0.2, WHITE),
        lambda photo: letterbox(photo.resize((900, 900))),
        meme,
        chat_screenshot,
    ],
    ids=["pad-black", "pad-white", "letterbox", "meme", "chat"],
)
def test_a_framed_copy_matches_through_its_content_region_in_upload_pixels(
    framing: Callable[[Image.Image], Framed],
) -> None:
    original = sample_photo("coffee")
    listed = Image.open(io.BytesIO(encode(original)))
    matcher = Matcher()
    matcher.set_list(LIST)
    listed_hash = HashValue(Algorithm.PHASH, bits_to_int(imagehash.phash(listed).hash))
    matcher.upsert([HashListEntry("eokm", "p", listed_hash, Category.CSAM)])
    framed = framing(original)
    upload = hash_image(jpeg(framed.image), GuardLimits())
    assert matcher.match(upload.hashes) == [], "the framed whole matched: nothing to show"
    (match,) = matcher.match(upload.hashes, upload.views)
    found = match.region
    assert found is not None
    assert found.kind is not RegionKind.WHOLE
    # Where the photo is, in the upload's own pixels, to within the reduced decode's grain.
    grain = max(framed.image.size) / 40
    x, y, width, height = framed.photo
    assert max(abs(found.x - x), abs(found.y - y)) <= grain
    assert max(abs(found.width - width), abs(found.height - height)) <= 2 * grain


def test_a_mirrored_copy_matches_a_pdq_list_and_a_featureless_one_is_not_searched() -> None:
    original = sample_photo("chelsea")
    listed, _quality = pdq_hash(original)  # the full-size picture, as a hotline hashes it
    matcher = Matcher()
    matcher.set_list(ListConfig.create("eokm"))  # the default policy, stated (PDQ at 31)
    matcher.upsert([HashListEntry("eokm", "q", HashValue(Algorithm.PDQ, listed), Category.CSAM)])
    algorithms = (Algorithm.PDQ,)
    upload = hash_image(jpeg(orient(original, Orientation.MIRROR)), GuardLimits(), algorithms)
    (match,) = matcher.match(upload.hashes, upload.views)
    assert (match.algorithm, match.orientation) == (Algorithm.PDQ, Orientation.MIRROR)
    assert match.distance <= match.threshold == 31
    assert upload.views[0].pdq_quality is not None
    assert upload.views[0].pdq_quality >= PDQ_MIN_QUALITY
    # The same hashes with a quality under PDQ's floor are not searched at all.
    weak = replace(upload.views[0], pdq_quality=PDQ_MIN_QUALITY - 1)
    assert matcher.match(upload.hashes, [weak]) == []
