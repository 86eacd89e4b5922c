"""Reading hash-list files from disk into core entries and list policies.

Owns path handling only: a PATH is either a manifest (``.json``, naming lists, their policy and
their entry files, resolved relative to the manifest) or a bare entry file (CSV or JSON Lines),
whose lists get :class:`~pipeline.core.hashlist.ListConfig` defaults. Entry files are streamed
line by line into the core's parser (:mod:`pipeline.core.hashlist`), which owns parsing and
validation; a caller may watch progress by bytes read (the offline CLI draws a bar from it).
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
    errors: dict[str, list[LineError]] = field(default_factory=dict)

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
    paths: list[Path], default_list: str | None = None, *, progress: Progress | None = None
) -> LoadedLists:
    """Load manifests and entry files. Raises InputRejected for unreadable files or a bad
    manifest; bad lines inside entry files are collected, not raised."""
    loaded = LoadedLists()
    for path in paths:
        if path.suffix.lower() == ".json":
            for item in parse_manifest(_read(path)):
                loaded.configs[item.config.name] = item.config
                for name in item.files:
                    _load_entries(path.parent / name, item.config.name, loaded, progress)
        else:
            _load_entries(path, default_list, loaded, progress)
    for entry in loaded.entries:
        loaded.configs.setdefault(entry.list_name, ListConfig(name=entry.list_name))
    return loaded


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
    path: Path, default_list: str | None, loaded: LoadedLists, progress: Progress | None
) -> None:
    try:
        # newline="": csv needs the line endings as written (quoted fields may hold newlines).
        with contextlib.ExitStack() as stack:
            handle = stack.enter_context(path.open(encoding="utf-8-sig", newline=""))
            lines: TextIO | Iterator[str] = handle
            if progress is not None:
                advance = stack.enter_context(progress(path, path.stat().st_size))
                lines = _counted(handle, advance)
            result = parse_entries(lines, path.name, default_list)
    except OSError as exc:
        raise InputRejected(f"cannot read {path}: {exc.strerror}", reason="unreadable") from None
    except UnicodeDecodeError:
        raise InputRejected(f"{path} is not UTF-8 text", reason="unreadable") from None
    loaded.entries.extend(result.entries)
    if result.errors:
        loaded.errors.setdefault(str(path), []).extend(result.errors)
