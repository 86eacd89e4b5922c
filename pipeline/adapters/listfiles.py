"""Reading hash-list files from disk into core entries and list policies.

Owns path handling only: a PATH is either a manifest (``.json``, naming lists, their policy and
their entry files, resolved relative to the manifest) or a bare entry file (CSV or JSON Lines),
whose lists get :class:`~pipeline.core.hashlist.ListConfig` defaults. Parsing and validation are
the core's (:mod:`pipeline.core.hashlist`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.hashlist import (
    HashListEntry,
    LineError,
    ListConfig,
    parse_entries,
    parse_manifest,
)
from pipeline.errors import InputRejected


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


def load_paths(paths: list[Path], default_list: str | None = None) -> LoadedLists:
    """Load manifests and entry files. Raises InputRejected for unreadable files or a bad
    manifest; bad lines inside entry files are collected, not raised."""
    loaded = LoadedLists()
    for path in paths:
        if path.suffix.lower() == ".json":
            for item in parse_manifest(_read(path)):
                loaded.configs[item.config.name] = item.config
                for name in item.files:
                    _load_entries(path.parent / name, item.config.name, loaded)
        else:
            _load_entries(path, default_list, loaded)
    for entry in loaded.entries:
        loaded.configs.setdefault(entry.list_name, ListConfig(name=entry.list_name))
    return loaded


def _load_entries(path: Path, default_list: str | None, loaded: LoadedLists) -> None:
    result = parse_entries(_read(path), path.name, default_list)
    loaded.entries.extend(result.entries)
    if result.errors:
        loaded.errors.setdefault(str(path), []).extend(result.errors)
