"""Creating the pipeline's topics, and reading a keyed topic's current state.

Owns the topic specs derived from settings and their idempotent creation. Topics are created
explicitly because brokers that auto-create use their own default partition count. The
``hashlists`` topic asks for log compaction (one record per key survives on Apache Kafka; the
embedded broker ignores topic configs and keeps everything, which last-write-wins readers
handle the same way).

Also owns :func:`latest_values`, which answers "what does the topic hold for these keys now?"
for the CLI (is this list entry published? what is this list's config?). It reads to the high
watermark that Fetch responses carry, never to ListOffsets end offsets: the embedded broker
reports those short (see shared/BROKER.md), and the watermark is right on Apache Kafka too.
Short-lived clients here are bounded by a connect timeout and raise :class:`BrokerUnreachable`
instead of retrying for kafka-python's default 30 s. kafka-python is imported where it is used:
every ``pipeline`` command imports this module, and the client costs ~0.6 s to import.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import Settings
from pipeline.errors import RetryableError

log = logging.getLogger(__name__)

#: How long :func:`latest_values` waits for a fetch to bring anything before it gives up on a
#: broker that accepted the connection but stopped answering.
READ_STALL_SECONDS = 30.0


class BrokerUnreachable(RetryableError):
    """The bootstrap servers did not answer within the connect timeout, or stopped answering."""

    reason = "broker_unreachable"

    @classmethod
    def at(cls, bootstrap_servers: str, waited_seconds: float) -> BrokerUnreachable:
        """The one wording of "could not connect", shared by every short-lived client."""
        return cls(f"cannot connect to Kafka at {bootstrap_servers} within {waited_seconds:g}s")


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create."""

    name: str
    partitions: int
    replication: int = 1
    configs: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic the pipeline reads or writes."""
    plain = [
        settings.topic_uploads,
        settings.topic_verdicts,
        settings.topic_blocks,
        settings.topic_alerts,
        settings.topic_dead_letters,
    ]
    specs = [TopicSpec(t, settings.topic_partitions, settings.topic_replication) for t in plain]
    specs.append(
        TopicSpec(
            settings.topic_hashlists,
            settings.topic_partitions,
            settings.topic_replication,
            {"cleanup.policy": "compact"},
        )
    )
    return specs


def ensure_topics(
    bootstrap_servers: str, specs: list[TopicSpec], *, connect_timeout_seconds: float = 30.0
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Raises a kafka
    error when the broker cannot be reached within ``connect_timeout_seconds``."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=10_000,
        bootstrap_timeout_ms=int(connect_timeout_seconds * 1000),
    )
    with contextlib.closing(admin):
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created = []
        for spec in missing:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            spec.name, spec.partitions, spec.replication, topic_configs=spec.configs
                        )
                    ]
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:  # another worker won the race
                pass
    if created:
        log.info("created topics: %s", ", ".join(created))
    return created


class TopicInspector:
    """Asks the broker which of the pipeline's topics exist now, with their topic ids, and
    creates the missing ones. Keeps one admin connection across calls (it is asked before
    every output batch is counted) and reconnects after any failure. Blocking (kafka-python):
    call it from a thread, one call at a time. Raises a kafka error when the broker does not
    answer within ``request_timeout_seconds``."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        connect_timeout_seconds: float = 5.0,
        request_timeout_seconds: float = 10.0,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._connect_timeout = connect_timeout_seconds
        self._request_timeout = request_timeout_seconds
        self._admin: Any = None

    def identities(self, names: Collection[str]) -> dict[str, str | None]:
        """The topic id of each of ``names`` (``""`` from a broker too old to have topic ids),
        ``None`` for a topic that does not exist. Never creates a topic."""
        from kafka.errors import KafkaError

        admin = self._connected()
        try:
            described = admin.describe_topics(list(names))
        except (KafkaError, OSError):
            self.close()
            raise
        found: dict[str, str | None] = dict.fromkeys(names)
        for topic in described:
            if topic["error_code"] == 0 and topic["partitions"]:
                found[topic["name"]] = str(topic.get("topic_id") or "")
        return found

    def create_missing(self, specs: list[TopicSpec]) -> list[str]:
        """Create the topics of ``specs`` that do not exist; returns the names created."""
        return ensure_topics(
            self._bootstrap_servers, specs, connect_timeout_seconds=self._connect_timeout
        )

    def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()

    def _connected(self) -> Any:
        if self._admin is None:
            from kafka import KafkaAdminClient

            self._admin = KafkaAdminClient(
                bootstrap_servers=self._bootstrap_servers,
                request_timeout_ms=int(self._request_timeout * 1000),
                bootstrap_timeout_ms=int(self._connect_timeout * 1000),
            )
        return self._admin


def short_lived_consumer(bootstrap_servers: str, connect_timeout: float, **options: Any) -> Any:
    """A kafka-python consumer outside any group that gives up connecting after
    ``connect_timeout`` seconds (raises :class:`BrokerUnreachable`); ``options`` are passed on.
    The caller closes it."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        return KafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            bootstrap_timeout_ms=int(connect_timeout * 1000),
            **options,
        )
    except KafkaError:
        raise BrokerUnreachable.at(bootstrap_servers, connect_timeout) from None


def latest_values(
    bootstrap_servers: str,
    topic: str,
    keys: Collection[bytes],
    *,
    connect_timeout: float,
    stall_timeout: float = READ_STALL_SECONDS,
    key_prefix: bytes | None = None,
) -> dict[bytes, bytes | None]:
    """The newest value of each of ``keys`` on ``topic``: ``None`` for a key whose newest record
    is a tombstone; keys never written (or a topic that does not exist) are absent.

    With ``key_prefix``, every key that starts with it is wanted too (``keys`` may then be
    empty): what the topic holds under ``quarantine/``, say.

    Reads every partition from the start up to its high watermark, keeping only the wanted
    keys, so memory stays bounded by the wanted keys however large the topic. Raises
    :class:`BrokerUnreachable` when the broker cannot be reached within ``connect_timeout``
    seconds or no fetch brings anything for ``stall_timeout`` seconds before the end.
    """
    from kafka import TopicPartition
    from kafka.errors import KafkaError

    wanted = frozenset(keys)
    # A metadata request naming a missing topic would create it on brokers that auto-create.
    consumer = short_lived_consumer(
        bootstrap_servers, connect_timeout, allow_auto_create_topics=False
    )
    with contextlib.closing(consumer):
        try:
            if topic not in consumer.topics():
                return {}
            partitions = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
            ]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            latest: dict[bytes, bytes | None] = {}
            last_progress = time.monotonic()
            while not all(_read_to_high_watermark(consumer, tp) for tp in partitions):
                batches = consumer.poll(timeout_ms=200)
                if batches:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > stall_timeout:
                    raise BrokerUnreachable(
                        f"Kafka at {bootstrap_servers} stopped answering while topic {topic!r} "
                        f"was read (nothing for {stall_timeout:g}s)"
                    )
                for records in batches.values():
                    for record in records:
                        if record.key in wanted or (
                            key_prefix is not None
                            and record.key is not None
                            and record.key.startswith(key_prefix)
                        ):
                            latest[record.key] = record.value
            return latest
        except KafkaError as exc:
            raise BrokerUnreachable(
                f"reading topic {topic!r} from Kafka at {bootstrap_servers} failed "
                f"({type(exc).__name__})"
            ) from None


def _read_to_high_watermark(consumer: Any, tp: Any) -> bool:
    # The high watermark is known only once a fetch response for the partition has arrived.
    high = consumer.highwater(tp)
    return high is not None and consumer.position(tp) >= high
