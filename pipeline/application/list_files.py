"""Checking hash-list files on disk: every bad line (``hashlist validate``) and what they hold
(``hashlist stats``).

Owns loading the files for these reports (through
:func:`~pipeline.adapters.listfiles.load_paths`), counting their entries, and finding the
entries whose perceptual hash is the hash of a low-information picture (blank, gradient,
vignette, stripes: :func:`pipeline.core.detail.low_information_hashes`), which both reports
flag. Returns what it found; printing it is the commands' job.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.adapters.listfiles import LoadedLists, load_paths
from pipeline.application.progress import Progress, no_progress, reading_files
from pipeline.core.detail import low_information_hashes
from pipeline.core.hashlist import VPDQ_ALGORITHM, HashListEntry, ListConfig
from pipeline.core.types import Algorithm


def low_information_entries(entries: Iterable[HashListEntry]) -> tuple[HashListEntry, ...]:
    """The entries whose perceptual hash is the hash of a low-information picture, in order."""
    listed = list(entries)
    by_algorithm: dict[Algorithm, list[int]] = {}
    for position, entry in enumerate(listed):
        if entry.hash.algorithm.is_perceptual:
            by_algorithm.setdefault(entry.hash.algorithm, []).append(position)
    flagged: list[int] = []
    for algorithm, positions in by_algorithm.items():
        low = low_information_hashes(algorithm, [listed[i].hash.value for i in positions])
        flagged.extend(i for i, is_low in zip(positions, low, strict=True) if is_low)
    return tuple(listed[i] for i in sorted(flagged))


def validate_lists(paths: list[Path], progress: Progress = no_progress) -> LoadedLists:
    """Everything in the files, bad lines and entry files with no entry included.

    Every bad line is the point here, so a file with no good one is listed in ``empty_files``,
    not raised. Raises InputRejected for a file that cannot be read or a bad manifest."""
    return load_paths(paths, progress=reading_files(progress), allow_empty=True)


@dataclass(frozen=True)
class ListStats:
    """What list files hold: entries, bad lines, each list's policy, entry counts by
    (list, algorithm, category; algorithm ``vpdq`` for whole-video entries) and low-information
    entry counts by (list, algorithm), in that order."""

    entries: int
    bad_lines: int
    configs: Mapping[str, ListConfig]
    counts: Mapping[tuple[str, str, str], int]
    low_information: Mapping[tuple[str, str], int]


def list_stats(paths: list[Path], progress: Progress = no_progress) -> ListStats:
    """Counts of the entries in the files. Raises InputRejected as
    :func:`~pipeline.adapters.listfiles.load_paths` does (an entry file with no entry
    included)."""
    loaded = load_paths(paths, progress=reading_files(progress))
    counts = Counter((e.list_name, str(e.hash.algorithm), str(e.category)) for e in loaded.entries)
    counts.update((v.list_name, VPDQ_ALGORITHM, str(v.category)) for v in loaded.videos)
    low = Counter(
        (e.list_name, str(e.hash.algorithm)) for e in low_information_entries(loaded.entries)
    )
    return ListStats(
        entries=len(loaded.entries) + len(loaded.videos),
        bad_lines=loaded.error_count,
        configs=loaded.configs,
        counts=dict(sorted(counts.items())),
        low_information=dict(sorted(low.items())),
    )
