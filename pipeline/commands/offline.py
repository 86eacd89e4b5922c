"""Offline commands: ``pipeline hash``, ``pipeline match`` and ``pipeline hashlist validate|stats``.

Owns argument parsing, reading the named files, progress bars on stderr and exit codes; the
hashing, matching and decisions are the core's. Output is JSON Lines on stdout (one object per
file) so it pipes into jq or another program; human summaries go to stderr.

Exit codes: ``hash`` 0 all hashed, 1 some file refused; ``match`` 0 nothing matched, 1 something
matched (block or review), 3 nothing matched but some file could not be screened;
``hashlist validate`` 0 clean, 1 bad lines found; 2 for usage, unreadable lists or bad settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.core.decision import decide
from pipeline.core.guard import GuardLimits, ImageRejected
from pipeline.core.hashing import ImageHashes, hash_image
from pipeline.core.matching import Matcher
from pipeline.errors import InputRejected
from pipeline.models import Action, ImageFacts, Stage
from pipeline.verdicts import error_verdict, screened_verdict


def guard_limits(settings: Settings) -> GuardLimits:
    """The guard's limits from settings (the one place this mapping is written)."""
    return GuardLimits(
        max_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_pixels,
        max_frames=settings.max_frames,
        allowed_formats=settings.allowed_formats,
        draft_size=settings.draft_size,
    )


def _progress(items: Sequence[Path], label: str, quiet: bool) -> Iterator[Path]:
    """Items with a progress bar on stderr when it is a terminal and there is enough to show."""
    if quiet or len(items) < 20 or not sys.stderr.isatty():
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=label, unit="file", file=sys.stderr)


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, separators=(",", ":"), default=str) + "\n")


def _read_upload(path: Path, limits: GuardLimits) -> bytes:
    """File bytes with the byte cap applied before reading the whole file."""
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise InputRejected(f"{size} bytes exceed {limits.max_bytes}", reason="too_large_bytes")
        return path.read_bytes()
    except OSError as exc:
        raise InputRejected(f"cannot read: {exc.strerror}", reason="unreadable") from None


def _hash_file(path: Path, limits: GuardLimits) -> ImageHashes:
    return hash_image(_read_upload(path, limits), limits)


def cmd_hash(args: argparse.Namespace, settings: Settings) -> int:
    """Print each file's hashes as one JSON line."""
    limits = guard_limits(settings)
    refused = 0
    for path in _progress(args.files, "hashing", args.quiet):
        try:
            result = _hash_file(path, limits)
        except InputRejected as exc:
            refused += 1
            _emit({"file": str(path), "error": {"reason": exc.reason, "message": str(exc)}})
            continue
        _emit(
            {
                "file": str(path),
                "format": result.format,
                "width": result.width,
                "height": result.height,
                "hashes": result.hex(),
            }
        )
    return 1 if refused else 0


def build_matcher(paths: list[Path], settings: Settings, quiet: bool) -> Matcher:
    """A matcher loaded from list files; bad lines are reported on stderr and skipped."""
    from pipeline.adapters.listfiles import load_paths

    loaded = load_paths(paths)
    for name, errors in loaded.errors.items():
        for error in errors[:20]:
            print(f"{name}:{error.line}: {error.reason}: {error.message}", file=sys.stderr)
        if len(errors) > 20:
            print(f"{name}: ... and {len(errors) - 20} more bad lines", file=sys.stderr)
    matcher = Matcher(settings.index_kind.value, expected_size=len(loaded.entries))
    for config in loaded.configs.values():
        matcher.set_list(config)
    matcher.upsert(loaded.entries)
    if not quiet:
        print(
            f"loaded {len(matcher):,} entries in {len(loaded.configs)} list(s)"
            f"{f', skipped {loaded.error_count} bad line(s)' if loaded.error_count else ''}",
            file=sys.stderr,
        )
    return matcher


def cmd_match(args: argparse.Namespace, settings: Settings) -> int:
    """Screen files against lists; print one verdict per file."""
    limits = guard_limits(settings)
    matcher = build_matcher(args.lists, settings, args.quiet)
    algorithms = matcher.algorithms_in_use()
    matched = failed = 0
    for path in _progress(args.files, "matching", args.quiet):
        now = datetime.now(UTC)
        try:
            result = hash_image(_read_upload(path, limits), limits, algorithms)
        except InputRejected as exc:
            failed += 1
            stage = Stage.GUARD if isinstance(exc, ImageRejected) else Stage.FETCH
            verdict = error_verdict(
                upload_id=str(path), stage=stage, reason=exc.reason, message=str(exc),
                on_error=settings.on_error, worker_id=settings.worker_id, decided_at=now,
            )  # fmt: skip
        else:
            decision = decide(matcher.match(result.hashes))
            verdict = screened_verdict(
                upload_id=str(path),
                hashes=result.hashes,
                image=ImageFacts(format=result.format, width=result.width, height=result.height),
                decision=decision,
                worker_id=settings.worker_id,
                decided_at=now,
            )
            matched += verdict.action in (Action.BLOCK, Action.REVIEW)
        _emit(verdict.model_dump(mode="json", exclude_defaults=False))
    if matched:
        return 1
    return 3 if failed else 0


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    """Report every bad line; exit 1 if there was any."""
    from pipeline.adapters.listfiles import load_paths

    del settings
    loaded = load_paths(args.paths)
    for name, errors in loaded.errors.items():
        for error in errors:
            print(f"{name}:{error.line}: {error.reason}: {error.message}", file=sys.stderr)
    print(
        f"{len(loaded.entries):,} valid entries in {len(loaded.configs)} list(s); "
        f"{loaded.error_count:,} bad line(s)"
    )
    return 1 if loaded.error_count else 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    """Counts by list, algorithm and category, as a table or JSON."""
    from pipeline.adapters.listfiles import load_paths
    from pipeline.bench.report import format_table

    del settings
    loaded = load_paths(args.paths)
    counts = Counter((e.list_name, str(e.hash.algorithm), str(e.category)) for e in loaded.entries)
    if args.json:
        _emit(
            {
                "entries": len(loaded.entries),
                "bad_lines": loaded.error_count,
                "lists": {
                    name: {"kind": str(c.kind), "action": str(c.action), "version": c.version,
                           "enabled": c.enabled}
                    for name, c in loaded.configs.items()
                },
                "counts": [
                    {"list": lst, "algorithm": alg, "category": cat, "entries": n}
                    for (lst, alg, cat), n in sorted(counts.items())
                ],
            }
        )  # fmt: skip
        return 0
    rows = [[lst, alg, cat, n] for (lst, alg, cat), n in sorted(counts.items())]
    print(format_table(["list", "algorithm", "category", "entries"], rows))
    print(f"\n{len(loaded.entries):,} entries, {loaded.error_count:,} bad line(s)")
    return 0


def register(subparsers: Any) -> None:
    """Add ``hash``, ``match`` and ``hashlist``."""
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")

    hash_parser = subparsers.add_parser(
        "hash",
        parents=[quiet],
        help="print the exact and perceptual hashes of image files (JSON lines)",
        description="Hash files with the same guarded decode as the worker. Exit 1 if any "
        "file was refused (its line carries the reason).",
    )
    hash_parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    hash_parser.set_defaults(handler=cmd_hash)

    match_parser = subparsers.add_parser(
        "match",
        parents=[quiet],
        help="screen image files against hash lists; print verdicts (JSON lines)",
        description="Exit 0: nothing matched; 1: something matched (block or review); "
        "3: nothing matched but some file could not be screened; 2: bad lists or usage.",
    )
    match_parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    match_parser.add_argument(
        "--lists",
        nargs="+",
        type=Path,
        required=True,
        metavar="PATH",
        help="list manifests (.json) or entry files (.csv, .jsonl)",
    )
    match_parser.set_defaults(handler=cmd_match)

    hashlist = subparsers.add_parser(
        "hashlist", help="inspect hash-list files (and publish them to Kafka)"
    )
    actions = hashlist.add_subparsers(dest="hashlist_command", metavar="ACTION", required=True)
    validate = actions.add_parser(
        "validate", help="report every bad line with its number; exit 1 if any"
    )
    validate.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    validate.set_defaults(handler=cmd_validate)
    stats = actions.add_parser("stats", help="entries by list, algorithm and category")
    stats.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(handler=cmd_stats)

    from pipeline.commands.stream import register_hashlist_actions

    register_hashlist_actions(actions)
