"""``pipeline bench video``: how fast videos are screened and how well edited copies match.

Speed: slideshow clips of scikit-image's photos (each photo slowly zooming, so every frame
differs), generated in memory per size and codec (H.264 through libx264 ``veryfast``, VP9
through libvpx realtime), a keyframe every ``--gop-seconds``; the realtime factor is seconds of
video screened per CPU second of this process (:func:`pipeline.videodecode.hash_video`: guard,
sampling, every view's pHash, dHash and PDQ, file digests), so other load on the machine does
not distort it. Also the decoded share (packets fed to the decoder / all packets).

Recall: ``--clips`` originals, each a slideshow of its own two photos (or moving patterns
once the photos run out); the list holds each original's vPDQ hash as ThreatExchange computes
it. Each original is re-encoded (H.264 CRF 40; VP9), resized (half, double), watermarked,
letterboxed to 16:9, and trimmed (the middle 40% and a 30% piece), and matched by vPDQ's rule
(:mod:`pipeline.core.videomatch`); false matches are counted over every copy against every
other original's entry. Nothing is written but the JSON.

vPDQ list cost: ``--vpdq-entries`` random vPDQ entries of ``--vpdq-entry-frames`` frames each
(one a second, as vPDQ hashes) on a block list in a matcher, and a ``--vpdq-upload-seconds``
slideshow upload hashed as the worker hashes it; the CPU time of matching the upload against
them (:func:`pipeline.core.videomatch.match_vpdq_entries`, a linear comparison) per upload,
per entry and per frame pair.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from pipeline.bench.videoclips import Frame, encode_clip, moving_pattern, slideshow
from pipeline.config import Settings

PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "brick",
    "grass", "gravel", "clock", "cell", "hubble_deep_field", "immunohistochemistry",
    "microaneurysms", "retina",
)  # fmt: skip
_VP9 = {"deadline": "realtime", "cpu-used": "8"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pipeline bench video``."""
    parser.add_argument("--sizes", default="1280x720,1920x1080", help="speed clip sizes")
    parser.add_argument("--codecs", default="h264,vp9", help="speed clip codecs: h264, vp9")
    parser.add_argument("--seconds", type=float, default=20.0, help="speed clip length")
    parser.add_argument("--gop-seconds", type=float, default=1.0, help="keyframe interval")
    parser.add_argument("--clips", type=int, default=8, help="originals for recall")
    parser.add_argument("--clip-seconds", type=float, default=6.0, help="original length")
    parser.add_argument("--vpdq-entries", type=int, default=200, help="vPDQ entries listed")
    parser.add_argument("--vpdq-entry-frames", type=int, default=60, help="frames per entry")
    parser.add_argument(
        "--vpdq-upload-seconds", type=float, default=60.0, help="upload matched against them"
    )


def _encode(
    frames: Iterable[Frame], codec: str, gop: int, extra: dict[str, str] | None = None
) -> bytes:
    if codec == "vp9":
        return encode_clip(
            frames, codec="libvpx-vp9", container="WEBM", gop=gop, options={**_VP9, **(extra or {})}
        )
    return encode_clip(frames, gop=gop, options={"preset": "veryfast", **(extra or {})})


def _speed(args: argparse.Namespace) -> list[dict[str, Any]]:
    from pipeline.core.types import Algorithm
    from pipeline.core.videolimits import VideoLimits
    from pipeline.videodecode import hash_video

    algorithms = tuple(Algorithm)
    rows = []
    for size_text in args.sizes.split(","):
        width, height = (int(side) for side in size_text.split("x"))
        count = max(1, round(args.seconds / 2))
        for codec in args.codecs.split(","):
            # Frames are made as they are encoded: a 20 s 1080p clip is 3 GB of RGB.
            frames = slideshow(PHOTOS[:count], seconds_each=2.0, size=(width, height))
            clip = _encode(frames, codec, gop=max(1, round(args.gop_seconds * 25)))
            best, result = float("inf"), None
            for _ in range(2):
                start = time.process_time()
                result = hash_video(clip, VideoLimits(), algorithms)
                best = min(best, time.process_time() - start)
            assert result is not None
            rows.append(
                {
                    "size": size_text,
                    "codec": codec,
                    "seconds_of_video": result.duration_seconds,
                    "sampled_frames": len(result.frames),
                    "decoded_frames": result.decoded_frames,
                    "frames": round(count * 2.0 * 25),
                    "cpu_seconds": best,
                    "realtime_factor": result.duration_seconds / best,
                }
            )
    return rows


def _watermark(frame: Frame) -> Frame:
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    draw.text((8, 8), "forwarded many times", fill=(255, 255, 255))
    width, height = image.size
    draw.rectangle((width - 40, height - 25, width - 10, height - 10), fill=(255, 0, 0))
    return np.asarray(image)


def _letterbox(frame: Frame) -> Frame:
    height, width = frame.shape[:2]
    out = np.zeros((height, height * 16 // 9 // 2 * 2, 3), np.uint8)
    left = (out.shape[1] - width) // 2
    out[:, left : left + width] = frame
    return out


def _resized(frame: Frame, factor: float) -> Frame:
    height, width = frame.shape[:2]
    size = (round(width * factor) // 2 * 2, round(height * factor) // 2 * 2)
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))


TRANSFORMS: dict[str, Callable[[list[Frame]], bytes]] = {
    "reencoded_h264_crf40": lambda f: _encode(f, "h264", 25, {"crf": "40"}),
    "reencoded_vp9": lambda f: _encode(f, "vp9", 50, {"crf": "45", "b:v": "0"}),
    "resized_half": lambda f: _encode([_resized(x, 0.5) for x in f], "h264", 25),
    "resized_double": lambda f: _encode([_resized(x, 2.0) for x in f], "h264", 25),
    "watermarked": lambda f: _encode([_watermark(x) for x in f], "h264", 25),
    "letterboxed": lambda f: _encode([_letterbox(x) for x in f], "h264", 25),
    "trimmed_middle_40": lambda f: _encode(f[len(f) * 3 // 10 : len(f) * 7 // 10], "h264", 25),
    "trimmed_30": lambda f: _encode(f[len(f) // 10 : len(f) * 4 // 10], "h264", 25),
}


def _originals(count: int, seconds: float) -> list[list[Frame]]:
    clips = []
    for index in range(count):
        pair = PHOTOS[2 * index : 2 * index + 2]
        if len(pair) == 2:
            clips.append(list(slideshow(pair, seconds_each=seconds / 2)))
        else:
            clips.append(list(moving_pattern(index, seconds, size=(320, 240))))
    return clips


def _recall(args: argparse.Namespace) -> dict[str, Any]:
    from pipeline.core.hashlist import CompactFeature
    from pipeline.core.types import Algorithm
    from pipeline.core.videolimits import VideoLimits
    from pipeline.core.videomatch import compare_vpdq, upload_frames
    from pipeline.videodecode import hash_video, open_video, vpdq_features

    limits = VideoLimits()
    originals = _originals(args.clips, args.clip_seconds)
    entries = []
    for frames in originals:
        container, _, video = open_video(_encode(frames, "h264", 25), limits)
        with container:
            features = vpdq_features(container, video, limits)
        entries.append([CompactFeature(f.pdq, f.quality, f.seconds) for f in features])
    recall: dict[str, dict[str, Any]] = {}
    false_pairs = 0
    pairs = 0
    for name, transform in TRANSFORMS.items():
        hits = 0
        for index, frames in enumerate(originals):
            upload = upload_frames(hash_video(transform(frames), limits, (Algorithm.PDQ,)))
            for other, entry in enumerate(entries):
                comparison = compare_vpdq(upload, entry)
                matched = comparison is not None and comparison.matches()
                if other == index:
                    hits += matched
                else:
                    pairs += 1
                    false_pairs += matched
        recall[name] = {"clips": len(originals), "percent": 100.0 * hits / len(originals)}
    return {"recall": recall, "false_matches": {"pairs": pairs, "matches": false_pairs}}


def _vpdq_list_cost(args: argparse.Namespace) -> dict[str, Any]:
    import random

    from pipeline.core.hashlist import Category, CompactFeature, ListConfig, VpdqEntry
    from pipeline.core.matching import Matcher
    from pipeline.core.types import Algorithm
    from pipeline.core.videolimits import VideoLimits
    from pipeline.core.videomatch import match_vpdq_entries, prepare_upload, upload_frames
    from pipeline.videodecode import hash_video

    rng = random.Random(7)  # noqa: S311 - random list entries
    matcher = Matcher()
    matcher.set_list(ListConfig.create("videos", action="block"))
    matcher.upsert_videos(
        VpdqEntry(
            "videos",
            f"video-{index}",
            tuple(
                CompactFeature(rng.getrandbits(256), 90, float(second))
                for second in range(args.vpdq_entry_frames)
            ),
            Category.OTHER,
        )
        for index in range(args.vpdq_entries)
    )
    count = max(1, round(args.vpdq_upload_seconds))
    photos = [PHOTOS[i % len(PHOTOS)] for i in range(count)]
    clip = _encode(slideshow(photos, seconds_each=1.0), "h264", gop=25)
    upload = hash_video(clip, VideoLimits(), (Algorithm.PDQ,))
    features = len(prepare_upload(upload_frames(upload.frames)).owner)
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        match_vpdq_entries(matcher.view, upload.frames)
        best = min(best, time.process_time() - start)
    entries = max(1, args.vpdq_entries)
    pairs = features * args.vpdq_entry_frames * entries
    return {
        "entries": args.vpdq_entries,
        "entry_frames": args.vpdq_entry_frames,
        "upload_seconds": args.vpdq_upload_seconds,
        "upload_sampled_frames": len(upload.frames),
        "upload_features": features,
        "cpu_ms_per_upload": round(best * 1e3, 2),
        "cpu_ms_per_entry": round(best * 1e3 / entries, 4),
        "cpu_ns_per_frame_pair": round(best * 1e9 / max(1, pairs), 2),
    }


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run both measurements; print the tables and write JSON."""
    from pipeline.application.tables import format_table
    from pipeline.bench.report import write_json

    speed = _speed(args)
    print("video screening speed (one process, CPU seconds)")
    print(
        format_table(
            ["size", "codec", "video s", "sampled", "decoded/frames", "CPU s", "x realtime"],
            [
                [
                    row["size"],
                    row["codec"],
                    row["seconds_of_video"],
                    row["sampled_frames"],
                    f"{row['decoded_frames']}/{row['frames']}",
                    row["cpu_seconds"],
                    row["realtime_factor"],
                ]
                for row in speed
            ],
        )
    )
    quality = _recall(args)
    print("\nrecall of edited copies against the originals' vPDQ hashes")
    print(
        format_table(
            ["transform", "clips", "recall %"],
            [[name, row["clips"], row["percent"]] for name, row in quality["recall"].items()],
        )
    )
    false = quality["false_matches"]
    print(f"\nfalse matches: {false['matches']} of {false['pairs']} unrelated clip pairs")
    cost = _vpdq_list_cost(args)
    print(
        f"\nvPDQ list matching (linear, one core): {cost['entries']} entries of "
        f"{cost['entry_frames']} frames against a {cost['upload_seconds']:g} s upload "
        f"({cost['upload_features']} frame features): {cost['cpu_ms_per_upload']} ms CPU per "
        f"upload, {cost['cpu_ms_per_entry']} ms per entry, "
        f"{cost['cpu_ns_per_frame_pair']} ns per frame pair"
    )
    write_json(args.json, "video", {"speed": speed, **quality, "vpdq_list_cost": cost})
    return 0
