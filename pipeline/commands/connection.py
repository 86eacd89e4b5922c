"""What the Kafka-facing commands share: which broker, and how its absence is told.

Owns ``--bootstrap-servers`` over ``PIPELINE_BOOTSTRAP_SERVERS``, the one line (exit 2) for a
broker that cannot be reached within PIPELINE_BROKER_CONNECT_TIMEOUT_SECONDS, and keeping the
client library's own connection chatter off the terminal. Must not open Kafka clients.
"""

from __future__ import annotations

import logging
import sys

from pipeline.adapters.topics import BrokerUnreachable
from pipeline.config import Settings
from pipeline.errors import ConfigError


def bootstrap_servers(settings: Settings, override: str | None) -> str:
    """``--bootstrap-servers`` if given, else the setting; raises :class:`ConfigError` when
    neither names a broker."""
    servers = override or settings.bootstrap_servers
    if not servers:
        raise ConfigError(
            "set PIPELINE_BOOTSTRAP_SERVERS (or --bootstrap-servers); the embedded broker lives "
            "inside `pipeline worker` and `pipeline demo`"
        )
    return servers


def quiet_kafka_client_logs() -> None:
    """Keep kafka-python's own log lines off the terminal of a CLI command.

    The client logs every failed connection attempt as a warning or error: about 20 lines
    before it gives up on an unreachable broker. The commands report every outcome themselves
    (delivery reports, :class:`BrokerUnreachable`), so those lines say nothing more; with
    ``--log-level DEBUG`` they stay, for diagnosis.
    """
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("kafka").setLevel(logging.CRITICAL)


def unreachable(exc: BrokerUnreachable) -> int:
    """Say that the broker cannot be reached, in one line; the exit code for it."""
    print(
        f"pipeline: {exc}; is it running, and is PIPELINE_BOOTSTRAP_SERVERS "
        "(or --bootstrap-servers) right?",
        file=sys.stderr,
    )
    return 2
