"""``quarantine lift``, ``quarantine rearm`` and ``quarantine list``: operators' side of the
flood quarantine, through the ``hashlists`` topic every worker reads.

Owns their arguments, output and exit codes; the rules are :mod:`pipeline.application.
quarantine`'s. Exit 0 done; 1 when the topic does not hold the entry (lift) or the lift
(rearm), or the broker did not confirm the record; 2 for usage or an unreachable broker.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from pipeline.adapters.delivery import DeliveryFailed
from pipeline.adapters.topics import BrokerUnreachable
from pipeline.application import quarantine
from pipeline.commands.connection import bootstrap_servers, quiet_kafka_client_logs, unreachable
from pipeline.config import Settings


def cmd_lift(args: argparse.Namespace, settings: Settings) -> int:
    """Lift the entry's quarantine on every worker and exempt it until re-armed."""
    quiet_kafka_client_logs()
    bootstrap = bootstrap_servers(settings, args.bootstrap_servers)
    try:
        done = quarantine.lift(
            bootstrap,
            settings,
            args.list,
            args.entry,
            lifted_at=datetime.now(UTC),
            reason=args.reason,
        )
    except BrokerUnreachable as exc:
        return unreachable(exc)
    except DeliveryFailed as exc:
        print(f"pipeline: lifting failed: {exc}", file=sys.stderr)
        return 1
    if not done.held:
        print(
            f"pipeline: topic {settings.topic_hashlists!r} holds no entry {done.key!r}; "
            "nothing sent (check the list and entry id)",
            file=sys.stderr,
        )
        return 1
    print(
        f"lifted: list {args.list!r} entry {args.entry!r} blocks again on every worker and is "
        f"exempt from quarantine until `pipeline quarantine rearm --list {args.list} --entry "
        f"{args.entry}`"
    )
    return 0


def cmd_rearm(args: argparse.Namespace, settings: Settings) -> int:
    """End the entry's exemption: workers may quarantine it again."""
    quiet_kafka_client_logs()
    bootstrap = bootstrap_servers(settings, args.bootstrap_servers)
    try:
        done = quarantine.rearm(bootstrap, settings, args.list, args.entry)
    except BrokerUnreachable as exc:
        return unreachable(exc)
    except DeliveryFailed as exc:
        print(f"pipeline: re-arming failed: {exc}", file=sys.stderr)
        return 1
    if not done.held:
        print(
            f"pipeline: entry {args.entry!r} of list {args.list!r} is not lifted (topic "
            f"{settings.topic_hashlists!r} holds no {done.key!r}); nothing sent",
            file=sys.stderr,
        )
        return 1
    print(f"re-armed: list {args.list!r} entry {args.entry!r} may be quarantined again")
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print the lifts in force, one line each."""
    quiet_kafka_client_logs()
    bootstrap = bootstrap_servers(settings, args.bootstrap_servers)
    try:
        lifts = quarantine.lifted(bootstrap, settings)
    except BrokerUnreachable as exc:
        return unreachable(exc)
    for lift in lifts:
        reason = f"  {lift.reason}" if lift.reason else ""
        print(f"{lift.lifted_at.isoformat()}  {lift.list}  {lift.entry_id}{reason}")
    print(
        f"{len(lifts)} entr{'y' if len(lifts) == 1 else 'ies'} lifted and exempt from "
        "quarantine. Entries quarantined now are in screening_entry_quarantined_timestamp_"
        "seconds and the workers' logs.",
        file=sys.stderr,
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``quarantine`` with ``lift``, ``rearm`` and ``list``."""
    command = subparsers.add_parser(
        "quarantine",
        help="lift or re-arm an entry's flood quarantine on every worker",
        description="A worker quarantines a list entry that matches too large a share of its "
        "uploads (its matches ask for review, not block). These commands act on every worker "
        "through the hashlists topic.",
    )
    actions = command.add_subparsers(dest="quarantine_command", metavar="ACTION", required=True)
    lift = actions.add_parser(
        "lift",
        help="make every worker block on the entry again; exempt it until re-armed",
        description="Publishes quarantine/<list>/<entry id>: every worker drops the entry's "
        "quarantine and exempts it until `quarantine rearm`. Exit 1 if the topic does not hold "
        "the entry.",
    )
    rearm = actions.add_parser(
        "rearm",
        help="end a lift's exemption: the entry may be quarantined again",
        description="Publishes the tombstone of the entry's lift. Exit 1 if it is not lifted.",
    )
    for action in (lift, rearm):
        action.add_argument("--list", required=True, help="the entry's list")
        action.add_argument("--entry", required=True, help="the entry id")
    lift.add_argument("--reason", help="why, for the record (a ticket, a finding)")
    listing = actions.add_parser(
        "list", help="print the entries lifted and exempt (one line each, oldest first)"
    )
    for action in (lift, rearm, listing):
        action.add_argument("--bootstrap-servers", help="override PIPELINE_BOOTSTRAP_SERVERS")
    lift.set_defaults(handler=cmd_lift)
    rearm.set_defaults(handler=cmd_rearm)
    listing.set_defaults(handler=cmd_list)
