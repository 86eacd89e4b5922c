"""Building a matcher from hash-list files on disk (what ``pipeline match`` screens against).

Owns loading the lists (manifests and entry files, through
:func:`~pipeline.adapters.listfiles.load_paths`), refusing a list that can match nothing, and
indexing the entries. Bad lines are returned for the caller to report, never printed here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.adapters.listfiles import load_paths
from pipeline.application.progress import Progress, counted, no_progress, reading_files
from pipeline.config import Settings
from pipeline.core.hashlist import LineError
from pipeline.core.matching import Matcher
from pipeline.errors import InputRejected


@dataclass(frozen=True)
class LoadedMatcher:
    """A matcher with what loading its lists found: the lists loaded and, by file, the bad
    lines that were skipped."""

    matcher: Matcher
    lists: int
    errors: Mapping[str, Sequence[LineError]]

    @property
    def error_count(self) -> int:
        """Bad lines skipped, in every file."""
        return sum(len(errors) for errors in self.errors.values())


def build_matcher(
    paths: list[Path], settings: Settings, progress: Progress = no_progress
) -> LoadedMatcher:
    """A matcher (of ``settings.index_kind``) loaded from list files; bad lines are skipped.

    Raises InputRejected for a file that cannot be read or parsed, and (reason ``empty_list``)
    for a list that has no entries: an entry file that loads none (see
    :func:`~pipeline.adapters.listfiles.load_paths`), or a manifest list naming no entry files.
    Such a list can match nothing, so every upload would be allowed. ``progress`` gets a step
    per file read (bytes) and one for indexing (entries)."""
    loaded = load_paths(paths, progress=reading_files(progress))
    with_entries = {e.list_name for e in loaded.entries} | {e.list_name for e in loaded.videos}
    entryless = sorted(set(loaded.configs) - with_entries)
    if entryless:
        raise InputRejected(
            f"list(s) {', '.join(map(repr, entryless))} have no entries: their manifest names "
            "no entry files",
            reason="empty_list",
        )
    matcher = Matcher(settings.index_kind.value, expected_size=len(loaded.entries))
    for config in loaded.configs.values():
        matcher.set_list(config)
    with progress("indexing", len(loaded.entries), "entry") as advance:
        matcher.upsert(counted(loaded.entries, advance))
    matcher.upsert_videos(loaded.videos)
    return LoadedMatcher(matcher=matcher, lists=len(loaded.configs), errors=loaded.errors)
