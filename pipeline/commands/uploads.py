"""``submit``: image files (inline, as JSON or with ``--binary`` in the binary form) or S3
objects (by reference) as upload events, and their verdicts as lines a person reads.

Owns submit's arguments, output and exit codes, and the verdict line that ``submit`` and
``demo`` print (:func:`verdict_line`, explained by :data:`SUMMARY_LEGEND`); submitting and
waiting is :mod:`pipeline.application.uploads`'. Verdict lines are flushed one by one, so
``pipeline demo | tee log`` shows them live.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.adapters.delivery import DeliveryFailed
from pipeline.adapters.topics import BrokerUnreachable
from pipeline.application.uploads import (
    VerdictJson,
    s3_content,
    s3_event,
    submit_events,
    upload_event,
)
from pipeline.commands.connection import bootstrap_servers, quiet_kafka_client_logs, unreachable
from pipeline.config import Settings
from pipeline.models import S3Content

#: What a verdict summary line holds; printed before the lines.
SUMMARY_LEGEND = (
    "verdicts, one a line: ACTION  UPLOAD  LIST (the list's action): "
    "ENTRY ALGORITHM DISTANCE/THRESHOLD (bits)"
)


def print_flushed(line: str = "") -> None:
    """Print a line and flush it: on a pipe stdout is block-buffered, and a verdict that sits
    in the buffer until the demo exits is no use to ``pipeline demo | tee log``."""
    print(line, flush=True)


def upload_name(verdict: VerdictJson) -> str:
    """The file a verdict's upload came from, else its upload id."""
    return str(verdict.get("metadata", {}).get("file", verdict["upload_id"]))


def _match_phrase(match: dict[str, Any]) -> str:
    """``known-1-phash phash 2/8``: the distance out of the threshold, so a reader sees how
    close the match was; exact hashes match only when identical, which says it better. A
    variant says how it differs: ``known-1 phash 3/8 mirror, embedded 640x480 at 220,410``."""
    if match["threshold"] == 0 and match["distance"] == 0:
        return f"{match['entry_id']} {match['algorithm']} identical"
    phrase = f"{match['entry_id']} {match['algorithm']} {match['distance']}/{match['threshold']}"
    variant = []
    if match.get("orientation", "identity") != "identity":
        variant.append(str(match["orientation"]))
    region = match.get("region") or {}
    if region.get("kind", "whole") != "whole":
        variant.append(
            f"{region['kind']} {region['width']}x{region['height']} at {region['x']},{region['y']}"
        )
    return f"{phrase} {', '.join(variant)}" if variant else phrase


def verdict_line(verdict: VerdictJson, name_width: int = 0) -> str:
    """One line for a person: the action, the upload, and why (see :data:`SUMMARY_LEGEND`)."""
    by_list: dict[str, list[dict[str, Any]]] = {}
    for match in verdict.get("matches", []):
        by_list.setdefault(match["list"], []).append(match)
    detail = "; ".join(
        f"{name} ({matches[0]['list_action']}): {', '.join(_match_phrase(m) for m in matches)}"
        for name, matches in by_list.items()
    )
    if verdict.get("suppressed"):
        detail += f"{'; ' if detail else ''}{len(verdict['suppressed'])} suppressed by allow lists"
    if verdict.get("matches_omitted"):
        detail += f"; {verdict['matches_omitted']} more not listed"
    error = verdict.get("error") or {}
    if error:
        detail = f"{error.get('stage')}: {error.get('reason')}"
    return f"{verdict['action']:>6}  {upload_name(verdict):<{name_width}}  {detail or 'no match'}"


def verdict_lines(verdicts: Sequence[VerdictJson]) -> list[str]:
    """:func:`verdict_line` of each, upload names padded to one width."""
    width = max((len(upload_name(v)) for v in verdicts), default=0)
    return [verdict_line(verdict, width) for verdict in verdicts]


def s3_argument(uri: str) -> S3Content:
    """``--s3``'s argument as the object it names; argparse reports a bad one (exit 2)."""
    try:
        return s3_content(uri)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    """Submit files as inline uploads and S3 objects as references; with --wait print their
    verdicts (a summary line each, or with --json the whole verdicts). Exit 1 when a verdict
    did not come in time or the broker did not take every upload, 2 when it cannot be reached
    or nothing was named."""
    if not args.files and not args.s3:
        print("pipeline submit: name FILEs, --s3 s3://BUCKET/KEY, or both", file=sys.stderr)
        return 2
    quiet_kafka_client_logs()
    bootstrap = bootstrap_servers(settings, args.bootstrap_servers)
    events = [upload_event(path) for path in args.files]
    events += [s3_event(content) for content in args.s3]
    try:
        verdicts = submit_events(bootstrap, settings, events, args.wait, binary=args.binary)
    except BrokerUnreachable as exc:
        return unreachable(exc)
    except DeliveryFailed as exc:
        print(f"pipeline: submitting failed: {exc}", file=sys.stderr)
        return 1
    for event in events:
        print(f"submitted {event.upload_id}", file=sys.stderr)
    if verdicts and not args.json:
        print(f"{SUMMARY_LEGEND}; the whole verdicts: add --json", file=sys.stderr)
    lines = [json.dumps(v) for v in verdicts] if args.json else verdict_lines(verdicts)
    for line in lines:
        print_flushed(line)
    if args.wait and len(verdicts) < len(events):
        print(
            f"{len(events) - len(verdicts)} verdict(s) not seen within {args.wait}s",
            file=sys.stderr,
        )
        return 1
    return 0


def register(subparsers: Any) -> None:
    """Add ``submit``."""
    submit = subparsers.add_parser(
        "submit",
        help="submit image and video files (inline) or S3 objects (by reference) as uploads",
        description="Produce one upload event per FILE (its bytes inline) and per --s3 object "
        "(a reference the worker reads) to the uploads topic, and print each upload id on "
        "stderr. Without --wait it only sends; with --wait SECONDS it then waits for the "
        "verdicts and prints them (a summary line each, or whole verdicts with --json). "
        "Exit 0 when every upload was taken and, with --wait, every verdict seen, whatever "
        "the verdicts say (block and error included); 1 when a verdict was not seen in time "
        "or the broker did not take an upload; 2 when the broker cannot be reached, a file "
        "cannot be read or nothing is named.",
    )
    submit.add_argument("files", nargs="*", type=Path, metavar="FILE")
    submit.add_argument(
        "--s3",
        action="append",
        default=[],
        type=s3_argument,
        metavar="URI",
        help="an object in S3-API storage, s3://BUCKET/KEY or s3://BUCKET/KEY?versionId=ID, "
        "read by the worker with its PIPELINE_S3_* settings (repeatable)",
    )
    submit.add_argument(
        "--binary",
        action="store_true",
        help="send FILEs in the binary inline form: the file's bytes as the record's value, the "
        "upload id and the rest in Kafka headers (schemas/upload-headers.json), no base64",
    )
    submit.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for the verdicts and print them",
    )
    submit.add_argument("--json", action="store_true", help="print whole verdicts as JSON")
    submit.add_argument("--bootstrap-servers", help="override PIPELINE_BOOTSTRAP_SERVERS")
    submit.set_defaults(handler=cmd_submit)
