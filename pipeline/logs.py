"""Logging set-up: readable lines for people, or JSON lines for log shippers.

Owns the root handler's format, and the rate limit on the Kafka clients' own warnings
(:class:`ClientNoiseFilter`): while a broker is away, aiokafka, kafka-python and Faust log every
reconnect attempt (a 90 s outage wrote 12,451 lines, 138 a second), which buries the
pipeline's one line saying the broker is unreachable. Log records must never carry image
content; upload ids and reasons are fine, URLs are logged without their query string by the
callers.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Loggers of the Kafka clients and Faust, whose warnings are rate-limited.
CLIENT_LOGGERS: tuple[str, ...] = ("kafka", "aiokafka", "faust", "mode")
#: A kind of client message passes once per this many seconds; the rest are counted.
CLIENT_NOISE_WINDOW_SECONDS = 60.0
#: Most kinds tracked at once; a record of a further kind passes unlimited (never lost).
MAX_NOISE_KINDS = 1000

_DIGITS = re.compile(r"\d+")


class JsonFormatter(logging.Formatter):
    """One JSON object per line with time, level, logger, message and any ``extra`` fields."""

    _standard = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._standard:
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


@dataclass
class _Window:
    started: float
    logger: str
    sample: str
    suppressed: int = 0


class ClientNoiseFilter(logging.Filter):
    """Lets the first warning of a kind from the Kafka clients through, suppresses the same
    kind for ``window_seconds``, then logs how many it suppressed.

    A kind is (logger, level, message template with its numbers blanked), so "Unable connect to
    node with id 1" and "... id 2" are one kind. Records below WARNING and records of other
    loggers always pass. Summaries are logged by ``pipeline.logs`` when a window ends: on the
    next record of any client, or on :meth:`flush` (the worker calls it every second). The
    clients log from more than one thread (Faust runs its consumer in its own), hence the lock.
    """

    def __init__(
        self,
        window_seconds: float = CLIENT_NOISE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.window_seconds = window_seconds
        self._clock = clock
        self._windows: dict[tuple[str, int, str], _Window] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not _is_client(record.name):
            return True
        key = (record.name, record.levelno, _DIGITS.sub("#", str(record.msg))[:300])
        with self._lock:
            summaries = self._expire()
            window = self._windows.get(key)
            if window is None:
                if len(self._windows) < MAX_NOISE_KINDS:
                    sample = record.getMessage()[:200]
                    self._windows[key] = _Window(self._clock(), record.name, sample)
                passes = True
            else:
                window.suppressed += 1
                passes = False
        _log_summaries(summaries, self.window_seconds)
        return passes

    def flush(self) -> None:
        """Log the summaries of windows that have ended (and forget those windows)."""
        with self._lock:
            summaries = self._expire()
        _log_summaries(summaries, self.window_seconds)

    def _expire(self) -> list[_Window]:
        now = self._clock()
        ended = [k for k, w in self._windows.items() if now - w.started >= self.window_seconds]
        return [w for w in (self._windows.pop(k) for k in ended) if w.suppressed]


def _is_client(name: str) -> bool:
    return any(name == client or name.startswith(client + ".") for client in CLIENT_LOGGERS)


def _log_summaries(windows: list[_Window], window_seconds: float) -> None:
    for window in windows:
        logging.getLogger(__name__).warning(
            "%s: %d similar message(s) suppressed in the last %.0f s (like %r)",
            window.logger,
            window.suppressed,
            window_seconds,
            window.sample,
        )


_client_noise: ClientNoiseFilter | None = None


def flush_client_noise() -> None:
    """Log the summaries of suppressed client messages whose window has ended."""
    if _client_noise is not None:
        _client_noise.flush()


def configure_logging(level: str = "INFO", *, json_lines: bool = False) -> None:
    """Install one stderr handler on the root logger (idempotent), with the client noise
    filter on it (a filter on a logger would miss its children's records)."""
    global _client_noise  # noqa: PLW0603  # logging's configuration is process-wide anyway
    handler = logging.StreamHandler(sys.stderr)
    _client_noise = ClientNoiseFilter()
    handler.addFilter(_client_noise)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Client libraries log every connection at INFO; on-call readers want our lines.
    for noisy in ("kafka", "aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
