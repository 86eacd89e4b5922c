"""Creating the pipeline's topics with their partition counts.

Owns the topic specs derived from settings and their idempotent creation. Topics are created
explicitly because brokers that auto-create use their own default partition count. The
``hashlists`` topic asks for log compaction (one record per key survives on Apache Kafka; the
embedded broker ignores topic configs and keeps everything, which last-write-wins readers
handle the same way).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from pipeline.config import Settings

log = logging.getLogger(__name__)


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


def ensure_topics(bootstrap_servers: str, specs: list[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
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
