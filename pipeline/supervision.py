"""Supervision of the worker's background services (hash-list feed, alert delivery).

Owns the restart policy: a service that raises is logged with its traceback, counted in
``screening_service_restarts_total{service}``, recorded in :class:`~pipeline.health.WorkerHealth`
(which /livez reports) and restarted after a capped, jittered exponential backoff. Services are
plain ``async def run()`` callables; nothing here knows Kafka or Faust.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pipeline.backoff import backoff_seconds
from pipeline.health import WorkerHealth
from pipeline.metrics import PipelineMetrics

log = logging.getLogger(__name__)


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    health: WorkerHealth,
    metrics: PipelineMetrics,
    backoff_max_seconds: float = 30.0,
    backoff_base_seconds: float = 0.5,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run a background service until it returns, restarting it whenever it raises.

    The delay before a restart doubles with each failure since the service last reported itself
    running (``health.service_running``), up to ``backoff_max_seconds``, with jitter. Each failure
    is logged with its traceback, counted in ``screening_service_restarts_total{service}`` and
    recorded in ``health`` (which /livez reports). Raises only CancelledError (worker shutdown).
    """
    health.register_service(name)
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            state = health.service_failed(name, type(exc).__name__)
            metrics.service_restarted(name)
            delay = backoff_seconds(state.failures - 1, backoff_base_seconds, backoff_max_seconds)
            log.error(
                "%s failed (%s); restart %d in %.1fs",
                name,
                type(exc).__name__,
                state.restarts,
                delay,
                exc_info=True,
            )
            await sleep(delay)
