"""Lifting and re-arming flood quarantines, and listing the lifts, through the ``hashlists``
topic every worker reads.

Owns the rules of ``pipeline quarantine lift|rearm|list`` for every caller: a lift is the record
``quarantine/<list>/<entry id>`` (encoded by :mod:`pipeline.adapters.hashlist_topic`), which makes
every worker, restarted and new ones included, drop the entry's quarantine and exempt it until
re-armed; re-arming is its tombstone. Only an entry the topic holds can be lifted, and only a
lift the topic holds re-armed, so a typo in an id is named instead of "done" (as ``hashlist
retract`` does). Records are produced by :class:`~pipeline.adapters.delivery.Delivery`, which
checks that the broker confirmed each.

Must not print, parse arguments or choose exit codes: results are returned, failures raised
(:class:`~pipeline.adapters.delivery.DeliveryFailed`,
:class:`~pipeline.adapters.topics.BrokerUnreachable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pipeline.adapters import hashlist_topic
from pipeline.adapters.delivery import Delivery
from pipeline.adapters.topics import latest_values
from pipeline.config import Settings
from pipeline.errors import InputRejected
from pipeline.models import QuarantineLiftRecord

QUARANTINE_PREFIX = b"quarantine/"


@dataclass(frozen=True)
class Done:
    """Whether the record went out (``held``: the topic held what it acts on)."""

    held: bool
    key: str


def lift(
    bootstrap: str,
    settings: Settings,
    list_name: str,
    entry_id: str,
    *,
    lifted_at: datetime,
    reason: str | None = None,
) -> Done:
    """Publish the lift of (list, entry) if the topic holds that entry; nothing otherwise."""
    entry = hashlist_topic.entry_key(list_name, entry_id)
    on_topic = latest_values(
        bootstrap,
        settings.topic_hashlists,
        [entry.encode()],
        connect_timeout=settings.broker_connect_timeout_seconds,
    )
    if on_topic.get(entry.encode()) is None:
        return Done(held=False, key=entry)
    record = hashlist_topic.encode_lift(
        QuarantineLiftRecord(
            list=list_name, entry_id=entry_id, lifted_at=lifted_at, reason=reason or None
        )
    )
    delivery = Delivery.from_settings(bootstrap, settings)
    delivery.send(settings.topic_hashlists, record.key, record.value)
    delivery.finish_or_raise()
    return Done(held=True, key=record.key.decode())


def rearm(bootstrap: str, settings: Settings, list_name: str, entry_id: str) -> Done:
    """Publish the tombstone of (list, entry)'s lift if the topic holds one."""
    key = hashlist_topic.quarantine_key(list_name, entry_id)
    on_topic = latest_values(
        bootstrap,
        settings.topic_hashlists,
        [key.encode()],
        connect_timeout=settings.broker_connect_timeout_seconds,
    )
    if on_topic.get(key.encode()) is None:
        return Done(held=False, key=key)
    delivery = Delivery.from_settings(bootstrap, settings)
    hashlist_topic.retract(delivery, settings.topic_hashlists, [key])
    delivery.finish_or_raise()
    return Done(held=True, key=key)


def lifted(bootstrap: str, settings: Settings) -> list[QuarantineLiftRecord]:
    """Every lift in force (not re-armed), oldest first. A record that cannot be read is
    skipped: workers skip it too."""
    values = latest_values(
        bootstrap,
        settings.topic_hashlists,
        [],
        connect_timeout=settings.broker_connect_timeout_seconds,
        key_prefix=QUARANTINE_PREFIX,
    )
    lifts = []
    for key, value in values.items():
        if value is None:
            continue
        try:
            _, _, record = hashlist_topic.parse_hashlist_record(key, value)
        except (InputRejected, ValueError):
            continue
        if isinstance(record, QuarantineLiftRecord):
            lifts.append(record)
    return sorted(lifts, key=lambda r: (r.lifted_at, r.list, r.entry_id))
