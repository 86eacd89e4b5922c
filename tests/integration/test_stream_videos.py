"""vPDQ (whole-video) list entries through a real worker and a real broker: a listed clip's vPDQ
hash published to the ``hashlists`` topic blocks a re-encoded copy, the verdict naming the
entry, the shares and the times of the matching frames; an unrelated clip is allowed; a
retraction stops the match."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pipeline.adapters import hashlist_topic
from pipeline.core.hashlist import Category, CompactFeature, ListConfig, VpdqEntry
from pipeline.core.videolimits import VideoLimits
from pipeline.videodecode import open_video, vpdq_features
from tests.integration.harness import KafkaIO, WorkerProcess
from tests.videogen import encode_clip, slideshow

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LISTED = list(slideshow(["astronaut", "coffee", "chelsea", "rocket"], seconds_each=2.0))


def listed_entry(data: bytes) -> VpdqEntry:
    """The entry a hotline would list for ``data``: vPDQ computed as ThreatExchange does."""
    limits = VideoLimits()
    container, _, video = open_video(data, limits)
    with container:
        features = vpdq_features(container, video, limits)
    frames = tuple(CompactFeature(f.pdq, f.quality, f.seconds) for f in features)
    return VpdqEntry("videos", "listed-clip", frames, Category.TERROR, source="integration test")


def test_a_reencoded_copy_of_a_listed_video_is_blocked_by_its_vpdq_entry(
    kafka: KafkaIO, start_worker: Callable[..., WorkerProcess]
) -> None:
    entry = listed_entry(encode_clip(LISTED))
    kafka.publish(ListConfig.create("videos", action="block"), [entry])
    start_worker(wait_ready=True)

    kafka.upload("copy", encode_clip(LISTED, options={"crf": "40"}))
    kafka.upload("unrelated", encode_clip(list(slideshow(["camera", "coins"], seconds_each=2.0))))
    verdicts = kafka.verdicts_for({"copy", "unrelated"}, timeout=120)

    copy = verdicts["copy"]
    assert copy["action"] == "block", copy
    assert copy["image"]["media"] == "video"
    (match,) = copy["matches"]
    assert (match["list"], match["entry_id"], match["algorithm"]) == (
        "videos",
        "listed-clip",
        "pdq",
    )
    assert match["vpdq"]["query_percent"] >= 80.0
    assert match["vpdq"]["query_threshold"] == 80.0
    assert match["frame_seconds"][0] == 0.0
    assert len(match["frame_seconds"]) >= 6  # one a second over the 8 s clip, nearly all
    assert verdicts["unrelated"]["action"] == "allow", verdicts["unrelated"]
    assert verdicts["unrelated"]["matches"] == []

    record = hashlist_topic.tombstone(hashlist_topic.vpdq_key("videos", "listed-clip"))
    kafka.send("hashlists", record.key.decode(), record.value)

    # The tombstone applies within moments; each try is a fresh upload of the same copy.
    actions = []
    for attempt in range(10):
        upload_id = f"copy-after-retraction-{attempt}"
        kafka.upload(upload_id, encode_clip(LISTED, options={"crf": "40"}))
        actions.append(kafka.verdicts_for({upload_id}, timeout=120)[upload_id]["action"])
        if actions[-1] == "allow":
            break
        time.sleep(0.5)
    assert actions[-1] == "allow", actions
