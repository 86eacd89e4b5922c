"""Checking hash-list files on disk: every bad line (``hashlist validate``) and what they hold
(``hashlist stats``).

Owns loading the files for these reports (through
:func:`~pipeline.adapters.listfiles.load_paths`) and counting their entries. Returns what it
found; printing it is the commands' job.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.adapters.listfiles import LoadedLists, load_paths
from pipeline.application.progress import Progress, no_progress, reading_files
from pipeline.core.hashlist import ListConfig


def validate_lists(paths: list[Path], progress: Progress = no_progress) -> LoadedLists:
    """Everything in the files, bad lines and entry files with no entry included.

    Every bad line is the point here, so a file with no good one is listed in ``empty_files``,
    not raised. Raises InputRejected for a file that cannot be read or a bad manifest."""
    return load_paths(paths, progress=reading_files(progress), allow_empty=True)


@dataclass(frozen=True)
class ListStats:
    """What list files hold: entries, bad lines, each list's policy and entry counts by
    (list, algorithm, category), in that order."""

    entries: int
    bad_lines: int
    configs: Mapping[str, ListConfig]
    counts: Mapping[tuple[str, str, str], int]


def list_stats(paths: list[Path], progress: Progress = no_progress) -> ListStats:
    """Counts of the entries in the files. Raises InputRejected as
    :func:`~pipeline.adapters.listfiles.load_paths` does (an entry file with no entry
    included)."""
    loaded = load_paths(paths, progress=reading_files(progress))
    counts = Counter((e.list_name, str(e.hash.algorithm), str(e.category)) for e in loaded.entries)
    return ListStats(
        entries=len(loaded.entries),
        bad_lines=loaded.error_count,
        configs=loaded.configs,
        counts=dict(sorted(counts.items())),
    )
