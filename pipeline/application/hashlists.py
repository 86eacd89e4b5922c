"""Publishing hash lists to the ``hashlists`` topic, and retracting from it.

Owns the rules of ``hashlist publish`` and ``hashlist retract`` for every caller (the CLI, the
demo, the benchmarks): which list configs go out with a set of list files (a manifest's; or a
change the caller names, put over the config the topic holds, else over the defaults; never a
config nobody gave, since publishing one would overwrite the list's real config), and which
keys get a tombstone (only keys the topic holds, read to its high watermark, so a typo in an
id is named instead of "retracted"). Records are encoded by
:mod:`pipeline.adapters.hashlist_topic` and produced by :class:`~pipeline.adapters.delivery.
Delivery`, which checks that the broker confirmed each.

Must not print, parse arguments or choose exit codes: results are returned, failures raised
(:class:`~pipeline.adapters.delivery.DeliveryFailed`,
:class:`~pipeline.adapters.topics.BrokerUnreachable`,
:class:`~pipeline.errors.InputRejected`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.adapters import hashlist_topic
from pipeline.adapters.delivery import Delivery
from pipeline.adapters.listfiles import LoadedLists, load_paths
from pipeline.adapters.topics import latest_values
from pipeline.application.progress import Progress, counted, no_progress
from pipeline.config import Settings
from pipeline.core.hashlist import HashListEntry, ListConfig, ListKind, VpdqEntry
from pipeline.core.types import Action, Algorithm

# -- publish ----------------------------------------------------------------------------------


class ConfigBase(enum.Enum):
    """What a published list config was built from."""

    #: A manifest's config, as it is.
    MANIFEST = "manifest"
    #: A change put over the manifest's config.
    MANIFEST_CHANGED = "manifest_changed"
    #: A change put over the config the topic held for the list.
    TOPIC = "topic"
    #: A change put over the defaults: the list had no config.
    DEFAULTS = "defaults"


@dataclass(frozen=True)
class ConfigChange:
    """Settings of one list's config a caller names; ``None`` (or no threshold) keeps the
    base config's."""

    list_name: str
    kind: ListKind | None = None
    action: Action | None = None
    version: str | None = None
    thresholds: Mapping[Algorithm, int] = field(default_factory=dict)

    def over(self, base: ListConfig) -> ListConfig:
        """``base`` with this change put over it (validated like any config)."""
        return ListConfig.create(
            base.name,
            kind=self.kind or base.kind,
            action=self.action or base.action,
            thresholds={**base.thresholds, **self.thresholds},
            enabled=base.enabled,
            version=self.version if self.version is not None else base.version,
        )


@dataclass(frozen=True)
class ListFiles:
    """List files read for publishing: their entries and bad lines, and the configs their
    manifests declare (and only those)."""

    loaded: LoadedLists
    declared: dict[str, ListConfig]


@dataclass(frozen=True)
class Published:
    """What :func:`publish_files` sent: records the broker confirmed, entries among them, each
    list config published with what it was built from, the lists whose entries went out
    without a config (theirs on the topic is left as it is), sorted, and those of them the
    topic has no config for: workers hold their entries, matching nothing, until one comes."""

    records: int
    entries: int
    configs: dict[str, tuple[ListConfig, ConfigBase]]
    entries_only: list[str]
    unconfigured: list[str] = field(default_factory=list)


def read_list_files(paths: Sequence[Path], default_list: str | None) -> ListFiles:
    """Every entry and bad line of ``paths``, and the list configs their manifests declare.

    :func:`~pipeline.adapters.listfiles.load_paths` also gives each list named only by entry
    files a default config. Publishing that default would overwrite the list's real config on
    the topic (the audit saw a block, version v7, pHash-4 list turn review, version 1, pHash-8
    after publishing a bare CSV), so each path is loaded on its own and only manifests' configs
    are kept. Raises :class:`~pipeline.errors.InputRejected` for a file that cannot be read.
    """
    loaded = LoadedLists()
    declared: dict[str, ListConfig] = {}
    for path in paths:
        one = load_paths([path], default_list=default_list)
        loaded.entries.extend(one.entries)
        loaded.videos.extend(one.videos)
        for name, errors in one.errors.items():
            loaded.errors.setdefault(name, []).extend(errors)
        if _is_manifest(path):
            declared.update(one.configs)
    return ListFiles(loaded, declared)


def _is_manifest(path: Path) -> bool:
    """The rule :func:`pipeline.adapters.listfiles.load_paths` applies: ``.json`` is a manifest."""
    return path.suffix.lower() == ".json"


def publish_files(
    bootstrap: str,
    settings: Settings,
    files: ListFiles,
    change: ConfigChange | None = None,
    *,
    progress: Progress = no_progress,
) -> Published:
    """Publish the entries of ``files``, their manifests' configs and, with ``change``, that
    list's config: ``change`` over the manifest's config, else over the topic's, else over the
    defaults. Raises :class:`~pipeline.adapters.topics.BrokerUnreachable`,
    :class:`~pipeline.adapters.delivery.DeliveryFailed` unless the broker confirmed every
    record, and :class:`~pipeline.errors.InputRejected` for a config the topic holds that
    cannot be read (a manifest can replace it) or a change that makes an invalid config."""
    configs = {name: (config, ConfigBase.MANIFEST) for name, config in files.declared.items()}
    if change is not None:
        base, built_from = _base_config(bootstrap, settings, files.declared, change.list_name)
        configs[change.list_name] = (change.over(base), built_from)
    entries: list[HashListEntry | VpdqEntry] = [*files.loaded.entries, *files.loaded.videos]
    records = publish_lists(
        bootstrap, settings, [config for config, _ in configs.values()], entries, progress
    )
    entries_only = sorted({e.list_name for e in entries} - set(configs))
    on_topic = (
        latest_values(
            bootstrap,
            settings.topic_hashlists,
            [hashlist_topic.list_key(name).encode() for name in entries_only],
            connect_timeout=settings.broker_connect_timeout_seconds,
        )
        if entries_only
        else {}
    )
    unconfigured = [
        name
        for name in entries_only
        if on_topic.get(hashlist_topic.list_key(name).encode()) is None
    ]
    return Published(records, len(entries), configs, entries_only, unconfigured)


def _base_config(
    bootstrap: str, settings: Settings, declared: Mapping[str, ListConfig], name: str
) -> tuple[ListConfig, ConfigBase]:
    """The config a change to list ``name`` is put over, and what it is."""
    if name in declared:
        return declared[name], ConfigBase.MANIFEST_CHANGED
    on_topic = config_on_topic(bootstrap, settings, name)
    if on_topic is not None:
        return on_topic, ConfigBase.TOPIC
    return ListConfig.create(name), ConfigBase.DEFAULTS


def config_on_topic(bootstrap: str, settings: Settings, name: str) -> ListConfig | None:
    """The config of list ``name`` on the hash-list topic now, if it has one.

    Raises :class:`~pipeline.adapters.topics.BrokerUnreachable`, or
    :class:`~pipeline.errors.InputRejected` when the record there cannot be read."""
    key = hashlist_topic.list_key(name).encode()
    value = latest_values(
        bootstrap,
        settings.topic_hashlists,
        [key],
        connect_timeout=settings.broker_connect_timeout_seconds,
    ).get(key)
    if value is None:
        return None
    _, _, config = hashlist_topic.parse_hashlist_record(key, value)
    return config if isinstance(config, ListConfig) else None


def publish_lists(
    bootstrap: str,
    settings: Settings,
    configs: Iterable[ListConfig],
    entries: Sequence[HashListEntry | VpdqEntry],
    progress: Progress = no_progress,
) -> int:
    """Write list configs, then entries, to ``settings.topic_hashlists``; returns the records
    the broker confirmed. Raises :class:`~pipeline.adapters.delivery.DeliveryFailed` unless it
    confirmed every one, and :class:`~pipeline.adapters.topics.BrokerUnreachable` when it
    cannot be reached at all."""
    delivery = Delivery.from_settings(bootstrap, settings)
    with progress("publishing", len(entries), "entry") as advance:
        hashlist_topic.publish(
            delivery, settings.topic_hashlists, configs, counted(entries, advance)
        )
    return delivery.finish_or_raise().delivered


# -- retract ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retracted:
    """Keys given to :func:`retract_keys`: those the topic held (a tombstone each went out)
    and those it did not (never published, or already retracted: nothing sent)."""

    held: list[str]
    not_held: list[str]


def retraction_keys(
    list_name: str,
    entry_ids: Iterable[str],
    file: Path | None,
    list_config: bool,
    *,
    videos: bool = False,
) -> list[str]:
    """The topic keys to retract, once each in the order given: the entries named by id (vPDQ
    entries' keys with ``videos``), every entry of ``file`` (an entry file or manifest; rows
    without a list belong to ``list_name``; vPDQ rows by their own keys) and, with
    ``list_config``, the list's config. Raises :class:`~pipeline.errors.InputRejected` for a
    file that cannot be read."""
    key_of = hashlist_topic.vpdq_key if videos else hashlist_topic.entry_key
    keys = [key_of(list_name, entry_id) for entry_id in entry_ids]
    if file is not None:
        loaded = load_paths([file], list_name)
        keys += [hashlist_topic.entry_key(e.list_name, e.entry_id) for e in loaded.entries]
        keys += [hashlist_topic.vpdq_key(e.list_name, e.entry_id) for e in loaded.videos]
    if list_config:
        keys.append(hashlist_topic.list_key(list_name))
    return list(dict.fromkeys(keys))


def retract_keys(bootstrap: str, settings: Settings, keys: Sequence[str]) -> Retracted:
    """Publish a tombstone for each of ``keys`` the hash-list topic holds now.

    A tombstone for a key the topic does not hold retracts nothing; saying "retracted" for it
    would hide a typo in an id, or a list name, from the person retracting. Raises
    :class:`~pipeline.adapters.topics.BrokerUnreachable` and
    :class:`~pipeline.adapters.delivery.DeliveryFailed` unless the broker confirmed every
    tombstone."""
    topic = settings.topic_hashlists
    on_topic = latest_values(
        bootstrap,
        topic,
        [key.encode() for key in keys],
        connect_timeout=settings.broker_connect_timeout_seconds,
    )
    held = [key for key in keys if on_topic.get(key.encode()) is not None]
    if held:
        delivery = Delivery.from_settings(bootstrap, settings)
        hashlist_topic.retract(delivery, topic, held)
        delivery.finish_or_raise()
    return Retracted(held, [key for key in keys if on_topic.get(key.encode()) is None])
