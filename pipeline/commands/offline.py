"""Offline commands: ``pipeline hash``, ``pipeline match`` and ``pipeline hashlist validate|stats``.

Owns argument parsing, reading the named files, running their hashing through the guarded
path, progress bars on stderr and exit codes; the hashing, matching and decisions are the
core's. Output is JSON Lines on stdout (one object per file) so it pipes into jq or another
program; human summaries go to stderr.

Uploads are hashed as the worker hashes them: :func:`pipeline.hashpool.hash_job` in the
worker's :class:`~pipeline.hashpool.HashPool`, processes capped in address space
(:data:`HASH_PROCESS_MEMORY_BYTES`), each file with a time limit (``--timeout``), so a hostile
file costs a refusal line, not the machine or a hung command; the files beside it are run
again (:func:`hash_uploads`). Progress bars (files; bytes of list files read; entries indexed)
go to stderr, only when it is a terminal and only once the work has taken half a second;
``-q`` silences them.

Exit codes: ``hash`` 0 all hashed, 1 some file refused; ``match`` 0 nothing matched, 1 something
matched (block or review), 3 nothing matched but some file could not be screened;
``hashlist validate`` 0 clean, 1 bad lines or a file with no entries found; 2 for usage,
unreadable lists, lists that load no entries (``match`` must not answer "allow" for a list it
could not load) or bad settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pipeline.commands.arguments import positive_seconds
from pipeline.config import Settings
from pipeline.core.decision import decide
from pipeline.core.guard import GuardLimits, ImageRejected
from pipeline.core.matching import Matcher
from pipeline.core.types import Algorithm, HashValue
from pipeline.demo.images import encode, synthetic_image
from pipeline.errors import InputRejected, PipelineError
from pipeline.hashpool import HASH_PROCESS_MEMORY_BYTES, HashJobResult, HashPool
from pipeline.models import Action, ImageFacts, Stage
from pipeline.verdicts import (
    error_verdict,
    hashing_failure_stage,
    screened_verdict,
    verdict_algorithms,
)

#: A progress bar appears once the work has run this long (short runs stay quiet).
PROGRESS_DELAY_SECONDS = 0.5

#: Suffixes of hash-list paths (manifests and entry files). They tell where ``--lists`` ends
#: when the FILEs follow it (``match --lists lists.json photo.jpg``), which argparse cannot.
LIST_SUFFIXES = (".json", ".csv", ".jsonl", ".ndjson")

T = TypeVar("T")


def _show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


@contextmanager
def _bar(label: str, total: int, unit: str, show: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr, when ``show``, that appears once the work has run
    PROGRESS_DELAY_SECONDS; the value advances it."""
    if not show:
        yield lambda _: None
        return
    from tqdm import tqdm

    with tqdm(
        total=total, desc=label, unit=unit, unit_scale=unit == "B", file=sys.stderr,
        delay=PROGRESS_DELAY_SECONDS, leave=False,
    ) as progress:  # fmt: skip
        yield progress.update


def _file_bars(show: bool) -> Callable[[Path, int], AbstractContextManager[Callable[[int], None]]]:
    """A bar per list file read, counting bytes (the progress hook of ``load_paths``)."""
    return lambda path, size: _bar(f"reading {path.name}", size, "B", show)


def _counted(items: Iterable[T], advance: Callable[[int], None]) -> Iterator[T]:
    for item in items:
        advance(1)
        yield item


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


def _uploads(
    paths: Sequence[Path], limits: GuardLimits
) -> Iterator[tuple[Path, bytes | PipelineError]]:
    """Each path with its bytes, or with the reason it could not be read (read lazily)."""
    for path in paths:
        try:
            yield path, _read_upload(path, limits)
        except InputRejected as exc:
            yield path, exc


Outcome = HashJobResult | PipelineError


async def hash_uploads(
    pool: HashPool,
    uploads: Iterable[tuple[T, bytes | PipelineError]],
    limits: GuardLimits,
    algorithms: tuple[Algorithm, ...],
    handle: Callable[[T, Outcome], None],
) -> None:
    """Hash each upload in ``pool`` and call ``handle`` with its result or refusal, in input
    order (an upload given as an error is handed through).

    Hashing follows the pool's retry policy (:meth:`~pipeline.hashpool.HashPool.hash`, the
    worker's too): a job killed with a neighbour's process runs once more, alone, so only a
    file that crashes or times out by itself is reported, never its neighbours. Uploads are
    taken at most twice the processes ahead of the one being handed over (the CLI reads files
    lazily): memory stays bounded.
    """

    async def one(data: bytes) -> Outcome:
        try:
            return await pool.hash(data, limits, algorithms)
        except PipelineError as exc:
            return exc

    window: deque[tuple[T, asyncio.Future[Outcome] | PipelineError]] = deque()
    try:
        for key, data in uploads:
            pending = data if isinstance(data, PipelineError) else asyncio.ensure_future(one(data))
            window.append((key, pending))
            while len(window) > 2 * max(1, pool.processes):
                await _hand_over(window.popleft(), handle)
        while window:
            await _hand_over(window.popleft(), handle)
    finally:
        for _, left in window:
            if isinstance(left, asyncio.Future):
                left.cancel()


async def _hand_over(
    item: tuple[T, asyncio.Future[Outcome] | PipelineError], handle: Callable[[T, Outcome], None]
) -> None:
    key, pending = item
    handle(key, pending if isinstance(pending, PipelineError) else await pending)


def _run_hashing(
    args: argparse.Namespace,
    settings: Settings,
    limits: GuardLimits,
    algorithms: tuple[Algorithm, ...],
    handle: Callable[[Path, Outcome], None],
) -> None:
    processes = min(settings.hash_processes, len(args.files))
    pool = HashPool(
        processes,
        HASH_PROCESS_MEMORY_BYTES,
        timeout_seconds=args.timeout or settings.hash_timeout_seconds,
        retry_timeouts=True,
    )
    uploads = _uploads(args.files, limits)
    try:
        pool.start()
        # A real decode and the same hashes in every process load Pillow's plugins and the
        # lazily imported DCT (scipy, ~0.1-0.2 s), so no file's time limit is spent on start-up;
        # the pool warms the processes it restarts with the same jobs.
        warm = (encode(synthetic_image(0, 64, 48)), limits, algorithms)
        pool.warm_up([warm] * processes)
        asyncio.run(hash_uploads(pool, uploads, limits, algorithms, handle))
    finally:
        pool.close()


def cmd_hash(args: argparse.Namespace, settings: Settings) -> int:
    """Print each file's hashes as one JSON line."""
    limits = settings.guard_limits()
    refused = 0

    def handle(path: Path, result: Outcome) -> None:
        nonlocal refused
        advance(1)
        if isinstance(result, PipelineError):
            refused += 1
            _emit({"file": str(path), "error": {"reason": result.reason, "message": str(result)}})
            return
        _emit(
            {
                "file": str(path),
                "format": result.format,
                "width": result.width,
                "height": result.height,
                "hashes": {str(a): HashValue(a, v).hex for a, v in result.hashes.items()},
            }
        )

    with _bar("hashing", len(args.files), "file", _show_progress(args.quiet)) as advance:
        _run_hashing(args, settings, limits, tuple(Algorithm), handle)
    return 1 if refused else 0


def build_matcher(paths: list[Path], settings: Settings, quiet: bool) -> Matcher:
    """A matcher loaded from list files; bad lines are reported on stderr and skipped.

    Raises InputRejected (reason ``empty_list``) for a list that has no entries: an entry file
    that loads none (see :func:`~pipeline.adapters.listfiles.load_paths`), or a manifest list
    naming no entry files. Such a list can match nothing, so every upload would be allowed."""
    from pipeline.adapters.listfiles import load_paths

    show = _show_progress(quiet)
    loaded = load_paths(paths, progress=_file_bars(show))
    with_entries = {entry.list_name for entry in loaded.entries}
    entryless = sorted(set(loaded.configs) - with_entries)
    if entryless:
        raise InputRejected(
            f"list(s) {', '.join(map(repr, entryless))} have no entries: their manifest names "
            "no entry files",
            reason="empty_list",
        )
    for name, errors in loaded.errors.items():
        for error in errors[:20]:
            print(f"{name}:{error.line}: {error.reason}: {error.message}", file=sys.stderr)
        if len(errors) > 20:
            print(f"{name}: ... and {len(errors) - 20} more bad lines", file=sys.stderr)
    matcher = Matcher(settings.index_kind.value, expected_size=len(loaded.entries))
    for config in loaded.configs.values():
        matcher.set_list(config)
    with _bar("indexing", len(loaded.entries), "entry", show) as advance:
        matcher.upsert(_counted(loaded.entries, advance))
    if not quiet:
        print(
            f"loaded {len(matcher):,} entries in {len(loaded.configs)} list(s)"
            f"{f', skipped {loaded.error_count} bad line(s)' if loaded.error_count else ''}",
            file=sys.stderr,
        )
    return matcher


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
    args.lists, args.files = split_lists_and_files(args.lists, args.files)
    if not args.files:
        args.usage_error("the following arguments are required: FILE")
    if not args.lists:
        args.usage_error(
            f"--lists names no hash-list file ({', '.join(LIST_SUFFIXES)}) before the FILEs; "
            "write FILE... --lists PATH... for lists named otherwise"
        )
    limits = settings.guard_limits()
    matcher = build_matcher(args.lists, settings, args.quiet)
    matched = failed = 0

    def handle(path: Path, result: Outcome) -> None:
        nonlocal matched, failed
        advance(1)
        now = datetime.now(UTC)
        if isinstance(result, PipelineError):
            failed += 1
            # A file that could not be read failed where the worker fetches.
            unread = isinstance(result, InputRejected) and not isinstance(result, ImageRejected)
            stage = Stage.FETCH if unread else hashing_failure_stage(result)
            verdict = error_verdict(
                upload_id=str(path), stage=stage, reason=result.reason, message=str(result),
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

    with _bar("matching", len(args.files), "file", _show_progress(args.quiet)) as advance:
        _run_hashing(
            args, settings, limits, verdict_algorithms(matcher.algorithms_in_use()), handle
        )
    if matched:
        return 1
    return 3 if failed else 0


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    """Report every bad line; exit 1 if there was any."""
    from pipeline.adapters.listfiles import load_paths

    del settings
    # Every bad line is the point here, so a file with no good one is reported, not raised.
    loaded = load_paths(
        args.paths, progress=_file_bars(_show_progress(args.quiet)), allow_empty=True
    )
    for name, errors in loaded.errors.items():
        for error in errors:
            print(f"{name}:{error.line}: {error.reason}: {error.message}", file=sys.stderr)
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
    from pipeline.adapters.listfiles import load_paths
    from pipeline.bench.report import format_table

    del settings
    loaded = load_paths(args.paths, progress=_file_bars(_show_progress(args.quiet)))
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
        help="print the exact and perceptual hashes of image files (JSON lines)",
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
        help="screen image files against hash lists; print verdicts (JSON lines)",
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

    hashlist = subparsers.add_parser(
        "hashlist", help="inspect hash-list files (and publish them to Kafka)"
    )
    actions = hashlist.add_subparsers(dest="hashlist_command", metavar="ACTION", required=True)
    validate = actions.add_parser(
        "validate", parents=[quiet], help="report every bad line with its number; exit 1 if any"
    )
    validate.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    validate.set_defaults(handler=cmd_validate)
    stats = actions.add_parser(
        "stats", parents=[quiet], help="entries by list, algorithm and category"
    )
    stats.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(handler=cmd_stats)

    from pipeline.commands.stream import register_hashlist_actions

    register_hashlist_actions(actions)
