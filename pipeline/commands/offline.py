"""Offline commands: ``pipeline hash``, ``pipeline match`` and ``pipeline hashlist validate|stats``.

Owns argument parsing, what is printed and exit codes; reading, hashing, matching and list
loading are use cases of :mod:`pipeline.application` (files are hashed and screened as the
worker screens uploads: :mod:`pipeline.application.screen_files`). Output is JSON Lines on
stdout (one object per file) so it pipes into jq or another program; human summaries go to
stderr. Progress bars (files; bytes of list files read; entries indexed) go to stderr, only
when it is a terminal and only once the work has taken half a second; ``-q`` silences them.

Exit codes: ``hash`` 0 all hashed, 1 some file refused; ``match`` 0 nothing matched, 1 something
matched (block or review), 3 nothing matched but some file could not be screened;
``hashlist validate`` 0 clean, 1 bad lines or a file with no entries found; 2 for usage,
unreadable lists, lists that load no entries (``match`` must not answer "allow" for a list it
could not load) or bad settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.application.list_files import list_stats, low_information_entries, validate_lists
from pipeline.application.matchers import build_matcher
from pipeline.application.progress import Advance, Progress, no_progress
from pipeline.application.screen_files import HashOutcome, hash_files, screen_files
from pipeline.application.tables import format_table
from pipeline.commands.arguments import positive_seconds
from pipeline.config import Settings
from pipeline.core.hashlist import LineError
from pipeline.core.types import Action, Algorithm
from pipeline.errors import PipelineError
from pipeline.models import Verdict
from pipeline.verdicts import hex_hashes

#: A progress bar appears once the work has run this long (short runs stay quiet).
PROGRESS_DELAY_SECONDS = 0.5

#: Suffixes of hash-list paths (manifests and entry files). They tell where ``--lists`` ends
#: when the FILEs follow it (``match --lists lists.json photo.jpg``), which argparse cannot.
LIST_SUFFIXES = (".json", ".csv", ".jsonl", ".ndjson")

#: ``match`` reports at most this many bad lines per list file (``validate`` reports them all).
BAD_LINES_SHOWN = 20


@contextmanager
def _bar(label: str, total: int, unit: str) -> Iterator[Advance]:
    """A progress bar on stderr that appears once the work has run PROGRESS_DELAY_SECONDS; the
    value advances it."""
    from tqdm import tqdm

    with tqdm(
        total=total, desc=label, unit=unit, unit_scale=unit == "B", file=sys.stderr,
        delay=PROGRESS_DELAY_SECONDS, leave=False,
    ) as progress:  # fmt: skip
        yield progress.update


def _progress(quiet: bool) -> Progress:
    """Bars on stderr when it is a terminal, unless ``quiet``."""
    return no_progress if quiet or not sys.stderr.isatty() else _bar


def _emit(payload: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, separators=(",", ":"), default=str) + "\n")


def _print_bad_lines(errors: Mapping[str, Sequence[LineError]], limit: int | None = None) -> None:
    for name, lines in errors.items():
        for error in lines[:limit]:
            print(f"{name}:{error.line}: {error.reason}: {error.message}", file=sys.stderr)
        if limit is not None and len(lines) > limit:
            print(f"{name}: ... and {len(lines) - limit} more bad lines", file=sys.stderr)


def cmd_hash(args: argparse.Namespace, settings: Settings) -> int:
    """Print each file's hashes as one JSON line."""
    refused = 0

    def handle(path: Path, result: HashOutcome) -> None:
        nonlocal refused
        advance(1)
        if isinstance(result, PipelineError):
            refused += 1
            _emit({"file": str(path), "error": {"reason": result.reason, "message": str(result)}})
            return
        line: dict[str, Any] = {
            "file": str(path),
            "media": result.media,
            "format": result.format,
            "width": result.width,
            "height": result.height,
            "hashes": hex_hashes(result.hashes),
        }
        if result.media == "video":
            line["duration_seconds"] = round(result.duration_seconds, 3)
            line["frames"] = [
                {
                    "seconds": round(frame.seconds, 3),
                    "hashes": hex_hashes(
                        {alg: oriented.identity for alg, oriented in frame.views[0].hashes.items()}
                    ),
                }
                for frame in result.frames
                if frame.views
            ]
        _emit(line)

    with _progress(args.quiet)("hashing", len(args.files), "file") as advance:
        hash_files(
            args.files,
            settings,
            tuple(Algorithm),
            handle,
            timeout_seconds=args.timeout,
            videos=True,
        )
    return 1 if refused else 0


def split_lists_and_files(lists: list[Path], files: list[Path]) -> tuple[list[Path], list[Path]]:
    """The list paths and the FILEs, in either order the usage shows.

    ``match FILE... --lists PATH...`` arrives as written. ``match --lists PATH... FILE...``
    arrives with every path in ``lists`` (the option takes one or more, so argparse gives it
    the FILEs too): then the lists end at the first path without a list suffix
    (:data:`LIST_SUFFIXES`) and the rest are the FILEs."""
    if files:
        return lists, files
    count = next(
        (i for i, path in enumerate(lists) if path.suffix.lower() not in LIST_SUFFIXES),
        len(lists),
    )
    return lists[:count], lists[count:]


def cmd_match(args: argparse.Namespace, settings: Settings) -> int:
    """Screen files against lists; print one verdict per file."""
    lists, files = split_lists_and_files(args.lists, args.files)
    if not files:
        args.usage_error("the following arguments are required: FILE")
    if not lists:
        args.usage_error(
            f"--lists names no hash-list file ({', '.join(LIST_SUFFIXES)}) before the FILEs; "
            "write FILE... --lists PATH... for lists named otherwise"
        )
    progress = _progress(args.quiet)
    loaded = build_matcher(lists, settings, progress)
    _print_bad_lines(loaded.errors, BAD_LINES_SHOWN)
    if not args.quiet:
        skipped = f", skipped {loaded.error_count} bad line(s)" if loaded.error_count else ""
        print(
            f"loaded {len(loaded.matcher):,} entries in {loaded.lists} list(s){skipped}",
            file=sys.stderr,
        )
    actions: Counter[Action] = Counter()

    def handle(path: Path, verdict: Verdict) -> None:
        advance(1)
        actions[verdict.action] += 1
        _emit(verdict.model_dump(mode="json", exclude_defaults=False))

    with progress("matching", len(files), "file") as advance:
        screen_files(files, loaded.matcher, settings, handle, timeout_seconds=args.timeout)
    if actions[Action.BLOCK] or actions[Action.REVIEW]:
        return 1
    return 3 if actions[Action.ERROR] else 0


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    """Report every bad line; exit 1 if there was any."""
    del settings
    loaded = validate_lists(args.paths, _progress(args.quiet))
    _print_bad_lines(loaded.errors)
    for entry in low_information_entries(loaded.entries):
        print(
            f"warning: list {entry.list_name!r} entry {entry.entry_id!r}: low_information: its "
            f"{entry.hash.algorithm} hash {entry.hash.hex} is the hash of a blank, gradient, "
            "vignette or stripe picture",
            file=sys.stderr,
        )
    for path in loaded.empty_files:
        print(f"{path}: empty_list: no entries loaded", file=sys.stderr)
    empty = f"; {len(loaded.empty_files)} file(s) with no entries" if loaded.empty_files else ""
    print(
        f"{len(loaded.entries):,} valid entries in {len(loaded.configs)} list(s); "
        f"{loaded.error_count:,} bad line(s){empty}"
    )
    return 1 if loaded.error_count or loaded.empty_files else 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    """Counts by list, algorithm and category, as a table or JSON."""
    del settings
    stats = list_stats(args.paths, _progress(args.quiet))
    if args.json:
        _emit(
            {
                "entries": stats.entries,
                "bad_lines": stats.bad_lines,
                "lists": {
                    name: {"kind": str(c.kind), "action": str(c.action), "version": c.version,
                           "enabled": c.enabled}
                    for name, c in stats.configs.items()
                },
                "counts": [
                    {"list": lst, "algorithm": alg, "category": cat, "entries": n}
                    for (lst, alg, cat), n in stats.counts.items()
                ],
                "low_information": [
                    {"list": lst, "algorithm": alg, "entries": n}
                    for (lst, alg), n in stats.low_information.items()
                ],
            }
        )  # fmt: skip
        return 0
    rows = [[lst, alg, cat, n] for (lst, alg, cat), n in stats.counts.items()]
    print(format_table(["list", "algorithm", "category", "entries"], rows))
    print(f"\n{stats.entries:,} entries, {stats.bad_lines:,} bad line(s)")
    for (lst, alg), n in stats.low_information.items():
        print(f"warning: list {lst!r}: {n:,} {alg} entr{'y' if n == 1 else 'ies'} of "
              "low-information pictures (blank, gradient, vignette, stripes)")  # fmt: skip
    return 0


def register(subparsers: Any) -> None:
    """Add ``hash``, ``match`` and ``hashlist``."""
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    _register_hash_and_match(subparsers, quiet)
    _register_hashlist(subparsers, quiet)


def _register_hash_and_match(subparsers: Any, quiet: argparse.ArgumentParser) -> None:
    guarded = argparse.ArgumentParser(add_help=False)
    guarded.add_argument(
        "--timeout",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="longest one file may take to decode and hash (default: "
        "PIPELINE_HASH_TIMEOUT_SECONDS)",
    )
    hash_parser = subparsers.add_parser(
        "hash",
        parents=[quiet, guarded],
        help="print the exact and perceptual hashes of image and video files (JSON lines)",
        description="Hash files with the same guarded decode as the worker, in capped "
        "processes with a time limit per file. Exit 1 if any file was refused (its line "
        "carries the reason).",
    )
    hash_parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    hash_parser.set_defaults(handler=cmd_hash)

    options = "[-h] [-q] [--timeout SECONDS]"
    match_parser = subparsers.add_parser(
        "match",
        parents=[quiet, guarded],
        help="screen image and video files against hash lists; print verdicts (JSON lines)",
        usage=f"%(prog)s {options} FILE [FILE ...] --lists PATH [PATH ...]\n"
        f"       %(prog)s {options} --lists PATH [PATH ...] FILE [FILE ...]",
        description="Exit 0: nothing matched; 1: something matched (block or review); "
        "3: nothing matched but some file could not be screened; 2: bad lists (one that "
        "loads no entries included) or usage.",
    )
    # Not required here: with --lists first, argparse hands the FILEs to --lists
    # (split_lists_and_files takes them back, and cmd_match reports what is missing).
    match_parser.add_argument("files", nargs="*", type=Path, metavar="FILE")
    match_parser.add_argument(
        "--lists",
        nargs="+",
        type=Path,
        required=True,
        metavar="PATH",
        help="list manifests (.json) or entry files (.csv, .jsonl, .ndjson); when FILEs "
        "follow, the lists end at the first path with another suffix",
    )
    match_parser.set_defaults(handler=cmd_match, usage_error=match_parser.error)


def _register_hashlist(subparsers: Any, quiet: argparse.ArgumentParser) -> None:
    hashlist = subparsers.add_parser(
        "hashlist",
        help="inspect hash-list files (and publish them to Kafka)",
        description="Check list files and count their entries offline (validate, stats), or "
        "publish entries and list configs to the hashlists topic and retract entries there "
        "(publish, retract: these need PIPELINE_BOOTSTRAP_SERVERS or --bootstrap-servers).",
    )
    actions = hashlist.add_subparsers(dest="hashlist_command", metavar="ACTION", required=True)
    validate = actions.add_parser(
        "validate",
        parents=[quiet],
        help="report every bad line with its number; exit 1 if any",
        description="Load list manifests (.json) and entry files (.csv, .jsonl, .ndjson) as "
        "the worker would; print every bad line with its file and number, a file with no "
        "entries and low-information entries on stderr, then the counts. Exit 0: all valid; "
        "1: a bad line or a file with no entries; 2: a file cannot be read.",
    )
    validate.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    validate.set_defaults(handler=cmd_validate)
    stats = actions.add_parser(
        "stats",
        parents=[quiet],
        help="entries by list, algorithm and category",
        description="Count the entries of list manifests and entry files by list, algorithm "
        "and category: a table, or JSON with --json.",
    )
    stats.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(handler=cmd_stats)

    from pipeline.commands.stream import register_hashlist_actions

    register_hashlist_actions(actions)
