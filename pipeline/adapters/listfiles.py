"""Reading hash-list files from disk into core entries and list policies.

Owns path handling only: a PATH is either a manifest (``.json``, naming lists, their policy and
their entry files, resolved relative to the manifest) or a bare entry file (CSV or JSON Lines),
whose lists get :class:`~pipeline.core.hashlist.ListConfig` defaults. Entry files are streamed
line by line into the core's parser (:mod:`pipeline.core.hashlist`), which owns parsing and
validation; a caller may watch progress by bytes read (the offline CLI draws a bar from it).

An entry file that yields no entry at all (empty, a wrong header, rows naming no list) is an
error naming the file, not an empty list: screening against it would allow everything, as if
the uploads had been checked. Errors name the file (and, for invalid manifest JSON, the line).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from pipeline.core.hashlist import (
    HashListEntry,
    LineError,
    ListConfig,
    ManifestError,
    ManifestList,
    ParseResult,
    VpdqEntry,
    parse_entries,
    parse_manifest,
)
from pipeline.errors import InputRejected

#: Given (file, its size in bytes), a context for reading that file whose value is called with
#: the characters read since its last call (a tqdm bar's ``update`` fits).
Progress = Callable[[Path, int], AbstractContextManager[Callable[[int], None]]]

#: Progress is reported in steps of about this many characters (a call per line would cost
#: more than the parsing at millions of lines).
_PROGRESS_STEP = 1 << 20


@dataclass
class LoadedLists:
    """Everything read from a set of paths, with per-file line errors."""

    configs: dict[str, ListConfig] = field(default_factory=dict)
    entries: list[HashListEntry] = field(default_factory=list)
    #: vPDQ (whole-video) entries, apart: they are sets of frames, not one hash.
    videos: list[VpdqEntry] = field(default_factory=list)
    errors: dict[str, list[LineError]] = field(default_factory=dict)
    #: Entry files that yielded no entry (kept only under ``allow_empty``; otherwise an error).
    empty_files: list[Path] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(len(e) for e in self.errors.values())


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputRejected(f"cannot read {path}: {exc.strerror}", reason="unreadable") from None
    except UnicodeDecodeError:
        raise InputRejected(f"{path} is not UTF-8 text", reason="unreadable") from None


def load_paths(
    paths: list[Path],
    default_list: str | None = None,
    *,
    progress: Progress | None = None,
    allow_empty: bool = False,
) -> LoadedLists:
    """Load manifests and entry files; bad lines inside entry files are collected, not raised.

    Raises InputRejected, naming the file, for an unreadable file, a bad manifest (with the
    line for invalid JSON) and, unless ``allow_empty`` (which lists them in ``empty_files``
    instead), an entry file that yields no entry (reason ``empty_list``). A manifest's entry
    files belong to its list: rows naming another list are bad lines (``list_mismatch``)."""
    loaded = LoadedLists()
    for path in paths:
        if path.suffix.lower() == ".json":
            for item in _manifest(path):
                loaded.configs[item.config.name] = item.config
                for name in item.files:
                    try:
                        _load_entries(
                            path.parent / name,
                            loaded,
                            progress,
                            allow_empty,
                            only_list=item.config.name,
                        )
                    except InputRejected as exc:
                        raise InputRejected(f"{path}: {exc}", reason=exc.reason) from None
        else:
            _load_entries(path, loaded, progress, allow_empty, default_list=default_list)
    for entry in loaded.entries:
        loaded.configs.setdefault(entry.list_name, ListConfig(name=entry.list_name))
    for video in loaded.videos:
        loaded.configs.setdefault(video.list_name, ListConfig(name=video.list_name))
    return loaded


def _manifest(path: Path) -> tuple[ManifestList, ...]:
    try:
        return parse_manifest(_read(path))
    except ManifestError as exc:
        where = f"{path}:{exc.line}" if exc.line is not None else str(path)
        raise InputRejected(f"{where}: {exc}", reason=exc.reason) from None
    except InputRejected as exc:  # a bad policy value; its message names the list
        raise InputRejected(f"{path}: {exc}", reason=exc.reason) from None


def _nothing_loaded(path: Path, result: ParseResult) -> str:
    if not result.errors:
        return f"{path}: no entries: the file has no entry rows"
    first = result.errors[0]
    return (
        f"{path}: no entries loaded; {len(result.errors):,} bad line(s), the first: "
        f"line {first.line}: {first.reason}: {first.message}"
    )


def _counted(lines: TextIO, advance: Callable[[int], None]) -> Iterator[str]:
    pending = 0
    for line in lines:
        pending += len(line)
        if pending >= _PROGRESS_STEP:
            advance(pending)
            pending = 0
        yield line
    advance(pending)


def _load_entries(
    path: Path,
    loaded: LoadedLists,
    progress: Progress | None,
    allow_empty: bool,
    *,
    default_list: str | None = None,
    only_list: str | None = None,
) -> None:
    try:
        # newline="": csv needs the line endings as written (quoted fields may hold newlines).
        with contextlib.ExitStack() as stack:
            handle = stack.enter_context(path.open(encoding="utf-8-sig", newline=""))
            lines: TextIO | Iterator[str] = handle
            if progress is not None:
                advance = stack.enter_context(progress(path, path.stat().st_size))
                lines = _counted(handle, advance)
            result = parse_entries(lines, path.name, default_list, only_list=only_list)
    except OSError as exc:
        raise InputRejected(f"cannot read {path}: {exc.strerror}", reason="unreadable") from None
    except UnicodeDecodeError:
        raise InputRejected(f"{path} is not UTF-8 text", reason="unreadable") from None
    if not result.entries and not result.videos:
        if not allow_empty:
            raise InputRejected(_nothing_loaded(path, result), reason="empty_list")
        loaded.empty_files.append(path)
    loaded.entries.extend(result.entries)
    loaded.videos.extend(result.videos)
    if result.errors:
        loaded.errors.setdefault(str(path), []).extend(result.errors)
