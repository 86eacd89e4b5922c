"""``pipeline bench hashing|index|pipeline|quality|detail|video|lists``: benchmark arguments.

Each benchmark lives in :mod:`pipeline.bench` and exposes ``add_arguments(parser)`` and
``run(args, settings) -> int``. Benchmark modules keep heavy imports (numba, Pillow, Kafka
clients) inside ``run`` so that building the parser for ``pipeline --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from pipeline.config import Settings

BENCHMARKS: dict[str, str] = {
    "hashing": "images/s by upload size against plain imagehash and a bare reduced decode",
    "index": "Hamming index queries/s and bytes/hash against pybktree and a numpy scan",
    "pipeline": "CPU per upload of the worker process tree against bare hashing, per upload "
    "form (json, binary, url, s3) and worker count; uploads/s; latency; time to ready",
    "quality": "recall per transform and algorithm, false matches on unrelated photos and on "
    "low-information pictures, 1080p images/s against today's pHash+dHash path",
    "detail": "the low-information gate and list-entry flag on generated patterns and photos",
    "video": "seconds of video screened per CPU second (720p/1080p H.264 and VP9), recall of "
    "edited copies and false matches against vPDQ hashes of the originals",
    "lists": "worker RSS per loaded list entry, time to ready and topic read rate, real broker",
}


def register(subparsers: Any) -> None:
    """Add ``bench`` and one sub-command per benchmark."""
    bench = subparsers.add_parser(
        "bench",
        help="run a benchmark; prints a table of ratios against a baseline from the same run",
        description="Each benchmark measures one thing on this machine, most against a "
        "baseline from the same run: hashing speed, index queries, the worker's CPU and "
        "latency per upload, match quality, the low-information gate, video screening, and "
        "memory and time to ready per list entry (see each BENCHMARK's help). It prints "
        "tables and writes the figures as JSON (--json).",
    )
    which = bench.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, summary in BENCHMARKS.items():
        parser = which.add_parser(name, help=summary, description=summary)
        parser.add_argument(
            "--json",
            type=Path,
            default=Path("bench-results") / f"{name}.json",
            help="where to write the results as JSON (default: %(default)s)",
        )
        module = _module(name)
        module.add_arguments(parser)
        parser.set_defaults(handler=_runner(name))


def _module(name: str) -> Any:
    return importlib.import_module(f"pipeline.bench.{name}")


def _runner(name: str) -> Any:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        return int(_module(name).run(args, settings))

    return handler
