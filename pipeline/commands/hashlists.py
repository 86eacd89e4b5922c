"""``hashlist publish`` and ``hashlist retract``: list files to the hashlists topic, and back.

Owns their arguments, output and exit codes; the rules (which configs go out, which keys the
topic holds) are :mod:`pipeline.application.hashlists`'. Publishing entries never touches a
list's config unless the user gave one (a manifest, or ``--list`` with a config option), and
the output says which config went out and what it was built from; retracting names the keys
the topic does not hold. Exit 1 for bad lines, keys not held or records the broker did not
confirm; 2 for usage, nothing to retract, or a broker that cannot be reached (one line).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.adapters.delivery import REPORTED_KEYS, DeliveryFailed
from pipeline.adapters.listfiles import LoadedLists
from pipeline.adapters.topics import BrokerUnreachable
from pipeline.application.hashlists import (
    ConfigBase,
    ConfigChange,
    Published,
    publish_files,
    read_list_files,
    retract_keys,
    retraction_keys,
)
from pipeline.application.progress import Advance, Progress, no_progress
from pipeline.commands.arguments import threshold
from pipeline.commands.connection import bootstrap_servers, quiet_kafka_client_logs, unreachable
from pipeline.config import Settings
from pipeline.core.hashlist import ListConfig, ListKind
from pipeline.core.types import Action

#: The ``hashlist publish`` options that set a list's config. Without one of them (or a
#: manifest), publishing sends entries only and leaves the list's config as it is.
CONFIG_OPTIONS = ("kind", "action", "version", "threshold")

#: What a published config was built from, as the output says it (after the options given).
BUILT_FROM = {
    ConfigBase.MANIFEST_CHANGED: "the manifest's config",
    ConfigBase.TOPIC: "the config on the topic",
    ConfigBase.DEFAULTS: "the defaults (the list had no config)",
}


@contextmanager
def _bar(label: str, total: int, unit: str) -> Iterator[Advance]:
    from tqdm import tqdm

    with tqdm(total=total, desc=label, unit=unit, file=sys.stderr) as bar:
        yield bar.update


def _progress(quiet: bool) -> Progress:
    """A bar on stderr when it is a terminal, unless ``quiet``."""
    return no_progress if quiet or not sys.stderr.isatty() else _bar


def _config_change(args: argparse.Namespace) -> ConfigChange:
    return ConfigChange(
        args.list,
        kind=ListKind(args.kind) if args.kind else None,
        action=Action(args.action) if args.action else None,
        version=args.version,
        thresholds=dict(args.threshold or []),
    )


def describe_config(config: ListConfig) -> str:
    """A config in one phrase: kind, action (a deny list's: an allow list's action is never
    used), version, perceptual thresholds, enabled."""
    thresholds = " ".join(
        f"{alg}={bits}" for alg, bits in sorted(config.thresholds.items()) if alg.is_perceptual
    )
    action = "" if config.kind == ListKind.ALLOW else f", action {config.action}"
    return (
        f"{config.kind}{action}, version {config.version}, "
        f"thresholds {thresholds}{'' if config.enabled else ', disabled'}"
    )


def _print_bad_lines(loaded: LoadedLists) -> None:
    for name, errors in loaded.errors.items():
        for error in errors[:20]:
            print(f"{name}:{error.line}: {error.reason}: {error.message}", file=sys.stderr)


def _print_published(published: Published, bad_lines: int, options: list[str]) -> None:
    print(
        f"published {published.records:,} records ({published.entries:,} entries, "
        f"{len(published.configs)} list config(s)); rejected {bad_lines:,} bad line(s)"
    )
    for name, (config, base) in published.configs.items():
        origin = (
            "from the manifest"
            if base is ConfigBase.MANIFEST
            else f"{', '.join(options)} over {BUILT_FROM[base]}"
        )
        print(f"list {name!r}: config published: {describe_config(config)} ({origin})")
    for name in published.entries_only:
        how = f"a manifest, or --list {name} with --action/--version/--threshold/--kind"
        if name in published.unconfigured:
            print(
                f"list {name!r}: entries only, and the topic has no config for it: workers "
                f"hold its entries (they match nothing) until one is published ({how})"
            )
        else:
            print(f"list {name!r}: entries only; its config is left as it is (to change it: {how})")


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    """Load list files (reporting bad lines) and publish their entries, plus the list configs
    the user gave: a manifest's, or ``--list`` with config options over the config on the topic.
    Exit 1 on bad lines or records the broker did not take, 2 when it cannot be reached."""
    quiet_kafka_client_logs()
    options = [f"--{name}" for name in CONFIG_OPTIONS if getattr(args, name) is not None]
    if options and not args.list:
        print(
            f"pipeline: {', '.join(options)} set a list's config: name the list with --list",
            file=sys.stderr,
        )
        return 2
    bootstrap = bootstrap_servers(settings, args.bootstrap_servers)
    files = read_list_files(args.paths, args.list)
    _print_bad_lines(files.loaded)
    change = _config_change(args) if options else None
    try:
        published = publish_files(
            bootstrap, settings, files, change, progress=_progress(args.quiet)
        )
    except BrokerUnreachable as exc:
        return unreachable(exc)
    except DeliveryFailed as exc:
        print(f"pipeline: publishing failed: {exc}", file=sys.stderr)
        return 1
    _print_published(published, files.loaded.error_count, options)
    return 1 if files.loaded.error_count else 0


def cmd_retract(args: argparse.Namespace, settings: Settings) -> int:
    """Publish tombstones for the given keys the topic holds: entries (by id, or every entry of
    a file) and the list's config. Names the keys it does not hold and sends nothing for them.
    Exit 2 for nothing to retract or an unreachable broker, 1 when a key was not on the topic or
    the broker did not take every tombstone."""
    quiet_kafka_client_logs()
    keys = retraction_keys(args.list, args.entry_ids, args.file, args.list_config, videos=args.vpdq)
    if not keys:
        print(
            "pipeline: nothing to retract: give ENTRY_IDs, --file FILE or --list-config",
            file=sys.stderr,
        )
        return 2
    bootstrap = bootstrap_servers(settings, args.bootstrap_servers)
    try:
        retracted = retract_keys(bootstrap, settings, keys)
    except BrokerUnreachable as exc:
        return unreachable(exc)
    except DeliveryFailed as exc:
        print(f"pipeline: retracting failed: {exc}", file=sys.stderr)
        return 1
    print(f"retracted {len(retracted.held):,} key(s)")
    not_held = retracted.not_held
    if not not_held:
        return 0
    more = f" and {len(not_held) - REPORTED_KEYS:,} more" if len(not_held) > REPORTED_KEYS else ""
    print(
        f"pipeline: {len(not_held):,} key(s) not on topic {settings.topic_hashlists!r} (never "
        f"published, or already retracted), nothing sent for them: "
        f"{', '.join(not_held[:REPORTED_KEYS])}{more}",
        file=sys.stderr,
    )
    return 1


def register_actions(actions: Any) -> None:
    """Add ``publish`` and ``retract`` to the ``hashlist`` command."""
    publish = actions.add_parser(
        "publish",
        help="publish list files to the hashlists topic",
        description="Publishes the entries of entry files and manifests. A list's config is "
        "published only when given: by a manifest, or by --list with --kind/--action/--version/"
        "--threshold, each put over the config the topic holds for the list (a new list starts "
        "from deny, review, version 1, phash=8 dhash=10 pdq=31). Entries alone never change a "
        "config.",
    )
    publish.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    publish.add_argument(
        "--list",
        help="list name for entries without one; with the options below, the list whose "
        "config they set",
    )
    publish.add_argument("--kind", choices=["deny", "allow"], help="set the list's kind")
    publish.add_argument("--action", choices=["block", "review"], help="set the list's action")
    publish.add_argument("--version", help="set the list's version (carried in matches)")
    publish.add_argument(
        "--threshold",
        action="append",
        type=threshold,
        metavar="ALG=BITS",
        help="set a threshold, e.g. phash=8 (repeatable); the list's others stay as they are",
    )
    publish.add_argument("--bootstrap-servers", help="override PIPELINE_BOOTSTRAP_SERVERS")
    publish.add_argument("-q", "--quiet", action="store_true")
    publish.set_defaults(handler=cmd_publish)

    retract = actions.add_parser(
        "retract",
        help="retract entries (or a list config) from the topic",
        description="Publishes a tombstone for each given key the topic holds. Keys it does not "
        "hold (never published, or already retracted) are named, and get nothing: exit 1.",
    )
    retract.add_argument("--list", required=True)
    retract.add_argument("entry_ids", nargs="*", metavar="ENTRY_ID")
    retract.add_argument("--file", type=Path, help="retract every entry listed in this file")
    retract.add_argument(
        "--vpdq",
        action="store_true",
        help="the ENTRY_IDs are vPDQ (whole-video) entries (keys vpdq/<list>/<id>)",
    )
    retract.add_argument("--list-config", action="store_true", help="also remove the list's config")
    retract.add_argument("--bootstrap-servers", help="override PIPELINE_BOOTSTRAP_SERVERS")
    retract.set_defaults(handler=cmd_retract)
